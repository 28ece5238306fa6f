//! The ThreatQ sink against the ThreatQ API simulator, fed with real ET Open rules.

mod threatq_sim;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use etferry::exit::{exit_for, Exit};
use etferry::sinks::threatq::{ThreatQConfig, ThreatQSink};
use etferry::sinks::{ExportItem, Sink};
use threatq_sim::corpus::{self, suricata_5};
use threatq_sim::{Fault, KeyBy, Sim, SimConfig, CLIENT_ID, EMAIL, PASSWORD};

/// watch.yaml's `sinks.threatq` for the simulator, with quick retries; `extra` adds keys.
fn config(sim: &Sim, dir: &Path, extra: &str) -> ThreatQConfig {
    let pass = dir.join("threatq.pass");
    std::fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
    let yaml = format!(
        "host: {}\nclient_id: {CLIENT_ID}\nemail: {EMAIL}\npassword_file: threatq.pass\n\
         source_name: Emerging Threats\ntlp: amber\nbatch_size: 500\nconcurrency: 2\n\
         batch_pause: 0s\nbatch_pause_max: 0s\ntimeout: 2s\n\
         retry: {{attempts: 4, base: 10ms, max_delay: 300ms}}\n",
        sim.url
    );
    // `extra` overrides the defaults above.
    let mut map: serde_yaml::Mapping = serde_yaml::from_str(&yaml).unwrap();
    if !extra.is_empty() {
        let over: serde_yaml::Mapping = serde_yaml::from_str(extra).unwrap();
        for (k, v) in over {
            map.insert(k, v);
        }
    }
    let yaml = serde_yaml::to_string(&map).unwrap();
    etferry::config::parse_yaml(&dir.join("watch.yaml"), &yaml).unwrap()
}

fn connect(sim: &Sim, extra: &str) -> (ThreatQSink, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(sim, dir.path(), extra);
    (ThreatQSink::connect(&cfg, dir.path()).unwrap(), dir)
}

fn standard(items: Vec<ExportItem>) -> Vec<ExportItem> {
    items.into_iter().filter(|i| i.enabled).collect()
}

/// Every value exactly once in the simulator: no duplicate signatures.
fn assert_no_duplicates(sim: &Sim) {
    let mut seen = HashMap::new();
    for s in sim.signatures() {
        *seen.entry(s.value.clone()).or_insert(0) += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicate signatures: {}", dups.len());
}

#[test]
fn full_et_open_set_lands_active_in_ceil_rules_over_batch_requests() {
    let sim = Sim::start();
    let (mut sink, _d) = connect(&sim, "");
    let items = standard(corpus::load_dir(&suricata_5(), "suricata-5.0"));
    // SOURCES.md: 24,827 enabled rules in this (incomplete) Suricata 5.0 set.
    assert_eq!(items.len(), 24_827);
    let out = sink.export(&items).unwrap();
    assert_eq!(out.confirmed.len(), items.len(), "{:?}", out.failed.first());
    assert!(out.failed.is_empty());

    let (requests, sent) = sim.consumed();
    assert_eq!(requests, items.len().div_ceil(500));
    assert_eq!(sent, items.len());
    let sigs = sim.signatures();
    let values: std::collections::HashSet<&str> = sigs.iter().map(|s| s.value.as_str()).collect();
    let missing: Vec<_> = items
        .iter()
        .filter(|i| !values.contains(i.text.as_str()))
        .map(|i| &i.text)
        .collect();
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(sigs.len(), items.len());
    assert!(sigs.iter().all(|s| s.status == "Active"));
    // No Suricata type on a default instance: everything goes out as Snort (id 6).
    assert!(sigs.iter().all(|s| s.type_id == 6));
    assert_no_duplicates(&sim);

    // Attributes as mapped, on a rule with references and MITRE metadata.
    let s = &sim.by_sid(2032468)[0];
    assert_eq!(
        s.name,
        "ET INFO Killbot JS Configuration - Possible Phishing"
    );
    assert!(s
        .value
        .starts_with("alert http $EXTERNAL_NET any -> $HOME_NET any (msg:"));
    assert_eq!(s.attr("SID"), ["2032468"]);
    assert_eq!(s.attr("Revision"), ["2"]);
    assert!(s.attr("GID").is_empty(), "GID only when not 1");
    assert_eq!(s.attr("Classtype"), ["misc-activity"]);
    assert_eq!(s.attr("Category"), ["INFO"]);
    assert_eq!(s.attr("Ruleset"), ["ET Open"]);
    assert_eq!(s.attr("Engine"), ["suricata-5.0"]);
    assert_eq!(s.attr("Shipped Enabled"), ["Yes"]);
    assert_eq!(s.attr("Reference"), ["url,killbot.org"]);
    assert_eq!(s.attr("mitre_technique_id"), ["T1566"]);
    assert_eq!(s.attr("mitre_tactic_id"), ["TA0001"]);
    assert_eq!(s.attr("signature_severity"), ["Critical"]);
    assert_eq!(s.published_at.as_deref(), Some("2021-04-05 00:00:00"));
    assert_eq!(
        s.sources,
        [serde_json::json!({"name": "Emerging Threats", "tlp_id": 2})]
    );

    // The same bundle again: the store hands over nothing, and nothing is sent.
    sim.clear_log();
    let again = corpus::diff(&items, &items);
    assert!(again.is_empty());
    let out = sink.export(&again).unwrap();
    assert!(out.confirmed.is_empty() && out.failed.is_empty());
    assert_eq!(sim.requests().len(), 0, "{:?}", sim.requests());
}

#[test]
fn non_standard_rules_get_their_status_and_a_shipped_disabled_attribute() {
    let sim = Sim::start();
    let (mut sink, _d) = connect(&sim, "");
    sink.require_statuses(&["Active", "Review"]).unwrap();
    let items = corpus::load_file(&suricata_5(), "emerging-dos.rules", "suricata-5.0");
    let (std_n, non_n) = (
        items.iter().filter(|i| i.enabled).count(),
        items.iter().filter(|i| !i.enabled).count(),
    );
    assert_eq!((std_n, non_n), (58, 55));
    let out = sink.export(&items).unwrap();
    assert_eq!(out.confirmed.len(), items.len());
    let sigs = sim.signatures();
    assert_eq!(sigs.iter().filter(|s| s.status == "Active").count(), 58);
    let review: Vec<_> = sigs.iter().filter(|s| s.status == "Review").collect();
    assert_eq!(review.len(), 55);
    for s in review {
        assert!(!s.value.starts_with('#'), "value without the leading #");
        assert_eq!(s.attr("Shipped Enabled"), ["No"]);
    }
}

#[test]
fn changed_bundle_sends_exactly_the_diff_and_no_old_revision_lingers() {
    let sim = Sim::start();
    let (mut sink, _d) = connect(&sim, "batch_size: 100\n");
    let day1 = standard(corpus::load_file(
        &suricata_5(),
        "emerging-info.rules",
        "suricata-5.0",
    ));
    assert_eq!(sink.export(&day1).unwrap().confirmed.len(), day1.len());
    let day2 = corpus::next_day(&day1, 12, 5, 3, 4);
    let changes = corpus::diff(&day1, &day2);
    // 12 new revisions, 5 added, 3 removed, 4 disabled.
    assert_eq!(changes.len(), 24);
    sim.clear_log();
    let out = sink.export(&changes).unwrap();
    assert_eq!(out.confirmed.len(), 24, "{:?}", out.failed);
    let (requests, sent) = sim.consumed();
    // The 12 changed rules also mark their old revision superseded: 24 + 12 signatures.
    assert_eq!((requests, sent), (1, 36));

    for c in &changes {
        let sigs = sim.by_sid(c.sid);
        if c.removed {
            assert_eq!(sigs.len(), 1);
            assert_eq!(sigs[0].status, "Expired");
        } else if c.previous_text.as_deref().is_some_and(|p| p != c.text) {
            // new_signature mode: the new rev is a new signature, the old one is Expired.
            let new: Vec<_> = sigs.iter().filter(|s| s.value == c.text).collect();
            let old: Vec<_> = sigs.iter().filter(|s| s.value != c.text).collect();
            assert_eq!((new.len(), old.len()), (1, 1));
            assert_eq!(new[0].status, "Active");
            assert_eq!(new[0].attr("Revision"), [c.rev.to_string()]);
            assert_eq!(old[0].status, "Expired");
            assert_eq!(old[0].attr("Revision"), [(c.rev - 1).to_string()]);
        } else if c.previous_rev.is_some() {
            // Disabled by ET: same value, status and Shipped Enabled follow, "Yes" removed.
            assert_eq!(sigs.len(), 1);
            assert_eq!(sigs[0].status, "Review");
            assert_eq!(sigs[0].attr("Shipped Enabled"), ["No"]);
        } else {
            assert_eq!(sigs.len(), 1);
            assert_eq!(sigs[0].status, "Active");
        }
    }
    assert_no_duplicates(&sim);
}

#[test]
fn instance_that_updates_in_place_keeps_only_the_new_revision() {
    let sim = Sim::with(SimConfig {
        key_by: KeyBy::Name,
        ..SimConfig::default()
    });
    let (mut sink, _d) = connect(&sim, "rev_change: update_in_place\n");
    let day1 = standard(corpus::load_file(
        &suricata_5(),
        "emerging-scada.rules",
        "suricata-5.0",
    ));
    sink.export(&day1).unwrap();
    let before = sim.signatures().len();
    let day2 = corpus::next_day(&day1, 6, 0, 0, 0);
    let changes = corpus::diff(&day1, &day2);
    assert_eq!(changes.len(), 6);
    let out = sink.export(&changes).unwrap();
    assert_eq!(out.confirmed.len(), 6, "{:?}", out.failed);
    assert_eq!(
        sim.signatures().len(),
        before,
        "updated in place, nothing new"
    );
    for c in &changes {
        let s = &sim.by_sid(c.sid)[0];
        assert_eq!(s.value, c.text);
        assert_eq!(
            s.attr("Revision"),
            [c.rev.to_string()],
            "old Revision removed"
        );
    }
    assert!(sink.stats().attributes_deleted >= 6);
}

/// Each fault: the run reports what failed, nothing is lost or duplicated, and what stayed
/// pending goes out on the next run.
#[test]
fn every_fault_loses_nothing_duplicates_nothing_and_pending_goes_next_run() {
    let items = standard(corpus::load_file(
        &suricata_5(),
        "emerging-ftp.rules",
        "suricata-5.0",
    ));
    assert_eq!(items.len(), 58);
    let cases: Vec<(&str, Vec<Fault>, bool)> = vec![
        (
            "429 with Retry-After",
            vec![Fault::Status {
                code: 429,
                retry_after: Some(0),
            }],
            true,
        ),
        (
            "500 twice",
            vec![
                Fault::Status {
                    code: 500,
                    retry_after: None
                };
                2
            ],
            true,
        ),
        (
            "slow answer past the timeout",
            vec![Fault::Slow(Duration::from_millis(2500))],
            true,
        ),
        ("dropped connection", vec![Fault::Drop], true),
        (
            "401 on an expired token mid-run",
            vec![Fault::ExpireTokens],
            true,
        ),
        ("2xx with an errors key", vec![Fault::ErrorsKey], false),
        (
            "500 on every retry",
            vec![
                Fault::Status {
                    code: 500,
                    retry_after: None
                };
                4
            ],
            false,
        ),
    ];
    for (name, faults, recovers) in cases {
        let sim = Sim::start();
        let (mut sink, _d) = connect(&sim, "batch_size: 20\nconcurrency: 1\n");
        // Two good batches, then the fault on the third.
        sim.push_fault(Fault::Slow(Duration::ZERO));
        sim.push_fault(Fault::Slow(Duration::ZERO));
        for f in faults {
            sim.push_fault(f);
        }
        let out = sink.export(&items).unwrap();
        if recovers {
            assert_eq!(out.confirmed.len(), 58, "{name}: {:?}", out.failed);
        } else {
            assert_eq!(out.confirmed.len(), 40, "{name}");
            assert_eq!(out.failed.len(), 18, "{name}");
            assert!(out.failed.iter().all(|(i, _)| *i >= 40), "{name}");
            // Confirmed ones are really there; failed ones are not claimed.
            assert_eq!(sim.signatures().len(), 40, "{name}");
            // Next run: only the pending ones.
            let pending: Vec<ExportItem> =
                out.failed.iter().map(|(i, _)| items[*i].clone()).collect();
            let out2 = sink.export(&pending).unwrap();
            assert_eq!(out2.confirmed.len(), 18, "{name}");
        }
        assert_eq!(sim.signatures().len(), 58, "{name}: no loss");
        assert_no_duplicates(&sim);
        let msgs: String = out.failed.iter().map(|(_, m)| m.as_str()).collect();
        assert!(!msgs.contains(PASSWORD), "{name}");
    }
}

#[test]
fn per_item_errors_fail_only_those_rules() {
    let sim = Sim::start();
    let (mut sink, _d) = connect(&sim, "batch_size: 25\n");
    let items = standard(corpus::load_file(
        &suricata_5(),
        "emerging-ftp.rules",
        "suricata-5.0",
    ));
    let bad = [items[3].sid, items[30].sid];
    sim.reject_sids(&bad);
    let out = sink.export(&items).unwrap();
    assert_eq!(out.confirmed.len(), 56);
    let failed: Vec<usize> = out.failed.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, [3, 30]);
    assert!(
        out.failed[0].1.contains(&bad[0].to_string()),
        "{}",
        out.failed[0].1
    );
    assert!(out.failed[0].1.contains("simulated rejection"));
    sim.reject_sids(&[]);
    let pending = vec![items[3].clone(), items[30].clone()];
    assert_eq!(sink.export(&pending).unwrap().confirmed, [0, 1]);
    assert_eq!(sim.signatures().len(), 58);
    assert_no_duplicates(&sim);
}

#[test]
fn retry_after_is_honoured() {
    let sim = Sim::start();
    let (mut sink, _d) = connect(&sim, "retry: {attempts: 3, base: 10ms, max_delay: 5s}\n");
    let items = standard(corpus::load_file(
        &suricata_5(),
        "emerging-worm.rules",
        "suricata-5.0",
    ));
    sim.push_fault(Fault::Status {
        code: 429,
        retry_after: Some(1),
    });
    let t = Instant::now();
    let out = sink.export(&items).unwrap();
    assert_eq!(out.confirmed.len(), items.len());
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(sim.consumed().0, 2);
}

#[test]
fn short_lived_token_is_refreshed_not_reentered() {
    let sim = Sim::with(SimConfig {
        expires_in: Some(1),
        ..SimConfig::default()
    });
    let (mut sink, _d) = connect(
        &sim,
        "batch_size: 10\nconcurrency: 1\nbatch_pause: 400ms\nbatch_pause_max: 400ms\n",
    );
    let items = standard(corpus::load_file(
        &suricata_5(),
        "emerging-dos.rules",
        "suricata-5.0",
    ));
    let out = sink.export(&items[..40]).unwrap();
    assert_eq!(out.confirmed.len(), 40);
    let log = sim.requests();
    let refreshes = log
        .iter()
        .filter(|r| r.path == "/api/token" && r.query.contains("grant_type=refresh_token"))
        .count();
    let logins = log
        .iter()
        .filter(|r| r.path == "/api/token" && r.query.contains("grant_type=password"))
        .count();
    assert!(refreshes >= 1, "{log:?}");
    assert_eq!(logins, 1);
    assert!(
        log.iter().all(|r| r.status != 401),
        "refreshed before expiry"
    );
    assert!(log.iter().filter(|r| r.path != "/api/token").all(|r| r
        .authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Bearer at-"))));
}

#[test]
fn wrong_password_is_a_config_error_without_the_password() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sim, dir.path(), "");
    std::fs::write(dir.path().join("threatq.pass"), "not-the-Pa55word\n").unwrap();
    let err = ThreatQSink::connect(&cfg, dir.path()).err().unwrap();
    let msg = format!("{err:#}");
    assert_eq!(exit_for(&err), Exit::Usage);
    assert!(msg.contains("refused") && msg.contains(EMAIL), "{msg}");
    assert!(!msg.contains("not-the-Pa55word"), "{msg}");
    // The login used the SDK form: grant and client id in the query.
    let tok = &sim.requests()[0];
    assert_eq!(tok.path, "/api/token");
    assert_eq!(
        tok.query,
        format!("grant_type=password&client_id={CLIENT_ID}")
    );
}

#[test]
fn status_the_instance_lacks_is_a_config_error_listing_what_it_offers() {
    let sim = Sim::start();
    let (sink, _d) = connect(&sim, "");
    // DESIGN.md's "Non-Malicious" matches the instance's "Non-malicious": case-insensitive.
    sink.require_statuses(&["active", "Non-Malicious"]).unwrap();
    let err = sink
        .require_statuses(&["Inactive", "Indirect"])
        .unwrap_err();
    assert_eq!(exit_for(&err), Exit::Usage);
    let msg = err.to_string();
    assert!(
        msg.contains("\"Indirect\"") && !msg.contains("\"Inactive\""),
        "{msg}"
    );
    assert!(
        msg.contains("Active, Expired, Inactive, Non-malicious, Review, Whitelisted"),
        "{msg}"
    );
}

#[test]
fn statuses_fall_back_to_api_objects_and_suricata_type_is_used_when_present() {
    let sim = Sim::with(SimConfig {
        statuses_endpoint: false,
        types: vec!["Snort", "Suricata", "YARA"],
        ..SimConfig::default()
    });
    let (mut sink, _d) = connect(&sim, "");
    let items = standard(corpus::load_file(
        &suricata_5(),
        "emerging-worm.rules",
        "suricata-5.0",
    ));
    assert_eq!(sink.type_name(&items[0]), "Suricata");
    assert_eq!(sink.export(&items).unwrap().confirmed.len(), items.len());
    assert!(sim.signatures().iter().all(|s| s.type_id == 2));
    assert!(sim.requests().iter().any(|r| r.path == "/api/objects"));
}

#[test]
fn missing_signature_type_is_a_config_error_listing_the_types() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sim, dir.path(), "signature_type: Suricata\n");
    let err = ThreatQSink::connect(&cfg, dir.path()).err().unwrap();
    assert_eq!(exit_for(&err), Exit::Usage);
    assert!(
        err.to_string()
            .contains("Bro, Custom, Cybox, OpenIOC, Regex, Snort"),
        "{err}"
    );
}

#[test]
fn expired_token_with_refused_relogin_stops_with_a_clear_message() {
    let sim = Sim::start();
    let (mut sink, _d) = connect(&sim, "batch_size: 10\nconcurrency: 1\n");
    let items = standard(corpus::load_file(
        &suricata_5(),
        "emerging-scada.rules",
        "suricata-5.0",
    ));
    sim.push_fault(Fault::ExpireTokens);
    sim.refuse_logins(true);
    let out = sink.export(&items).unwrap();
    assert!(out.confirmed.is_empty());
    assert_eq!(out.failed.len(), items.len());
    assert!(out.failed[0].1.contains("refused"), "{}", out.failed[0].1);
    assert!(
        out.failed[50].1.contains("not sent"),
        "{}",
        out.failed[50].1
    );
    // It stopped at the first batch instead of hammering the server.
    assert_eq!(sim.consumed().0, 1);
    assert!(sim.signatures().is_empty());
}
