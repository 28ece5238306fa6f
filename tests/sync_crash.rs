//! kill -9 of `etferry sync` at every stage (test hook `ETFERRY_TEST_CRASH_AT`), then a plain
//! rerun: the store and the ThreatQ simulator equal those of a run that was never interrupted.

// fetch_support and threatq_sim each load corpus_support (the one place that knows the corpus).
#![allow(clippy::duplicate_mod)]

mod fetch_support;
mod sync_support;
mod threatq_sim;

use fetch_support::SURI;
use sync_support::*;

/// Sync the fixture sample, then (crashing at `crash`, if any) a real 2024 upstream change, then
/// once more; the store's and the simulator's dumps.
fn run(crash: Option<&str>, new: &[u8]) -> (Vec<String>, Vec<String>) {
    let site = SyncSite::with_archive(targz(&sample_files()), "");
    let o = site.sync(&[]);
    assert_eq!(o.code(), 0, "{}", o.all());
    site.serve(SURI, new.to_vec());
    if let Some(stage) = crash {
        let o = site.sync_env(&["--now"], &[("ETFERRY_TEST_CRASH_AT", stage)]);
        assert_ne!(o.code(), 0, "{stage}: the hook did not fire: {}", o.all());
        assert!(o.stderr().contains("aborting"), "{stage}: {}", o.all());
    }
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 0, "{crash:?}: {}", o.all());
    // Nothing left behind: no pending download, and the fetch state knows the new archive.
    let work: Vec<_> = std::fs::read_dir(site.state().join("work"))
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(work.is_empty(), "{crash:?}: {work:?}");
    let st: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.state().join(format!("sources/{SURI_SOURCE}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(st["md5"], fetch_support::md5_hex(new), "{crash:?}");
    // A third run finds nothing to do.
    site.sim.clear_log();
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 0, "{crash:?}: {}", o.all());
    assert_eq!(site.sim.consumed(), (0, 0), "{crash:?}");
    (site.dump(), site.sim_dump())
}

#[test]
fn kill_9_at_any_stage_then_sync_again_equals_a_clean_run() {
    // The first ten rules files of the real 2024 Suricata 5.0 set: rules added, removed (those
    // of the sample that are not in them) and unchanged (emerging-chat.rules is in both).
    let new = fetch_support::small_archive(10);
    let (store, sim) = run(None, &new);
    assert!(store.len() > 1000, "{}", store.len());
    assert!(sim.len() > 500, "{}", sim.len());
    for stage in [
        "downloaded",
        "pending-written",
        "announced",
        "parsed",
        "diffed",
        "gated",
        "storing",
        "stored",
        "exported",
    ] {
        let (s, t) = run(Some(stage), &new);
        assert_eq!(s.len(), store.len(), "crash at {stage}: store rows");
        let diff: Vec<_> = s
            .iter()
            .zip(&store)
            .filter(|(a, b)| a != b)
            .take(3)
            .collect();
        assert!(
            s == store,
            "crash at {stage}: the store differs from a clean run: {diff:?}"
        );
        assert_eq!(t.len(), sim.len(), "crash at {stage}: signatures");
        assert!(
            t == sim,
            "crash at {stage}: ThreatQ differs from a clean run"
        );
    }
}

#[test]
fn kill_9_while_a_held_download_is_superseded_never_stores_the_held_one() {
    let site = SyncSite::with_archive(targz(&sample_files()), "");
    assert_eq!(site.sync(&[]).code(), 0);
    let worm: Vec<_> = sample_files()
        .into_iter()
        .filter(|(n, _)| n.ends_with("emerging-worm.rules"))
        .collect();
    site.serve(SURI, targz(&worm));
    assert_eq!(site.sync(&["--now"]).code(), 5);
    site.serve(SURI, fetch_support::small_archive(10));
    let o = site.sync_env(&["--now"], &[("ETFERRY_TEST_CRASH_AT", "superseded")]);
    assert!(o.stderr().contains("aborting"), "{}", o.all());
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    // The collapse (19 rules) was never stored; the newer download (sequence 3) is.
    let st = site.source_status(SURI_SOURCE);
    assert_eq!(st["last_bundle"], "et-open-suricata-5.0-00000003", "{st}");
    assert_eq!(st["held"].as_array().unwrap().len(), 0, "{st}");
    assert!(st["rules"].as_u64().unwrap() > 256, "{st}");
    let c = rusqlite::Connection::open(site.store()).unwrap();
    let status: String = c
        .query_row(
            "SELECT status FROM bundles WHERE id = 'et-open-suricata-5.0-00000002'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "superseded");
    assert!(std::fs::read_dir(site.state().join("work"))
        .unwrap()
        .next()
        .is_none());
}
