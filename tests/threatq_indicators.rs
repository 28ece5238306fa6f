//! Block-list IPs as ThreatQ indicators, related malware and attack patterns, and the connector
//! row's toggle, end to end: signed bundles of the real ET block lists → `etferry ingest` /
//! `etferry export threatq` → the ThreatQ simulator.

#[path = "ingest_support/mod.rs"]
mod ingest_support;
mod threatq_sim;

use std::collections::{BTreeMap, BTreeSet};

use ingest_support::*;
use serde_json::json;
use threatq_sim::corpus::{self, suricata_5};
use threatq_sim::{Sim, CLIENT_ID, EMAIL, PASSWORD};

const BOTCC: &str = "et-blocklists/blockrules-2019-10-04/emerging-botcc.rules";
const COMPROMISED: &str = "et-blocklists/blockrules-2019-10-04/compromised-ips.txt";
const BLOCK_IPS: &str = "et-blocklists/fwrules-2020-rev5793/emerging-Block-IPs.txt";

fn env_for(sim: &Sim, threatq_extra: &str) -> Env {
    let env = Env::with_config(&format!(
        "sinks:\n  threatq:\n    host: {}\n    client_id: {CLIENT_ID}\n    email: {EMAIL}\n    \
         password_file: threatq.pass\n    batch_size: 500\n    concurrency: 2\n    batch_pause: 0s\n    batch_pause_max: 0s\n    \
         timeout: 2s\n    retry: {{attempts: 3, base: 10ms, max_delay: 100ms}}\n{threatq_extra}",
        sim.url
    ));
    std::fs::write(env.path("config/threatq.pass"), PASSWORD).unwrap();
    env
}

fn block_files(compromised: &[u8]) -> Vec<(String, Vec<u8>)> {
    vec![
        ("emerging-botcc.rules".into(), read_corpus(BOTCC)),
        ("compromised-ips.txt".into(), compromised.to_vec()),
        ("emerging-Block-IPs.txt".into(), read_corpus(BLOCK_IPS)),
    ]
}

fn read_corpus(rel: &str) -> Vec<u8> {
    std::fs::read(corpus(rel)).unwrap()
}

fn blockrules_bundle(env: &Env, seq: u64, files: &[(String, Vec<u8>)]) -> std::path::PathBuf {
    env.bundle_in(
        &env.path("spool/outbox"),
        "et-blockrules",
        "et-blockrules",
        seq,
        files,
    )
}

/// The IPs of a rule header, read independently of etferry: the address fields of
/// `action proto SRC sport -> DST dport (`, brackets and commas split.
fn header_values(rule: &str) -> Vec<String> {
    let head: Vec<&str> = rule.split('(').next().unwrap().split_whitespace().collect();
    [head[2], head[5]]
        .iter()
        .flat_map(|f| f.trim_matches(['[', ']']).split(','))
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// Expected distinct values per list name (the names etferry gives the lists).
fn expected_lists(compromised: &[u8]) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8(read_corpus(BOTCC)).unwrap().lines() {
        if line.starts_with("alert ") {
            m.entry("botcc".into())
                .or_default()
                .extend(header_values(line));
        }
    }
    for line in String::from_utf8_lossy(compromised).lines() {
        if !line.trim().is_empty() {
            m.entry("compromised-ips".into())
                .or_default()
                .insert(line.trim().to_string());
        }
    }
    // emerging-Block-IPs.txt: a `#` line names the section of the entries below it.
    let mut section = String::new();
    for line in String::from_utf8(read_corpus(BLOCK_IPS)).unwrap().lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix('#') {
            if !c.trim().is_empty() {
                section = c.trim().to_string();
            }
        } else if !line.is_empty() {
            m.entry(section.clone())
                .or_default()
                .insert(line.to_string());
        }
    }
    m
}

fn consume_calls(sim: &Sim) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.ends_with("/consume"))
        .count()
}

#[test]
fn blockrules_bundle_lands_one_indicator_per_distinct_ip_then_only_list_changes_go_out() {
    let sim = Sim::start();
    let env = env_for(&sim, "");
    let compromised = read_corpus(COMPROMISED);
    let o = env.ingest(&blockrules_bundle(&env, 1, &block_files(&compromised)));
    assert_eq!(o.code, Some(0), "{o:?}");

    let want = expected_lists(&compromised);
    let all: BTreeSet<&String> = want.values().flatten().collect();
    let inds = sim.indicators();
    // One indicator per distinct value, every one Active, from the source, typed by form.
    assert_eq!(inds.len(), all.len());
    let values: BTreeSet<&String> = inds.iter().map(|i| &i.value).collect();
    assert_eq!(values, all);
    for i in &inds {
        assert_eq!(i.status, "Active", "{i:?}");
        let want_type = if i.value.contains('/') {
            "CIDR Block"
        } else {
            "IP Address"
        };
        assert_eq!(i.kind, want_type, "{i:?}");
        assert_eq!(i.sources, [json!({"name": "Emerging Threats"})]);
        assert_eq!(i.attr("Ruleset"), ["Block Rules"], "{i:?}");
    }
    // Per list: etferry's `List` attributes against the lists as read here.
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for i in &inds {
        for l in i.attr("List") {
            *got.entry(l.to_string()).or_default() += 1;
        }
    }
    let want_counts: BTreeMap<String, usize> =
        want.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    println!("indicators per list (expected from the files): {want_counts:?}");
    println!("indicators per list (in the simulator):        {got:?}");
    println!(
        "distinct indicators: {} (simulator {})",
        all.len(),
        inds.len()
    );
    assert_eq!(got, want_counts);
    let (req, sent) = sim.indicators_consumed();
    assert_eq!(sent, all.len());
    assert_eq!(req, all.len().div_ceil(500));

    // Each botcc signature carries the indicators its header lists.
    let botcc = String::from_utf8(read_corpus(BOTCC)).unwrap();
    let rules: Vec<&str> = botcc.lines().filter(|l| l.starts_with("alert ")).collect();
    assert_eq!(rules.len(), 436);
    let sigs = sim.signatures();
    assert_eq!(sigs.len(), 436);
    for rule in &rules {
        let sig = sigs.iter().find(|s| s.value == *rule).expect("signature");
        assert_eq!(sig.indicators, header_values(rule), "{}", sig.name);
    }

    // A list change: 5 IPs leave compromised-ips.txt, 2 arrive. Only those 7 go out.
    let text = String::from_utf8(compromised.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let gone: Vec<&str> = lines[..5]
        .iter()
        .copied()
        .filter(|ip| want.iter().filter(|(_, v)| v.contains(*ip)).count() == 1)
        .collect();
    let mut changed = lines[5..].join("\n");
    changed.push_str("\n198.51.100.7\n198.51.100.8\n");
    sim.clear_log();
    let o = env.ingest(&blockrules_bundle(
        &env,
        2,
        &block_files(changed.as_bytes()),
    ));
    assert_eq!(o.code, Some(0), "{o:?}");
    let (req, sent) = sim.indicators_consumed();
    // Values still named by another list (botcc, Block-IPs) change their lists, so they are sent.
    let relisted = lines[..5].len() - gone.len();
    assert_eq!((req, sent), (1, 2 + gone.len() + relisted));
    assert_eq!(sim.consumed(), (0, 0), "no rule changed");
    let now = sim.indicators();
    for ip in &gone {
        let i = now.iter().find(|i| i.value == *ip).unwrap();
        assert_eq!(i.status, "Expired", "{ip} left every list");
    }
    for ip in ["198.51.100.7", "198.51.100.8"] {
        let i = now.iter().find(|i| i.value == ip).unwrap();
        assert_eq!(
            (i.status.as_str(), i.attr("List")),
            ("Active", vec!["compromised-ips"])
        );
    }

    // The same lists again: no consume call at all.
    sim.clear_log();
    let o = env.ingest(&blockrules_bundle(
        &env,
        3,
        &block_files(changed.as_bytes()),
    ));
    assert_eq!(o.code, Some(0), "{o:?}");
    let calls: Vec<String> = sim
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    println!("requests of an unchanged run: {calls:?}");
    assert_eq!(consume_calls(&sim), 0, "{calls:?}");
    assert!(
        o.stdout
            .contains("threatq: sent 0 signatures in 0 requests"),
        "{o:?}"
    );

    // --resend-all --dry-run counts every current indicator; nothing is sent.
    sim.clear_log();
    let o = env.run(&["export", "threatq", "--resend-all", "--dry-run"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let current = all.len() - gone.len() + 2;
    assert!(
        o.stdout
            .contains(&format!("{current} indicators would be sent")),
        "{o:?}"
    );
    assert_eq!(sim.requests().len(), 0);
}

#[test]
fn indicators_threatq_does_not_confirm_stay_pending_with_exit_3_and_go_out_next_run() {
    let sim = Sim::start();
    // ThreatQ answers 500 to every consume: the bundle is stored, everything stays pending.
    let env = env_for(&sim, "");
    let compromised = read_corpus(COMPROMISED);
    sim.set_down(true);
    let o = env.ingest(&blockrules_bundle(&env, 1, &block_files(&compromised)));
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(sim.indicators().is_empty());
    let pending = env.status()["sinks"][0]["pending_indicators"]
        .as_u64()
        .unwrap();
    let all: BTreeSet<String> = expected_lists(&compromised)
        .into_values()
        .flatten()
        .collect();
    assert_eq!(pending as usize, all.len());
    sim.set_down(false);
    let o = env.run(&["export", "threatq"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(sim.indicators().len(), all.len());
    assert_eq!(env.status()["sinks"][0]["pending_indicators"], json!(0));
}

#[test]
fn connector_toggle_off_sends_nothing_exit_0_then_on_sends_everything_pending() {
    let sim = Sim::start();
    let env = env_for(
        &sim,
        "    connector: {name: Emerging Threats, honor_toggle: true, report_runs: true}\n",
    );
    let id = sim.add_connector("Emerging Threats", json!("False"));
    let compromised = read_corpus(COMPROMISED);
    let o = env.ingest(&blockrules_bundle(&env, 1, &block_files(&compromised)));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(consume_calls(&sim), 0);
    assert!(
        o.stdout
            .contains("disabled in ThreatQ (Settings → Incoming Feeds)"),
        "{o:?}"
    );
    let st = env.status();
    let paused = st["sinks"][0]["paused"].as_str().unwrap_or_default();
    assert!(paused.contains("disabled in ThreatQ"), "{st}");
    let pending = st["sources"][0]["pending_exports"].clone();
    assert_eq!(pending, json!(436));
    let human = env.run(&["status"]);
    assert!(human.stdout.contains("threatq: PAUSED since"), "{human:?}");

    // Every other "off" form keeps it paused; nothing is sent, the pending count holds.
    for off in [
        json!(false),
        json!(""),
        json!(0),
        json!("0"),
        serde_json::Value::Null,
    ] {
        sim.set_connector_active(id, off.clone());
        let o = env.run(&["export", "threatq"]);
        assert_eq!(o.code, Some(0), "{off}: {o:?}");
        assert_eq!(consume_calls(&sim), 0, "{off}");
        assert_eq!(env.status()["sources"][0]["pending_exports"], pending);
    }
    assert!(sim.connector_puts().is_empty());

    // On: everything pending goes out, and the run is reported to the row.
    sim.set_connector_active(id, json!(true));
    let o = env.run(&["export", "threatq"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let all: BTreeSet<String> = expected_lists(&compromised)
        .into_values()
        .flatten()
        .collect();
    assert_eq!(sim.signatures().len(), 436);
    assert_eq!(sim.indicators().len(), all.len());
    let st = env.status();
    assert_eq!(st["sources"][0]["pending_exports"], json!(0));
    assert!(st["sinks"][0]["paused"].is_null(), "{st}");
    let puts = sim.connector_puts();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0]["last_import_count"], json!(436 + all.len()));
    let row = &sim.connectors()[0];
    assert_eq!(row["last_import_count"], json!(436 + all.len()));
}

#[test]
fn a_missing_connector_row_warns_and_exports_as_usual() {
    let sim = Sim::start();
    let env = env_for(&sim, "    connector: {name: Emerging Threats}\n");
    let o = env.ingest(&blockrules_bundle(&env, 1, &block_files(b"192.0.2.1\n")));
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stderr.contains("no connector named"), "{o:?}");
    assert_eq!(sim.signatures().len(), 436);
    assert!(sim.indicators().iter().any(|i| i.value == "192.0.2.1"));
}

/// Rules of the 2024 Suricata 5.0 set with `malware_family`, and the Killbot phishing rule
/// (`mitre_technique_name Phishing`), through the sink with both relations on.
#[test]
fn malware_families_become_related_objects_and_attack_patterns_only_when_they_exist() {
    use etferry::sinks::Sink;
    let sim = Sim::start();
    let pattern = sim.add_attack_pattern("Phishing");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("threatq.pass"), PASSWORD).unwrap();
    let yaml = format!(
        "host: {}\nclient_id: {CLIENT_ID}\nemail: {EMAIL}\npassword_file: threatq.pass\n\
         batch_pause: 0s\nbatch_pause_max: 0s\nrelations: {{malware: true, attack_patterns: true}}\n",
        sim.url
    );
    let cfg: etferry::sinks::threatq::ThreatQConfig =
        etferry::config::parse_yaml(&dir.path().join("watch.yaml"), &yaml).unwrap();
    let mut sink = etferry::sinks::threatq::ThreatQSink::connect(&cfg, dir.path()).unwrap();
    let all = corpus::load_dir(&suricata_5(), "suricata-5.0");
    let meta = |it: &etferry::sinks::ExportItem, k: &str| -> Vec<String> {
        it.metadata
            .iter()
            .filter(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let mut items: Vec<_> = all
        .iter()
        .filter(|i| i.enabled && !meta(i, "malware_family").is_empty())
        .take(300)
        .cloned()
        .collect();
    items.extend(all.iter().filter(|i| i.sid == 2032468).cloned());
    let out = sink.export(&items).unwrap();
    assert!(out.failed.is_empty(), "{:?}", out.failed.first());
    assert_eq!(out.confirmed.len(), items.len());

    let families: BTreeSet<String> = items
        .iter()
        .flat_map(|i| meta(i, "malware_family"))
        .map(|f| f.replace('_', " "))
        .collect();
    let malware = sim.malware();
    let by_id: BTreeMap<u64, String> = malware.iter().map(|m| (m.id, m.value.clone())).collect();
    assert_eq!(
        by_id.values().cloned().collect::<BTreeSet<_>>(),
        families,
        "one malware object per family"
    );
    let sigs = sim.signatures();
    let mut with_pattern = 0;
    for it in &items {
        let sig = sigs.iter().find(|s| s.value == it.text).unwrap();
        let related: BTreeSet<String> = sig.malware.iter().map(|id| by_id[id].clone()).collect();
        let want: BTreeSet<String> = meta(it, "malware_family")
            .iter()
            .map(|f| f.replace('_', " "))
            .collect();
        assert_eq!(related, want, "SID {}", it.sid);
        // Only the technique ThreatQ has (Phishing) is related; others are left alone.
        let has_phishing = meta(it, "mitre_technique_name")
            .iter()
            .any(|n| n == "Phishing");
        if has_phishing {
            assert_eq!(sig.attack_patterns, [pattern], "SID {}", it.sid);
            with_pattern += 1;
        } else {
            assert!(sig.attack_patterns.is_empty(), "SID {}", it.sid);
        }
    }
    assert!(with_pattern >= 1);
    let techniques = items
        .iter()
        .flat_map(|i| meta(i, "mitre_technique_name"))
        .filter(|n| n != "Phishing")
        .count();
    assert!(techniques > 0, "the sample has techniques ThreatQ lacks");
    assert_eq!(sim.attack_patterns_created(), 0);
}
