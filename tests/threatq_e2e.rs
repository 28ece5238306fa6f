//! End to end: signed bundles of real ET Open rules → `etferry ingest` / `etferry export threatq`
//! → the ThreatQ simulator. Only changes go out, nothing is lost or duplicated, exit 3 while
//! something stays pending.

#[path = "ingest_support/mod.rs"]
mod ingest_support;
mod threatq_sim;

use std::collections::HashMap;

use ingest_support::*;
use threatq_sim::{Fault, Sim, CLIENT_ID, EMAIL, PASSWORD};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/et-open-sample/rules"
);

fn env_for(sim: &Sim, extra: &str) -> Env {
    let env = Env::with_config(&format!(
        "{extra}sinks:\n  threatq:\n    host: {}\n    client_id: {CLIENT_ID}\n    email: {EMAIL}\n    \
         password_file: threatq.pass\n    batch_size: 100\n    concurrency: 1\n    batch_pause: 0s\n    batch_pause_max: 0s\n    \
         timeout: 2s\n    retry: {{attempts: 3, base: 10ms, max_delay: 100ms}}\n",
        sim.url
    ));
    std::fs::write(env.path("config/threatq.pass"), PASSWORD).unwrap();
    env
}

fn sample_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(SAMPLE)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            (
                format!("rules/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read(p).unwrap(),
            )
        })
        .collect()
}

fn bundle_of(env: &Env, seq: u64, files: &[(String, Vec<u8>)]) -> std::path::PathBuf {
    env.bundle(
        "et-open-suricata-5.0",
        seq,
        &[("emerging.rules.tar.gz".into(), targz(files))],
    )
}

fn counts(sim: &Sim) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in sim.signatures() {
        *m.entry(s.status).or_insert(0) += 1;
    }
    m
}

fn no_duplicates(sim: &Sim) {
    let mut seen = HashMap::new();
    for s in sim.signatures() {
        *seen.entry(s.value).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "duplicate signatures");
}

#[test]
fn corpus_bundle_lands_standard_rules_active_then_only_changes_go_out() {
    let sim = Sim::start();
    let env = env_for(&sim, "");
    let files = sample_files();
    let o = env.ingest(&bundle_of(&env, 1, &files));
    assert_eq!(o.code, Some(0), "{o:?}");
    // tests/fixtures/README.md: 116 enabled + 140 disabled rules; standard only by default.
    assert_eq!(counts(&sim), HashMap::from([("Active".to_string(), 116)]));
    let (req, sent) = sim.consumed();
    assert_eq!((req, sent), (2, 116), "ceil(116 / 100) consume requests");

    // The same rules again: zero signatures sent.
    sim.clear_log();
    let o = env.ingest(&bundle_of(&env, 2, &files));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(sim.consumed(), (0, 0));

    // One rule gets a new revision, one disappears: exactly those go out.
    let mut changed = files.clone();
    let (name, text) = changed
        .iter_mut()
        .find(|(_, t)| {
            String::from_utf8_lossy(t)
                .lines()
                .filter(|l| l.starts_with("alert"))
                .count()
                >= 2
        })
        .unwrap();
    let body = String::from_utf8(text.clone()).unwrap();
    let mut lines: Vec<String> = body.lines().map(String::from).collect();
    let first = lines.iter().position(|l| l.starts_with("alert")).unwrap();
    let second = first
        + 1
        + lines[first + 1..]
            .iter()
            .position(|l| l.starts_with("alert"))
            .unwrap();
    let rev = |l: &str| -> u32 {
        l.split("rev:")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let old_rev = rev(&lines[first]);
    let sid_of = |l: &str| -> u32 {
        l.split("sid:")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (sid_changed, sid_removed) = (sid_of(&lines[first]), sid_of(&lines[second]));
    lines[first] =
        lines[first].replace(&format!("rev:{old_rev};"), &format!("rev:{};", old_rev + 1));
    lines.remove(second);
    *text = (lines.join("\n") + "\n").into_bytes();
    let _ = name;
    sim.clear_log();
    let b3 = bundle_of(&env, 3, &changed);
    let o = env.run(&["ingest", "--dry-run", b3.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stdout
            .contains("threatq (dry run): 2 changes would be sent as 3 signatures in 1 requests"),
        "{}",
        o.stdout
    );
    assert_eq!(sim.consumed(), (0, 0), "a dry run sends nothing");
    let o = env.ingest(&b3);
    assert_eq!(o.code, Some(0), "{o:?}");
    // The new revision, its superseded old revision, and the removed rule.
    assert_eq!(sim.consumed(), (1, 3));
    let new = sim.by_sid(sid_changed);
    assert_eq!(new.len(), 2);
    assert!(new
        .iter()
        .any(|s| s.status == "Active" && s.attr("Revision") == [(old_rev + 1).to_string()]));
    assert!(new
        .iter()
        .any(|s| s.status == "Expired" && s.attr("Revision") == [old_rev.to_string()]));
    assert_eq!(sim.by_sid(sid_removed)[0].status, "Expired");
    no_duplicates(&sim);
}

#[test]
fn non_standard_rules_go_out_only_when_included_with_their_status() {
    let sim = Sim::start();
    let env = env_for(
        &sim,
        "include_non_standard: true\nnon_standard_status: Review\n",
    );
    let o = env.ingest(&bundle_of(&env, 1, &sample_files()));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(
        counts(&sim),
        HashMap::from([("Active".to_string(), 116), ("Review".to_string(), 140)])
    );
    let disabled: Vec<_> = sim
        .signatures()
        .into_iter()
        .filter(|s| s.status == "Review")
        .collect();
    assert!(disabled
        .iter()
        .all(|s| s.attr("Shipped Enabled") == ["No"] && !s.value.starts_with('#')));
}

#[test]
fn threatq_down_keeps_everything_pending_with_exit_3_and_export_sends_it_later() {
    let sim = Sim::start();
    let env = env_for(&sim, "");
    sim.set_down(true);
    let o = env.ingest(&bundle_of(&env, 1, &sample_files()));
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(sim.signatures().is_empty());
    assert!(!o.stderr.contains(PASSWORD) && !o.stdout.contains(PASSWORD));

    // Half-way failure: the second batch fails for good, the first is confirmed.
    sim.set_down(false);
    sim.push_fault(Fault::Slow(std::time::Duration::ZERO));
    for _ in 0..3 {
        sim.push_fault(Fault::Status {
            code: 503,
            retry_after: None,
        });
    }
    let o = env.run(&["export", "threatq"]);
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stdout.contains("16 failed"), "{}", o.stdout);
    assert_eq!(sim.signatures().len(), 100);

    // Next run: only the 16 pending ones go out.
    sim.clear_log();
    let o = env.run(&["export", "threatq"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(sim.consumed(), (1, 16));
    assert_eq!(sim.signatures().len(), 116);
    no_duplicates(&sim);

    // A new ThreatQ instance: --resend-all sends everything again.
    let fresh = Sim::start();
    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&sim.url, &fresh.url);
    std::fs::write(&env.config, cfg).unwrap();
    let o = env.run(&["export", "threatq", "--dry-run"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("0 changes would be sent"), "{}", o.stdout);
    let o = env.run(&["export", "threatq", "--resend-all", "--dry-run"]);
    assert!(
        o.stdout.contains("116 changes would be sent"),
        "{}",
        o.stdout
    );
    assert!(fresh.requests().is_empty(), "a dry run sends nothing");
    let o = env.run(&["export", "threatq", "--resend-all"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(fresh.signatures().len(), 116);
}

#[test]
fn status_the_instance_lacks_stops_the_run_with_exit_2() {
    let sim = Sim::start();
    // DESIGN.md's "Inactive" vs an instance that calls it "Indirect" (threatq-api.md §1.3).
    let sim2 = Sim::with(threatq_sim::SimConfig {
        statuses: vec!["Active", "Expired", "Indirect", "Review"],
        ..Default::default()
    });
    drop(sim);
    let env = env_for(
        &sim2,
        "include_non_standard: true\nnon_standard_status: Inactive\n",
    );
    let o = env.ingest(&bundle_of(&env, 1, &sample_files()));
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(
        o.stderr.contains("Inactive") && o.stderr.contains("Active, Expired, Indirect, Review"),
        "{}",
        o.stderr
    );
    assert!(sim2.signatures().is_empty());
}

#[test]
fn unreachable_threatq_still_stores_the_bundle_and_exits_3() {
    let sim = Sim::start();
    let env = env_for(&sim, "");
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, cfg.replace(&sim.url, &dead)).unwrap();
    let o = env.ingest(&bundle_of(&env, 1, &sample_files()));
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stderr.contains("not reachable"), "{}", o.stderr);
    // ThreatQ is back: the stored changes go out.
    std::fs::write(&env.config, cfg).unwrap();
    let o = env.run(&["export", "threatq"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(counts(&sim), HashMap::from([("Active".to_string(), 116)]));
}
