//! kill -9 at every journal stage (test hook `ETFERRY_TEST_CRASH_AT`), then a rerun: the store
//! equals that of a clean run, with no duplicates and nothing lost.

mod ingest_support;

use ingest_support::*;
use std::path::PathBuf;

const FILES: [&str; 3] = [
    "emerging-policy.rules",
    "emerging-deleted.rules",
    "emerging-web_client.rules",
];

fn set(dir: &str) -> Vec<(String, Vec<u8>)> {
    let entries: Vec<(String, Vec<u8>)> = FILES
        .iter()
        .filter_map(|f| {
            let p = corpus(&format!("{dir}/rules/{f}"));
            p.exists()
                .then(|| (format!("rules/{f}"), std::fs::read(p).unwrap()))
        })
        .collect();
    vec![("emerging.rules.tar.gz".to_string(), targz(&entries))]
}

/// Store the 2017 subset, then the 2024 subset from the inbox, crashing at `crash` (if any).
fn run(crash: Option<&str>, old: &[(String, Vec<u8>)], new: &[(String, Vec<u8>)]) -> Vec<String> {
    let env = Env::new();
    let b1 = env.bundle("et-open", 1, old);
    assert_eq!(env.ingest(&b1).code, Some(0));
    let b2 = env.bundle_in(&env.inbox(), "et-open", "et-open", 2, new);
    if let Some(stage) = crash {
        let o = env.run_env(
            &["ingest", b2.to_str().unwrap()],
            &[("ETFERRY_TEST_CRASH_AT", stage)],
        );
        assert_ne!(o.code, Some(0), "{stage}: the hook did not fire: {o:?}");
        assert!(o.stderr.contains("aborting"), "{stage}: {o:?}");
    }
    let path = if b2.exists() {
        b2.clone()
    } else {
        env.path("spool/work/et-open-00000002")
    };
    let o = env.ingest(&path);
    assert_eq!(o.code, Some(0), "{crash:?}: {o:?}");
    assert!(env.path("spool/done/et-open-00000002").exists());
    assert!(!env.path("spool/work/et-open-00000002").exists());
    let d = env.dump();
    // No duplicates in the history: one row per change.
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    let dup: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM (SELECT 1 FROM rule_history GROUP BY source, gid, sid, bundle HAVING COUNT(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dup, 0, "{crash:?}");
    d
}

#[test]
fn kill_9_at_any_stage_then_rerun_equals_a_clean_run() {
    let old = set("et-open-suricata-1.3-enhanced-2017-03-10");
    let new = set("et-open-suricata-5.0-2024-04-21");
    let clean = run(None, &old, &new);
    assert!(clean.len() > 1000);
    for stage in [
        "copied", "verified", "parsed", "diffed", "gated", "storing", "stored", "exported",
    ] {
        let got = run(Some(stage), &old, &new);
        assert_eq!(got.len(), clean.len(), "crash at {stage}");
        assert!(
            got == clean,
            "crash at {stage}: store differs from a clean run"
        );
    }
}

/// A source's first import is written with SQLite's rollback journal, not the WAL (see
/// `store/writer.rs`). Store `new` as the first bundle, killed at `crash` (if any), then again;
/// the store after it, checked to be back in WAL mode.
fn first_import(crash: Option<&str>, new: &[(String, Vec<u8>)]) -> Vec<String> {
    let env = Env::new();
    let b = env.bundle_in(&env.inbox(), "et-open", "et-open", 1, new);
    let hot = PathBuf::from(format!("{}-journal", env.store_path().display()));
    if let Some(stage) = crash {
        let o = env.run_env(
            &["ingest", b.to_str().unwrap()],
            &[("ETFERRY_TEST_CRASH_AT", stage)],
        );
        assert_ne!(o.code, Some(0), "{stage}: the hook did not fire: {o:?}");
        // Killed before its commit, the transaction leaves a hot rollback journal behind (the
        // proof that this path was taken); after it, none.
        assert_eq!(hot.exists(), stage == "storing", "{stage}");
    }
    let path = if b.exists() {
        b.clone()
    } else {
        env.path("spool/work/et-open-00000001")
    };
    let o = env.ingest(&path);
    assert_eq!(o.code, Some(0), "{crash:?}: {o:?}");
    assert!(!hot.exists(), "{crash:?}");
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "{crash:?}");
    env.dump()
}

#[test]
fn kill_9_inside_and_after_a_first_import_then_rerun_equals_a_clean_run() {
    let new = set("et-open-suricata-5.0-2024-04-21");
    let clean = first_import(None, &new);
    assert!(clean.len() > 1000);
    for stage in ["storing", "stored"] {
        let got = first_import(Some(stage), &new);
        assert!(
            got == clean,
            "crash at {stage}: store differs from a clean run"
        );
    }
}

/// A reader in the middle of a transaction keeps the store in WAL mode: the first import does
/// not wait for it (the rollback journal would, until the busy timeout), and the reader's
/// snapshot stays as it began.
#[test]
fn a_first_import_goes_through_the_wal_while_a_reader_is_reading() {
    let new = set("et-open-suricata-5.0-2024-04-21");
    let env = Env::new();
    let s = env.bundle("other", 1, &[("a.rules".into(), small_rules(9_000_000, 3))]);
    assert_eq!(env.ingest(&s).code, Some(0));
    let reader = rusqlite::Connection::open(env.store_path()).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let count = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT COUNT(*) FROM rules", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&reader), 3);
    let b = env.bundle("et-open", 1, &new);
    let t = std::time::Instant::now();
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(0), "{o:?}");
    // Far below the 30 s a writer would wait for the reader's lock.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(count(&reader), 3, "the reader's snapshot changed");
    reader.execute_batch("COMMIT").unwrap();
    assert!(count(&reader) > 1000);
    let mode: String = reader
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
