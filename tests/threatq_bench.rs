//! Benchmark of the ThreatQ sink against the simulator (`scripts/bench-threatq.sh`): requests,
//! signatures sent and wall time for an initial import of the full ET Open set, an unchanged
//! bundle and a one-day-changed bundle. Ignored in the normal test run.

mod threatq_sim;

use std::time::Instant;

use etferry::sinks::threatq::{ThreatQConfig, ThreatQSink};
use etferry::sinks::{ExportItem, Sink};
use threatq_sim::corpus::{self, suricata_5};
use threatq_sim::{Sim, CLIENT_ID, EMAIL, PASSWORD};

fn run(sim: &Sim, sink: &mut ThreatQSink, label: &str, items: &[ExportItem]) {
    sim.clear_log();
    let t = Instant::now();
    let out = sink.export(items).unwrap();
    let wall = t.elapsed();
    let (consume, sent) = sim.consumed();
    let requests = sim.requests().len();
    println!(
        "{label:<28} items {:>6}  confirmed {:>6}  failed {:>3}  requests {:>4} (consume {:>3})  signatures sent {:>6}  wall {:>8.3}s",
        items.len(),
        out.confirmed.len(),
        out.failed.len(),
        requests,
        consume,
        sent,
        wall.as_secs_f64()
    );
    assert!(out.failed.is_empty());
}

#[test]
#[ignore]
fn bench_threatq() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p"), PASSWORD).unwrap();
    let yaml = format!(
        "host: {}\nclient_id: {CLIENT_ID}\nemail: {EMAIL}\npassword_file: p\nbatch_size: 500\n\
         concurrency: 2\nbatch_pause: 0s\nbatch_pause_max: 0s\n",
        sim.url
    );
    let cfg: ThreatQConfig =
        etferry::config::parse_yaml(&dir.path().join("w.yaml"), &yaml).unwrap();
    let t = Instant::now();
    let mut sink = ThreatQSink::connect(&cfg, dir.path()).unwrap();
    println!(
        "connect (login + types + statuses): {} requests, {:.3}s",
        sim.requests().len(),
        t.elapsed().as_secs_f64()
    );
    let day1: Vec<ExportItem> = corpus::load_dir(&suricata_5(), "suricata-5.0")
        .into_iter()
        .filter(|i| i.enabled)
        .collect();
    run(&sim, &mut sink, "initial import (standard)", &day1);
    run(
        &sim,
        &mut sink,
        "unchanged bundle",
        &corpus::diff(&day1, &day1),
    );
    // A typical ET Open daily push: a few dozen revisions, some new and retired rules.
    let day2 = corpus::next_day(&day1, 40, 15, 5, 5);
    let changes = corpus::diff(&day1, &day2);
    run(&sim, &mut sink, "one-day-changed bundle", &changes);
    println!(
        "ThreatQ signatures held by the simulator: {}",
        sim.signatures().len()
    );
}
