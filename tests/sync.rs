//! `etferry sync` against the ET-like server (`fetch_support`) and the ThreatQ simulator
//! (`threatq_sim`): one process downloads, gates, stores and sends; only changes go out; a held
//! collapse, a ThreatQ outage and a missing source each end with their exit code and lose nothing.

// fetch_support and threatq_sim each load corpus_support (the one place that knows the corpus).
#![allow(clippy::duplicate_mod)]

mod fetch_support;
mod sync_support;
mod threatq_sim;

use std::collections::BTreeMap;

use fetch_support::{SNORT, SURI};
use sync_support::*;

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn first_sync_sends_every_standard_rule_then_an_unchanged_upstream_downloads_and_sends_nothing() {
    // The real 2017 ET Open archive with its real .md5 (fetch_support serves it as suricata-5.0).
    let site = SyncSite::bare();
    site.write_config(&site.source("suricata-5.0"), "");
    let o = site.sync(&[]);
    assert_eq!(o.code(), 0, "{}", o.all());
    println!("first sync:\n{}", o.stdout());
    let st = site.source_status(SURI_SOURCE);
    // SOURCES.md: 19,556 enabled + 4,350 commented-out rules.
    assert_eq!(st["standard"], 19_556, "{st}");
    assert_eq!(st["non_standard"], 4_350, "{st}");
    assert_eq!(st["origin"], "download", "{st}");
    assert_eq!(
        st["last_download"]["md5"],
        "3ed507977921535c79d7d322803cdd34"
    );
    assert_eq!(
        st["last_download"]["url"],
        format!("{}open/suricata-5.0/emerging.rules.tar.gz", site.srv.base)
    );
    assert_eq!(st["pending_exports"], 0);
    // Every standard rule is in ThreatQ with the standard status; nothing else.
    assert_eq!(site.sim_counts(), counts(&[("Active", 19_556)]));
    assert!(
        o.stdout().contains("19556 changes sent, 0 pending"),
        "{}",
        o.stdout()
    );

    site.srv.clear_log();
    site.sim.clear_log();
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    println!("second sync:\n{}", o.stdout());
    assert_eq!(site.srv.archive_bytes_sent(), 0, "no archive downloaded");
    assert_eq!(site.sim.consumed(), (0, 0), "no signature sent");
    assert!(
        o.stdout().contains("et-open-suricata-5.0: unchanged"),
        "{}",
        o.stdout()
    );
    assert!(o.stdout().contains("(0 archive bytes)"), "{}", o.stdout());
    assert!(
        o.stdout().contains("0 changes sent, 0 pending"),
        "{}",
        o.stdout()
    );
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.state().join("last-sync.json")).unwrap())
            .unwrap();
    assert_eq!(last["archive_bytes"], 0);
    assert_eq!(last["exported"], 0);

    // The store commands read the store sync writes.
    let o = site.run(&["report", "--last", "--json"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    let r: serde_json::Value = serde_json::from_str(&o.stdout()).unwrap();
    assert_eq!(r["origin"], "download");
    assert_eq!(r["download"]["md5"], "3ed507977921535c79d7d322803cdd34");
    assert_eq!(r["counts"]["added"], 23_906);
    let o = site.run(&["rules", "--sid", "2019401", "--json"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(o.stdout().contains("2019401"), "{}", o.stdout());
}

/// The sample with the first enabled rule of emerging-chat.rules at rev + 1 and the second one
/// gone; returns the files and both SIDs.
fn changed_sample() -> (Vec<(String, Vec<u8>)>, u32, u32) {
    let mut files = sample_files();
    let (_, text) = files
        .iter_mut()
        .find(|(n, _)| n.ends_with("emerging-chat.rules"))
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8(text.clone())
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let enabled: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("alert"))
        .take(2)
        .collect();
    let (first, second) = (enabled[0], enabled[1]);
    let (changed, removed) = (sid_of(&lines[first]), sid_of(&lines[second]));
    let rev: u32 = lines[first]
        .split("rev:")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    lines[first] = lines[first].replace(&format!("rev:{rev};"), &format!("rev:{};", rev + 1));
    lines.remove(second);
    *text = (lines.join("\n") + "\n").into_bytes();
    (files, changed, removed)
}

#[test]
fn an_upstream_change_sends_exactly_the_changed_rules() {
    let site = SyncSite::with_archive(targz(&sample_files()), "");
    let o = site.sync(&[]);
    assert_eq!(o.code(), 0, "{}", o.all());
    // tests/fixtures/README.md: 116 enabled rules.
    assert_eq!(site.sim_counts(), counts(&[("Active", 116)]));
    // `export` reads the same store: nothing is pending.
    let o = site.run(&["export", "threatq", "--dry-run"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(
        o.stdout()
            .contains("threatq (dry run): 0 changes would be sent"),
        "{}",
        o.stdout()
    );

    let (files, changed, removed) = changed_sample();
    site.serve(SURI, targz(&files));
    site.sim.clear_log();
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(
        o.stdout()
            .contains("added 0, removed 1, modified 1, enabled↔disabled 0"),
        "{}",
        o.stdout()
    );
    // The new revision, the superseded old revision, and the removed rule: nothing else.
    let (_, sent) = site.sim.consumed();
    assert_eq!(sent, 3);
    let mut st: Vec<String> = site
        .sim
        .by_sid(changed)
        .iter()
        .map(|s| s.status.clone())
        .collect();
    st.sort();
    assert_eq!(st, ["Active", "Expired"]);
    let gone: Vec<String> = site
        .sim
        .by_sid(removed)
        .iter()
        .map(|s| s.status.clone())
        .collect();
    assert_eq!(gone, ["Expired"]);
    assert_eq!(
        site.sim_counts(),
        counts(&[("Active", 115), ("Expired", 2)])
    );
}

#[test]
fn a_collapse_is_held_with_exit_5_until_approve_releases_it() {
    let site = SyncSite::with_archive(targz(&sample_files()), "");
    assert_eq!(site.sync(&[]).code(), 0);
    // Upstream suddenly holds only emerging-worm.rules: 19 of 256 rules.
    let worm: Vec<_> = sample_files()
        .into_iter()
        .filter(|(n, _)| n.ends_with("emerging-worm.rules"))
        .collect();
    site.serve(SURI, targz(&worm));
    site.sim.clear_log();
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 5, "{}", o.all());
    assert!(o.stdout().contains("HELD"), "{}", o.stdout());
    assert!(
        o.stdout()
            .contains("etferry sync --approve et-open-suricata-5.0"),
        "{}",
        o.stdout()
    );
    assert_eq!(site.sim.consumed(), (0, 0));
    let st = site.source_status(SURI_SOURCE);
    assert_eq!(st["rules"], 256, "the store keeps its rules: {st}");
    assert_eq!(st["held"].as_array().unwrap().len(), 1, "{st}");

    // Still held on the next run, without downloading it again.
    site.srv.clear_log();
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 5, "{}", o.all());
    assert_eq!(site.srv.archive_bytes_sent(), 0);

    let o = site.sync(&["--now", "--approve", SURI_SOURCE]);
    assert_eq!(o.code(), 0, "{}", o.all());
    // tests/fixtures/README.md: emerging-worm.rules has 9 enabled rules; the other 107 expire.
    assert_eq!(
        site.sim_counts(),
        counts(&[("Active", 9), ("Expired", 107)])
    );
    let st = site.source_status(SURI_SOURCE);
    assert_eq!(st["rules"], 19, "{st}");
    assert_eq!(st["held"].as_array().unwrap().len(), 0, "{st}");
    assert!(std::fs::read_dir(site.state().join("work"))
        .unwrap()
        .next()
        .is_none());

    let o = site.sync(&["--approve", "et-open-nope"]);
    assert_eq!(o.code(), 2, "{}", o.all());
}

#[test]
fn threatq_down_exits_3_and_the_next_sync_sends_what_was_pending() {
    let site = SyncSite::with_archive(targz(&sample_files()), "");
    site.sim.set_down(true);
    let o = site.sync(&[]);
    assert_eq!(o.code(), 3, "{}", o.all());
    assert!(site.sim.signatures().is_empty());
    let st = site.source_status(SURI_SOURCE);
    assert_eq!(st["rules"], 256, "stored even though ThreatQ is down: {st}");
    assert_eq!(st["pending_exports"], 116, "{st}");

    site.sim.set_down(false);
    site.srv.clear_log();
    // Within min_interval: no source is checked, but the pending changes go out.
    let o = site.sync(&[]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(o.stdout().contains("skipped"), "{}", o.stdout());
    assert_eq!(site.srv.log().len(), 0, "upstream not contacted");
    assert_eq!(site.sim_counts(), counts(&[("Active", 116)]));
    assert_eq!(site.source_status(SURI_SOURCE)["pending_exports"], 0);
}

#[test]
fn one_source_404_exits_1_and_the_other_is_still_stored_and_sent() {
    let site = SyncSite::bare();
    site.serve(SURI, targz(&sample_files()));
    site.srv.remove(SNORT);
    site.srv.remove(&format!("{SNORT}.md5"));
    let sources = format!(
        "{}{}",
        site.source("suricata-5.0"),
        site.source("snort-2.9.0")
    );
    site.write_config(&sources, "");
    let o = site.sync(&[]);
    assert_eq!(o.code(), 1, "{}", o.all());
    assert!(
        o.stdout().contains("et-open-snort-2.9.0: failed") && o.stdout().contains("404"),
        "{}",
        o.stdout()
    );
    assert_eq!(site.source_status(SURI_SOURCE)["rules"], 256);
    assert!(site.source_status(SNORT_SOURCE).is_null());
    assert_eq!(site.sim_counts(), counts(&[("Active", 116)]));

    // Once upstream has it, the next run stores it and leaves the other alone.
    let chat: Vec<_> = sample_files()
        .into_iter()
        .filter(|(n, _)| n.ends_with("emerging-chat.rules"))
        .collect();
    site.serve(SNORT, targz(&chat));
    site.sim.clear_log();
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    // tests/fixtures/README.md: emerging-chat.rules has 67 + 20 rules.
    assert_eq!(site.source_status(SNORT_SOURCE)["rules"], 87);
    // Its 67 standard rules are sent (ThreatQ keys them on their text, which the first source
    // shares, so the simulator's count does not grow).
    assert_eq!(site.sim.consumed().1, 67);
}

#[test]
fn the_original_connectors_command_line_writes_a_log_file() {
    let site = SyncSite::with_archive(targz(&sample_files()), "");
    let logs = site.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // tq-conn-emerging-threats -c CONFIGDIR -ll LOGDIR -v3, with the program name changed.
    let out = fetch_support::etferry(&[
        "sync",
        "-c",
        site.conf().to_str().unwrap(),
        "-ll",
        logs.to_str().unwrap(),
        "-v3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("etferry") && name.ends_with(".log"),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("TRACE") || text.contains("DEBUG"), "{text}");
    assert!(text.contains("et-open-suricata-5.0"), "{text}");
    // `-v 3` (with a space) is the same.
    let out = fetch_support::etferry(&[
        "sync",
        "-c",
        site.conf().to_str().unwrap(),
        "-v",
        "3",
        "--now",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_dry_run_stores_sends_and_remembers_nothing() {
    let site = SyncSite::with_archive(targz(&sample_files()), "");
    let o = site.sync(&["--dry-run"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(o.stdout().contains("dry-run"), "{}", o.stdout());
    assert!(o.stdout().contains("would be sent"), "{}", o.stdout());
    assert!(site.sim.signatures().is_empty());
    assert!(site.source_status(SURI_SOURCE).is_null());
    // The fetch state did not move on: a real run downloads and stores it.
    site.srv.clear_log();
    let o = site.sync(&[]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(site.srv.archive_bytes_sent() > 0);
    assert_eq!(site.sim_counts(), counts(&[("Active", 116)]));
}

#[test]
fn config_check_understands_etferry_yaml_offline_and_online() {
    let site = SyncSite::with_archive(targz(&sample_files()), "");
    let file = site.conf().join("etferry.yaml");
    let o = fetch_support::etferry(&["config", "check", "-c", site.conf().to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        out.contains("OK (etferry.yaml, 1 source(s), sinks: threatq)"),
        "{out}"
    );

    let o = fetch_support::command(&["config", "check", "--online", file.to_str().unwrap()])
        .env_remove("CI")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        out.contains("et-open-suricata-5.0") && out.contains("HTTP 200"),
        "{out}"
    );
    assert!(out.contains("login OK"), "{out}");
    assert_eq!(
        site.srv.archive_bytes_sent(),
        0,
        "the archive is never downloaded"
    );

    // A refused login is a config error (2), as sync itself would stop on it.
    site.sim.refuse_logins(true);
    let o = fetch_support::command(&["config", "check", "--online", file.to_str().unwrap()])
        .env_remove("CI")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("sinks.threatq"),
        "{o:?}"
    );
}

#[test]
fn a_newer_upstream_version_replaces_a_held_download() {
    let site = SyncSite::with_archive(targz(&sample_files()), "");
    assert_eq!(site.sync(&[]).code(), 0);
    let worm: Vec<_> = sample_files()
        .into_iter()
        .filter(|(n, _)| n.ends_with("emerging-worm.rules"))
        .collect();
    site.serve(SURI, targz(&worm));
    assert_eq!(site.sync(&["--now"]).code(), 5);
    // Upstream recovers with a real change: the held collapse is dropped, the change stored.
    let (files, _, _) = changed_sample();
    site.serve(SURI, targz(&files));
    site.sim.clear_log();
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(
        o.stderr()
            .contains("superseded by et-open-suricata-5.0-00000003"),
        "{}",
        o.all()
    );
    assert_eq!(site.sim.consumed().1, 3);
    let st = site.source_status(SURI_SOURCE);
    assert_eq!(st["rules"], 255, "{st}");
    assert_eq!(st["held"].as_array().unwrap().len(), 0, "{st}");
    assert_eq!(st["last_bundle"], "et-open-suricata-5.0-00000003");
}

#[test]
fn a_download_over_the_archive_limits_is_refused_and_tried_again_next_run() {
    // The fetch gate reads archives with the default limits; the store's limits are stricter.
    let site = SyncSite::with_archive(targz(&sample_files()), "limits: {max_members: 2}\n");
    let o = site.sync(&[]);
    assert_eq!(o.code(), 1, "{}", o.all());
    assert!(
        o.stdout().contains(
            "rejected\n  FAILED: et-open-suricata-5.0-00000001: archive emerging.rules.tar.gz"
        ) && o.stdout().contains("more than 2 members"),
        "{}",
        o.stdout()
    );
    let id = "et-open-suricata-5.0-00000001";
    let reason =
        std::fs::read_to_string(site.state().join(format!("failed/{id}.reason.txt"))).unwrap();
    assert!(reason.contains("more than 2 members"), "{reason}");
    assert!(site
        .state()
        .join(format!("failed/{id}/download.json"))
        .is_file());
    assert!(site.source_status(SURI_SOURCE).is_null(), "nothing stored");
    assert!(site.sim.signatures().is_empty());
    // Not "unchanged" next time: it is downloaded and refused again, under a new sequence.
    site.srv.clear_log();
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 1, "{}", o.all());
    assert!(site.srv.archive_bytes_sent() > 0);
    assert!(
        o.stdout().contains("et-open-suricata-5.0-00000002"),
        "{}",
        o.stdout()
    );
}

#[test]
fn a_second_run_while_one_holds_the_lock_exits_75() {
    let site = SyncSite::with_archive(targz(&sample_files()), "");
    let lock = etferry::fsutil::RunLock::acquire(&site.state().join("fetch.lock")).unwrap();
    let o = site.sync(&[]);
    assert_eq!(o.code(), 75, "{}", o.all());
    drop(lock);
    assert_eq!(site.sync(&[]).code(), 0);
}
