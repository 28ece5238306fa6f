//! The store side of exports: what a sink is sent (added, modified, enabled↔disabled, removed,
//! with the configured statuses), and that only confirmed items stop being pending.

mod ingest_support;

use std::sync::{Arc, Mutex};

use etferry::exit::Exit;
use etferry::ingest::{Ingestor, Options, Outcome, WatchConfig};
use etferry::sinks::{ExportItem, ExportOutcome, Sink};
use ingest_support::*;

/// A sink that records what it receives and refuses the SIDs in `refuse`.
struct Recorder {
    got: Arc<Mutex<Vec<ExportItem>>>,
    refuse: Arc<Mutex<Vec<u32>>>,
}

impl Sink for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn export(&mut self, items: &[ExportItem]) -> anyhow::Result<ExportOutcome> {
        let refuse = self.refuse.lock().unwrap().clone();
        let mut out = ExportOutcome::default();
        for (i, it) in items.iter().enumerate() {
            if refuse.contains(&it.sid) {
                out.failed.push((i, "HTTP 500 from the test sink".into()));
            } else {
                out.confirmed.push(i);
            }
        }
        self.got.lock().unwrap().extend(items.iter().cloned());
        Ok(out)
    }
}

fn rule(sid: u32, rev: u32, enabled: bool) -> String {
    format!(
        "{}alert tcp any any -> any any (msg:\"ET TEST r{sid}\"; content:\"a\"; reference:url,example.org/{sid}; metadata:created_at 2024_01_01; sid:{sid}; rev:{rev};)\n",
        if enabled { "" } else { "# " }
    )
}

fn file(rules: &[(u32, u32, bool)]) -> Vec<(String, Vec<u8>)> {
    let text: String = rules.iter().map(|&(s, r, e)| rule(s, r, e)).collect();
    vec![("rules/emerging-test.rules".into(), text.into_bytes())]
}

type Shared = (Arc<Mutex<Vec<ExportItem>>>, Arc<Mutex<Vec<u32>>>);

fn ingestor(env: &Env) -> (Ingestor, Shared) {
    let cfg = WatchConfig::load(&env.config).unwrap();
    let mut ing = Ingestor::open(cfg).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let refuse = Arc::new(Mutex::new(Vec::new()));
    ing.add_sink(Box::new(Recorder {
        got: got.clone(),
        refuse: refuse.clone(),
    }));
    (ing, (got, refuse))
}

#[test]
fn sinks_get_only_changes_and_failed_items_stay_pending() {
    let env = Env::with_config("sanity:\n  max_drop_percent: 50\n");
    let (mut ing, (got, refuse)) = ingestor(&env);
    // 1..=3 standard, 4 and 5 non-standard.
    let b1 = env.bundle(
        "et-open",
        1,
        &file(&[
            (2_000_001, 1, true),
            (2_000_002, 1, true),
            (2_000_003, 1, true),
            (2_000_004, 1, false),
            (2_000_005, 1, false),
        ]),
    );
    assert!(matches!(
        ing.process(&b1, Options::default()).unwrap(),
        Outcome::Done(_)
    ));
    {
        let g = got.lock().unwrap();
        let sids: Vec<u32> = g.iter().map(|i| i.sid).collect();
        assert_eq!(
            sids,
            [2_000_001, 2_000_002, 2_000_003],
            "non-standard rules are not sent"
        );
        assert!(g
            .iter()
            .all(|i| i.status == "Active" && i.previous_rev.is_none()));
        assert_eq!(
            g[0].references,
            [("url".to_string(), "example.org/2000001".to_string())]
        );
        assert_eq!(
            g[0].metadata,
            [("created_at".to_string(), "2024_01_01".to_string())]
        );
        assert!(!g[0].text.starts_with('#'));
    }
    got.lock().unwrap().clear();
    assert_eq!(ing.export_pending().unwrap(), Exit::Ok);
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing pending after confirmation"
    );

    // 1 modified (rev 2), 2 disabled by ET, 3 removed, 5 enabled by ET; the sink refuses 5.
    refuse.lock().unwrap().push(2_000_005);
    let b2 = env.bundle(
        "et-open",
        2,
        &file(&[
            (2_000_001, 2, true),
            (2_000_002, 1, false),
            (2_000_004, 1, false),
            (2_000_005, 1, true),
        ]),
    );
    assert!(matches!(
        ing.process(&b2, Options::default()).unwrap(),
        Outcome::Done(_)
    ));
    assert_eq!(ing.export_exit, Exit::Partial);
    {
        let g = got.lock().unwrap();
        let by = |sid| g.iter().find(|i| i.sid == sid).unwrap();
        assert_eq!(g.len(), 4, "{g:?}");
        assert_eq!(
            (by(2_000_001).rev, by(2_000_001).previous_rev),
            (2, Some(1))
        );
        assert_eq!(by(2_000_001).status, "Active");
        assert_eq!(
            by(2_000_002).status,
            "Inactive",
            "a sent rule that ET disabled"
        );
        assert!(!by(2_000_002).enabled);
        assert!(by(2_000_003).removed);
        assert_eq!(by(2_000_003).status, "Expired");
        assert_eq!(by(2_000_005).status, "Active");
    }
    // The refused item is retried on the next run, and only it.
    got.lock().unwrap().clear();
    refuse.lock().unwrap().clear();
    assert_eq!(ing.export_pending().unwrap(), Exit::Ok);
    let sids: Vec<u32> = got.lock().unwrap().iter().map(|i| i.sid).collect();
    assert_eq!(sids, [2_000_005]);
}

#[test]
fn include_non_standard_sends_disabled_rules_with_their_status() {
    let env = Env::with_config("include_non_standard: true\nnon_standard_status: Review\n");
    let (mut ing, (got, _)) = ingestor(&env);
    let b = env.bundle(
        "et-open",
        1,
        &file(&[(2_000_001, 1, true), (2_000_002, 1, false)]),
    );
    ing.process(&b, Options::default()).unwrap();
    let g = got.lock().unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[1].status, "Review");
    assert!(!g[1].enabled);
}
