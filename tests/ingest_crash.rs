//! kill -9 at every journal stage (test hook `ETFERRY_TEST_CRASH_AT`), then a rerun: the store
//! equals that of a clean run, with no duplicates and nothing lost.

mod ingest_support;

use ingest_support::*;

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
