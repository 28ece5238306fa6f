//! Time, sequence and consistency (issue 16, findings 9, 10, 11, 12, 15 and 16): dates from the
//! future, sequence jumps, a different bundle under a done id, `--approve` by any path, the
//! unsigned-bundle label, and the edges of `parse`, `--log-dir`, the inbox and config values.

mod ingest_support;

use std::path::PathBuf;

use chrono::{Duration, TimeZone, Utc};
use etferry::bundle::{self, Manifest, SourceInfo};
use ingest_support::*;

const HAND: &str = "accept_unsigned_archives: true\narchive_sources:\n  - match: \"hand-*\"\n    ruleset: et-open\n    name: hand\n";

fn rules_file(sid: u32, n: u32) -> Vec<(String, Vec<u8>)> {
    vec![("emerging-test.rules".to_string(), small_rules(sid, n))]
}

/// A signed et-open bundle created at `created_at`, valid for `lifetime_days`, in `spool_dir`.
fn bundle_at(
    env: &Env,
    spool_dir: &str,
    seq: u64,
    created_at: chrono::DateTime<Utc>,
    lifetime_days: u64,
    files: &[(String, Vec<u8>)],
) -> PathBuf {
    let m = Manifest::new(
        SourceInfo {
            name: "et-open".into(),
            ruleset: "et-open".into(),
            engine: Some("suricata-5.0".into()),
            url: "https://rules.emergingthreats.net/open/suricata-5.0/emerging.rules.tar.gz".into(),
        },
        seq,
        created_at,
        std::time::Duration::from_secs(lifetime_days * 86400),
    );
    bundle::publish(&env.path(spool_dir), m, files, &env.key).unwrap()
}

fn drop_file(env: &Env, name: &str, bytes: &[u8]) -> PathBuf {
    let p = env.inbox().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn run_path(env: &Env, args: &[&str], p: &std::path::Path) -> Output {
    let mut a: Vec<&str> = args.to_vec();
    let s = p.to_string_lossy().into_owned();
    a.push(&s);
    env.run(&a)
}

// ----- finding 9: dates from the future ---------------------------------------------------

#[test]
fn future_rule_date_in_a_bare_archive_is_refused_naming_the_rule() {
    let env = Env::with_config(HAND);
    let mut rules = small_rules(3_000_000, 5);
    rules.extend_from_slice(
        b"alert tcp any any -> any any (msg:\"ET TEST from the future\"; content:\"f\"; metadata:created_at 2020_01_01, updated_at 2099_12_31; sid:3000099; rev:1;)\n",
    );
    let a = drop_file(&env, "hand-1.rules", &rules);
    let o = run_path(&env, &["ingest"], &a);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(
        o.stdout.contains("3000099") && o.stdout.contains("2099"),
        "{o:?}"
    );
    // The source is not locked: an honest archive is taken next.
    let b = drop_file(&env, "hand-2.rules", &small_rules(3_000_000, 5));
    let o = run_path(&env, &["ingest"], &b);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("hand")["rules"], 5);
}

#[test]
fn signed_bundle_from_the_future_or_before_2000_is_refused() {
    let env = Env::new();
    let key = env.path("keys/bundle.pub").to_string_lossy().into_owned();
    let future = bundle_at(
        &env,
        "spool/outbox",
        1,
        Utc::now() + Duration::days(2),
        14,
        &rules_file(2_000_000, 5),
    );
    let o = env.run(&["verify", "--key", &key, future.to_str().unwrap()]);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(o.stdout.contains("future"), "{o:?}");
    assert_eq!(env.ingest(&future).code, Some(4));

    let ancient = bundle_at(
        &env,
        "spool/outbox",
        2,
        Utc.with_ymd_and_hms(1999, 6, 1, 0, 0, 0).unwrap(),
        365 * 40,
        &rules_file(2_000_000, 5),
    );
    let o = env.ingest(&ancient);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(o.stdout.contains("2000"), "{o:?}");

    // Half a day ahead is clock skew, not a forgery.
    let skewed = bundle_at(
        &env,
        "spool/outbox",
        3,
        Utc::now() + Duration::hours(12),
        14,
        &rules_file(2_000_000, 5),
    );
    let o = env.ingest(&skewed);
    assert_eq!(o.code, Some(0), "{o:?}");
}

// ----- finding 10: a sequence jump is held ---------------------------------------------------

#[test]
fn sequence_jump_is_held_until_approved_and_a_pushed_sequence_can_be_reset() {
    let env = Env::new();
    let b1 = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    assert_eq!(env.ingest(&b1).code, Some(0));
    let far = env.bundle("et-open", 20_002, &rules_file(2_000_000, 6));
    let o = env.ingest(&far);
    assert_eq!(o.code, Some(5), "{o:?}");
    assert!(o.stdout.contains("max_sequence_jump"), "{o:?}");
    assert_eq!(env.source_status("et-open")["last_sequence"], 1);
    let o = env.run(&["ingest", "--approve", "et-open-00020002"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("et-open")["last_sequence"], 20_002);

    // The DMZ goes on from 2: every bundle is a "replay" until the operator resets the source.
    let next = env.bundle("et-open", 2, &rules_file(2_000_000, 7));
    assert_eq!(env.ingest(&next).code, Some(4));
    let o = env.run(&["sequence", "reset", "et-open", "--to", "1"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("et-open")["last_sequence"], 1);
    let again = env.bundle_in(
        &env.path("spool/outbox2"),
        "et-open",
        "et-open",
        2,
        &rules_file(2_000_000, 7),
    );
    let o = env.ingest(&again);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("et-open")["rules"], 7);
}

#[test]
fn max_sequence_jump_is_configurable() {
    let env = Env::with_config("max_sequence_jump: 5\n");
    let b1 = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    assert_eq!(env.ingest(&b1).code, Some(0));
    assert_eq!(
        env.ingest(&env.bundle("et-open", 6, &rules_file(2_000_000, 5)))
            .code,
        Some(0)
    );
    let o = env.ingest(&env.bundle("et-open", 12, &rules_file(2_000_000, 5)));
    assert_eq!(o.code, Some(5), "{o:?}");
}

// ----- finding 11: a different bundle under a done id --------------------------------------

#[test]
fn a_different_bundle_under_a_done_id_is_rejected_and_the_same_one_is_a_no_op() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    assert_eq!(env.ingest(&b).code, Some(0));
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(0), "{o:?}");
    let other = env.bundle_in(
        &env.path("spool/outbox2"),
        "et-open",
        "et-open",
        1,
        &rules_file(2_100_000, 9),
    );
    let before = env.dump();
    let o = env.ingest(&other);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(o.stdout.contains("different"), "{o:?}");
    assert_eq!(env.dump(), before);
    // The stored bundle in done/ is not replaced by the impostor.
    let m = std::fs::read(env.path("spool/done/et-open-00000001/manifest.json")).unwrap();
    assert_eq!(m, std::fs::read(b.join("manifest.json")).unwrap());
}

#[test]
fn wrong_md5_is_rejected_even_for_content_imported_before() {
    let env = Env::with_config(HAND);
    let data = small_rules(3_000_000, 5);
    let a = drop_file(&env, "hand-1.rules", &data);
    assert_eq!(run_path(&env, &["ingest"], &a).code, Some(0));
    let again = drop_file(&env, "hand-1.rules", &data);
    drop_file(
        &env,
        "hand-1.rules.md5",
        b"0123456789abcdef0123456789abcdef\n",
    );
    let o = run_path(&env, &["ingest"], &again);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(o.stdout.contains("md5"), "{o:?}");
}

// ----- finding 12: --approve by inbox path, work path or id ---------------------------------

#[test]
fn held_archive_is_approved_by_its_work_path() {
    let env = Env::with_config(HAND);
    let a = drop_file(&env, "hand-1.rules", &small_rules(3_000_000, 10));
    assert_eq!(run_path(&env, &["ingest"], &a).code, Some(0));
    let b = drop_file(&env, "hand-2.rules", &small_rules(3_000_000, 2));
    assert_eq!(run_path(&env, &["ingest"], &b).code, Some(5));
    let held = env.status()["sources"][0]["held"][0]
        .as_str()
        .unwrap()
        .to_string();
    let work = env.path(&format!("spool/work/{held}"));
    assert!(work.is_dir());
    let o = run_path(&env, &["ingest", "--approve"], &work);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("hand")["rules"], 2);
    assert!(!env.path(&format!("spool/failed/{held}")).exists());
}

#[test]
fn held_archive_is_approved_by_the_inbox_path_it_had() {
    let env = Env::with_config(HAND);
    let a = drop_file(&env, "hand-1.rules", &small_rules(3_000_000, 10));
    assert_eq!(run_path(&env, &["ingest"], &a).code, Some(0));
    let b = drop_file(&env, "hand-2.rules", &small_rules(3_000_000, 2));
    assert_eq!(run_path(&env, &["ingest"], &b).code, Some(5));
    // Held: the inbox file is gone, its work copy waits.
    assert!(!b.exists());
    let o = run_path(&env, &["ingest", "--approve"], &b);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("hand")["rules"], 2);
}

#[test]
fn held_bundle_is_approved_by_its_inbox_path() {
    let env = Env::new();
    let b1 = env.bundle("et-open", 1, &rules_file(2_000_000, 10));
    assert_eq!(env.ingest(&b1).code, Some(0));
    // Outside the inbox, so the bundle stays where it is while held.
    let b2 = env.bundle("et-open", 2, &rules_file(2_000_000, 1));
    assert_eq!(env.ingest(&b2).code, Some(5));
    let o = run_path(&env, &["ingest", "--approve"], &b2);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("et-open")["rules"], 1);
    // From the inbox: held, it leaves the inbox for work/, and its inbox path still names it.
    let b3 = env.bundle("et-open", 3, &rules_file(2_000_000, 10));
    assert_eq!(env.ingest(&b3).code, Some(0));
    let b4 = env.bundle("et-open", 4, &rules_file(2_000_000, 1));
    let inbox_copy = env.inbox().join("et-open-00000004");
    copy_dir(&b4, &inbox_copy);
    assert_eq!(env.ingest(&inbox_copy).code, Some(5));
    assert!(!inbox_copy.exists());
    let o = run_path(&env, &["ingest", "--approve"], &inbox_copy);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("et-open")["rules"], 1);
    assert_eq!(env.source_status("et-open")["last_sequence"], 4);
}

// ----- finding 15: an unsigned bundle is labelled so -----------------------------------------

#[test]
fn unsigned_bundle_is_labelled_unsigned_in_report_and_status() {
    let env = Env::with_config("require_signature: false\n");
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    std::fs::remove_file(b.join("manifest.json.minisig")).unwrap();
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("et-open")["origin"], "unsigned bundle");
    let r = env.run(&["report", "--last", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["origin"], "unsigned bundle", "{r:?}");
    let r = env.run(&["report", "--last"]);
    assert!(
        r.stdout.contains("unsigned bundle") && !r.stdout.contains("signed bundle,"),
        "{r:?}"
    );
    // A signed one next is labelled signed.
    let b2 = env.bundle("et-open", 2, &rules_file(2_000_000, 5));
    assert_eq!(env.ingest(&b2).code, Some(0));
    assert_eq!(env.source_status("et-open")["origin"], "signed bundle");
}

// ----- finding 16: parse, --log-dir, inbox and config edges ----------------------------------

fn run_bounded(args: &[&str], secs: u64) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_etferry"));
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("etferry {args:?} still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    Output {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn parse_refuses_what_is_not_a_regular_file_and_oversized_input() {
    // Before the cap this grew by about 0.8 GB/s: a short leash.
    let o = run_bounded(&["parse", "/dev/zero"], 2);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(
        o.stderr.contains("/dev/zero") && o.stderr.contains("not a regular file"),
        "{o:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.rules");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len((1 << 30) + 4096).unwrap(); // sparse, just over the 1 GiB cap
    let o = run_bounded(&["parse", big.to_str().unwrap()], 20);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(
        o.stderr.contains("big.rules") && o.stderr.contains("cap"),
        "{o:?}"
    );
}

#[test]
fn log_dir_that_does_not_exist_is_created_or_named() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("new/logs");
    let o = run_bounded(
        &[
            "--log-dir",
            logs.to_str().unwrap(),
            "parse",
            "/nonexistent.rules",
        ],
        20,
    );
    assert!(!o.stderr.contains("cannot log"), "{o:?}");
    assert!(logs.is_dir(), "{o:?}");
    // A path that cannot be a directory is named.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let o = run_bounded(
        &[
            "--log-dir",
            file.join("logs").to_str().unwrap(),
            "parse",
            "/nonexistent.rules",
        ],
        20,
    );
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(o.stderr.contains("plain/logs"), "{o:?}");
}

#[test]
fn inbox_that_is_a_file_is_named() {
    let env = Env::new();
    std::fs::remove_dir_all(env.inbox()).unwrap();
    std::fs::write(env.inbox(), b"not a directory").unwrap();
    let o = env.run(&["watch"]);
    assert_ne!(o.code, Some(0), "{o:?}");
    assert!(o.stderr.contains("spool/inbox"), "{o:?}");
}

#[test]
fn absurd_config_values_are_refused_with_the_allowed_range() {
    for (extra, key) in [
        ("limits:\n  max_members: 0\n", "max_members"),
        ("debounce: 300years\n", "debounce"),
        ("rescan_interval: 50years\n", "rescan_interval"),
        ("limits:\n  max_total_size: 0\n", "max_total_size"),
        ("max_sequence_jump: 0\n", "max_sequence_jump"),
    ] {
        let env = Env::with_config(extra);
        let o = env.run(&["status"]);
        assert_eq!(o.code, Some(2), "{extra}: {o:?}");
        assert!(
            o.stderr.contains(key) && o.stderr.contains("between"),
            "{extra}: {o:?}"
        );
    }
    let long = "x".repeat(5000);
    let env = Env::with_config(&format!("standard_status: \"{long}\"\n"));
    let o = env.run(&["status"]);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(o.stderr.len() < 1000, "{} bytes: {o:?}", o.stderr.len());
}
