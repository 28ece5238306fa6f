//! The whole operator path of docs/deployment.md, as commands: a DMZ host (init, config check,
//! fetch from a mirror), the courier (carry.sh), an air-gapped host (init, config check
//! --online, ingest of the medium's folder) and the first ThreatQ line; then a second trip that
//! carries only what is new. Paths live under a temp root that mirrors the shipped layout
//! (ROOT/etc/etferry, ROOT/var/lib/etferry). `cargo test --test ops_deployment -- --nocapture`
//! prints the transcript.

#[path = "fetch_support/mod.rs"]
mod fetch_support;
mod threatq_sim;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use fetch_support::{corpus, Server, OINKCODE, PRO};
use threatq_sim::{Sim, CLIENT_ID, EMAIL, PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_etferry");

struct Step {
    code: Option<i32>,
    out: String,
}

/// Run one documented command, print it and its output (the transcript), return both.
fn step(shown: &str, cmd: &mut Command, input: Option<&[u8]>) -> Step {
    cmd.env_remove("CI");
    for v in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(input.unwrap_or(b""));
    let o = child.wait_with_output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    println!("$ {shown}\n{out}(exit {:?})\n", o.status.code());
    Step {
        code: o.status.code(),
        out,
    }
}

/// The binary, run from a directory without ./config and without $ETFERRY_CONFIG (a step
/// that wants it sets it).
fn etferry(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("ETFERRY_CONFIG")
        .current_dir(std::env::temp_dir());
    c
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn dmz_to_air_gapped_to_the_first_threatq_line_then_a_second_trip() {
    let mirror = Server::start();
    // ET Pro on Snort beside ET Open on Suricata: the 2020 Snort archive stands in for it.
    mirror.put_archive(
        PRO,
        corpus("et-open-snort-2.9.0-2020-03-27/emerging.rules.tar.gz"),
    );
    let sim = Sim::start();
    let root = tempfile::tempdir().unwrap();
    let dmz_etc = root.path().join("dmz/etc/etferry");
    let dmz_var = root.path().join("dmz/var/lib/etferry");
    let gap_etc = root.path().join("gap/etc/etferry");
    let gap_var = root.path().join("gap/var/lib/etferry");
    let usb = root.path().join("media/usb");
    std::fs::create_dir_all(&usb).unwrap();

    // --- DMZ host ---
    let s = step(
        "etferry init --role fetch --out DMZ/etc/etferry --state DMZ/var/lib/etferry --base-url MIRROR --unencrypted-key   # answers: rulesets, engines, oinkcode",
        &mut etferry(&[
            "init", "--role", "fetch", "--out", p(&dmz_etc), "--state", p(&dmz_var),
            "--base-url", &mirror.base, "--unencrypted-key",
        ]),
        Some(format!("et-open,et-pro,et-blockrules\nsuricata-5.0\nsnort-2.9.0\n{OINKCODE}\n").as_bytes()),
    );
    assert_eq!(s.code, Some(0), "{}", s.out);
    let s = step(
        "etferry -c DMZ/etc/etferry config check --online",
        &mut etferry(&["-c", p(&dmz_etc), "config", "check", "--online"]),
        None,
    );
    assert_eq!(s.code, Some(0), "{}", s.out);
    assert!(!s.out.contains(OINKCODE), "{}", s.out);
    let s = step(
        "etferry -c DMZ/etc/etferry fetch",
        &mut etferry(&["-c", p(&dmz_etc), "fetch"]),
        None,
    );
    assert_eq!(s.code, Some(0), "{}", s.out);
    assert!(s.out.contains("3 new, 0 heartbeat, 0 failed"), "{}", s.out);

    // --- the courier ---
    let carry = |label: &str| {
        let mut c = Command::new("bash");
        c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/carry.sh"))
            .args(["--outbox", p(&dmz_var.join("outbox")), "--key"])
            .arg(dmz_etc.join("bundle.pub"))
            .arg(&usb)
            .env("ETFERRY", BIN);
        step(
            &format!("scripts/carry.sh --outbox DMZ/var/lib/etferry/outbox --key DMZ/etc/etferry/bundle.pub /media/usb   # {label}"),
            &mut c,
            None,
        )
    };
    let s = carry("trip 1");
    assert_eq!(s.code, Some(0), "{}", s.out);
    assert!(s.out.contains("3 new bundle(s)"), "{}", s.out);

    // --- air-gapped host ---
    let s = step(
        "etferry init --role watch --out GAP/etc/etferry --state GAP/var/lib/etferry   # ThreatQ Host, Client ID, E-mail, Password, Rulesets, defaults",
        &mut etferry(&["init", "--role", "watch", "--out", p(&gap_etc), "--state", p(&gap_var)]),
        Some(
            format!(
                "{}\n{CLIENT_ID}\n{EMAIL}\n{PASSWORD}\net-open,et-pro,et-blockrules\n\n\n\n",
                sim.url
            )
            .as_bytes(),
        ),
    );
    assert_eq!(s.code, Some(0), "{}", s.out);
    // Test only: no pause between ThreatQ batches (the default spreads them over 1-3 s each).
    let watch = gap_etc.join("watch.yaml");
    let text = std::fs::read_to_string(&watch).unwrap();
    std::fs::write(
        &watch,
        text.replace(
            "    batch_size: 500\n",
            "    batch_size: 500\n    batch_pause: 0s\n    batch_pause_max: 0s\n",
        ),
    )
    .unwrap();
    std::fs::copy(dmz_etc.join("bundle.pub"), gap_etc.join("bundle.pub")).unwrap();
    println!("$ cp DMZ/etc/etferry/bundle.pub GAP/etc/etferry/   # only the public key crosses\n");
    let s = step(
        "ETFERRY_CONFIG=GAP/etc/etferry etferry config check --online",
        etferry(&["config", "check", "--online"]).env("ETFERRY_CONFIG", &gap_etc),
        None,
    );
    assert_eq!(s.code, Some(0), "{}", s.out);
    assert!(s.out.contains("login OK"), "{}", s.out);
    let s = step(
        "etferry -c GAP/etc/etferry ingest /media/usb/etferry",
        &mut etferry(&["-c", p(&gap_etc), "ingest", p(&usb.join("etferry"))]),
        None,
    );
    assert_eq!(s.code, Some(0), "{}", s.out);
    let first = s
        .out
        .lines()
        .find(|l| l.starts_with("threatq: sent ") && !l.starts_with("threatq: sent 0 "))
        .unwrap_or_else(|| panic!("no ThreatQ line: {}", s.out));
    assert!(first.contains("(0 failed, 0 pending)"), "{first}");
    assert!(!sim.signatures().is_empty());
    assert!(!gap_var.join("failed").exists(), "{}", s.out);

    // --- second trip: upstream unchanged, only the heartbeats travel ---
    std::fs::remove_dir_all(usb.join("etferry")).unwrap();
    let s = step(
        "etferry -c DMZ/etc/etferry fetch --now",
        &mut etferry(&["-c", p(&dmz_etc), "fetch", "--now"]),
        None,
    );
    assert_eq!(s.code, Some(0), "{}", s.out);
    let s = carry("trip 2");
    assert_eq!(s.code, Some(0), "{}", s.out);
    assert!(s.out.contains("3 new bundle(s)"), "{}", s.out);
    let s = step(
        "etferry -c GAP/etc/etferry ingest /media/usb/etferry",
        &mut etferry(&["-c", p(&gap_etc), "ingest", p(&usb.join("etferry"))]),
        None,
    );
    assert_eq!(s.code, Some(0), "{}", s.out);
    assert_eq!(s.out.matches("heartbeat from").count(), 3, "{}", s.out);
    let s = carry("trip 3, nothing new");
    assert!(
        s.out.contains("nothing new since the last trip"),
        "{}",
        s.out
    );
}
