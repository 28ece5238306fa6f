//! `scripts/carry.sh`, the courier: it carries only bundles newer than the last trip (a state
//! file beside the outbox), with `--latest` only the newest snapshot per source (and a newer
//! heartbeat), verifies every copy, and prints a usage text when called without arguments.

mod ingest_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use etferry::bundle::{self, Manifest, SourceInfo};
use ingest_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_etferry");

fn carry(args: &[&Path]) -> Output {
    let o = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/carry.sh"))
        .args(args)
        .env("ETFERRY", BIN)
        .output()
        .unwrap();
    Output {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn rules() -> Vec<(String, Vec<u8>)> {
    vec![(
        "emerging-dns.rules".to_string(),
        read("et-open-suricata-5.0-2024-04-21/rules/emerging-dns.rules"),
    )]
}

/// A signed heartbeat ("upstream unchanged") bundle, as fetch publishes it.
fn heartbeat(env: &Env, source: &str, seq: u64) -> PathBuf {
    let mut m = Manifest::new(
        SourceInfo {
            name: source.into(),
            ruleset: "et-open".into(),
            engine: Some("suricata-5.0".into()),
            url: "https://rules.emergingthreats.net/open/suricata-5.0/emerging.rules.tar.gz".into(),
        },
        seq,
        Utc::now(),
        std::time::Duration::from_secs(14 * 86400),
    );
    m.unchanged_since = Some(Utc::now());
    bundle::publish(&env.path("spool/outbox"), m, &[], &env.key).unwrap()
}

#[test]
fn carry_without_arguments_prints_its_usage() {
    let o = carry(&[]);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(o.stderr.contains("usage: carry.sh"), "{o:?}");
    assert!(o.stderr.contains("--latest"), "{o:?}");
    assert!(!o.stderr.contains("set -euo"), "{o:?}");
}

#[test]
fn each_trip_carries_only_what_is_new_since_the_last_one() {
    let env = Env::new();
    let outbox = env.path("spool/outbox");
    let key = env.path("keys/bundle.pub");
    let usb = env.path("usb");
    std::fs::create_dir_all(&usb).unwrap();
    env.bundle("et-open", 1, &rules());
    env.bundle("et-open", 2, &rules());
    env.bundle("et-pro", 1, &rules());

    let o = carry(&[&outbox, &usb, &key]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("3 new bundle(s)"), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(env.path("spool/outbox.carried")).unwrap(),
        "et-open 00000002\net-pro 00000001\n"
    );

    // Nothing new: the trip says so and the medium gets nothing.
    std::fs::remove_dir_all(usb.join("etferry")).unwrap();
    let o = carry(&[&outbox, &usb, &key]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stdout.contains("nothing new since the last trip"),
        "{o:?}"
    );
    assert!(names(&usb.join("etferry")).is_empty());

    // One new bundle: only it travels (3 → 4 in the outbox, 1 on the medium).
    env.bundle("et-open", 3, &rules());
    let o = carry(&[&outbox, &usb, &key]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(names(&usb.join("etferry")), ["et-open-00000003"]);

    // The option form names the same trip; --all carries everything again.
    std::fs::remove_dir_all(usb.join("etferry")).unwrap();
    let (ob, k) = (PathBuf::from("--outbox"), PathBuf::from("--key"));
    let o = carry(&[&ob, &outbox, &k, &key, &usb]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(names(&usb.join("etferry")).is_empty(), "{o:?}");
    let all = PathBuf::from("--all");
    let o = carry(&[&all, &outbox, &usb, &key]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(names(&usb.join("etferry")).len(), 4, "{o:?}");
}

#[test]
fn latest_carries_the_newest_snapshot_per_source_and_a_newer_heartbeat_then_ingest_takes_them() {
    let env = Env::new();
    let outbox = env.path("spool/outbox");
    let key = env.path("keys/bundle.pub");
    let usb = env.path("usb");
    std::fs::create_dir_all(&usb).unwrap();
    for seq in 1..=3 {
        env.bundle("et-open", seq, &rules());
    }
    heartbeat(&env, "et-open", 4);
    env.bundle("et-pro", 1, &rules());
    env.bundle("et-pro", 2, &rules());
    heartbeat(&env, "et-pro", 3);
    env.bundle("et-pro", 4, &rules());

    let latest = PathBuf::from("--latest");
    let o = carry(&[&latest, &outbox, &usb, &key]);
    assert_eq!(o.code, Some(0), "{o:?}");
    // et-open: snapshot 3 and the newer heartbeat 4; et-pro: snapshot 4 (the heartbeat is older).
    assert_eq!(
        names(&usb.join("etferry")),
        ["et-open-00000003", "et-open-00000004", "et-pro-00000004"]
    );
    assert!(o.stdout.contains("older snapshot(s) skipped"), "{o:?}");

    // The air-gapped side takes the medium's folder as it is.
    let i = env.ingest(&usb.join("etferry"));
    assert_eq!(i.code, Some(0), "{i:?}");
    assert!(i.stdout.contains("heartbeat from et-open"), "{i:?}");
    assert_eq!(env.source_status("et-pro")["last_sequence"], 4, "{i:?}");
    assert_eq!(env.source_status("et-open")["last_sequence"], 4, "{i:?}");
}

#[test]
fn a_copy_that_fails_verification_is_removed_and_carried_again_next_trip() {
    let env = Env::new();
    let outbox = env.path("spool/outbox");
    let usb = env.path("usb");
    std::fs::create_dir_all(&usb).unwrap();
    env.bundle("et-open", 1, &rules());
    // Verify against a key that did not sign it: the copy fails like a corrupt medium would.
    let other = env.path("other");
    bundle::keygen(&other, None).unwrap();
    let o = carry(&[&outbox, &usb, &other.join("bundle.pub")]);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(names(&usb.join("etferry")).is_empty());
    assert!(!env.path("spool/outbox.carried").exists());
    let o = carry(&[&outbox, &usb, &env.path("keys/bundle.pub")]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(names(&usb.join("etferry")), ["et-open-00000001"]);
}
