//! Bare ET archives dropped by hand into the inbox (no signed manifest): attribution, `.md5`,
//! replay protection, the watcher's stability wait, and the refusal when the site does not allow it.

mod ingest_support;

use std::path::{Path, PathBuf};

use ingest_support::*;

const ARCHIVE_2017: &str = "et-open-suricata-1.3-enhanced-2017-03-10/emerging.rules.tar.gz";
const MD5_2017: &str = "et-open-suricata-1.3-enhanced-2017-03-10/emerging.rules.tar.gz.md5";
const ARCHIVE_2020: &str = "et-open-snort-2.9.0-2020-03-27/emerging.rules.tar.gz";

const ACCEPT: &str = "accept_unsigned_archives: true\n";

/// Drop `bytes` into the inbox as `name`, like an operator copying a file across.
fn drop_file(env: &Env, name: &str, bytes: &[u8]) -> PathBuf {
    let p = env.inbox().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn ingest_file(env: &Env, p: &Path) -> Output {
    env.run(&["ingest", p.to_str().unwrap()])
}

/// The `.reason.txt` files in failed/, concatenated.
fn failed_reasons(env: &Env) -> String {
    let mut out = String::new();
    if let Ok(rd) = std::fs::read_dir(env.path("spool/failed")) {
        for e in rd {
            let p = e.unwrap().path();
            if p.to_string_lossy().ends_with(".reason.txt") {
                out.push_str(&std::fs::read_to_string(p).unwrap());
            }
        }
    }
    out
}

fn rule_count(env: &Env) -> i64 {
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    c.query_row("SELECT COUNT(*) FROM rules", [], |r| r.get(0))
        .unwrap()
}

fn assert_counts(env: &Env, src: &str, rules: u64, standard: u64, non_standard: u64) {
    let s = env.source_status(src);
    assert_eq!(s["rules"], rules, "{src}: {s}");
    assert_eq!(s["standard"], standard, "{src}: {s}");
    assert_eq!(s["non_standard"], non_standard, "{src}: {s}");
    assert_eq!(s["origin"], "unsigned archive", "{src}: {s}");
}

#[test]
fn real_archives_dropped_bare_are_ingested_with_the_corpus_counts() {
    let env = Env::with_config(ACCEPT);
    // 2017 Suricata with its real .md5 beside it.
    let a = drop_file(&env, "emerging.rules.tar.gz", &read(ARCHIVE_2017));
    drop_file(&env, "emerging.rules.tar.gz.md5", &read(MD5_2017));
    let o = ingest_file(&env, &a);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("unsigned archive"), "{o:?}");
    assert!(o.stderr.contains("marker file"), "{o:?}");
    assert_counts(&env, "et-open-suricata-1.3", 23_906, 19_556, 4_350);
    // Taken from the inbox with its .md5; the work copy went to done/.
    assert!(!a.exists() && !env.inbox().join("emerging.rules.tar.gz.md5").exists());
    let done: Vec<_> = std::fs::read_dir(env.path("spool/done"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(done[0].join("emerging.rules.tar.gz").is_file());

    // 2020 Snort without any .md5.
    let b = drop_file(&env, "emerging.rules-snort.tar.gz", &read(ARCHIVE_2020));
    let o = ingest_file(&env, &b);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_counts(&env, "et-open-snort-2.9.0", 28_895, 19_475, 9_420);

    // The report says where the rules came from.
    let o = env.run(&["report", "--last", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(r["origin"], "unsigned archive", "{r}");
    assert_eq!(r["source"], "et-open-snort-2.9.0");
    let o = env.run(&["status"]);
    println!("{}", o.stdout);
    assert!(o.stdout.contains("(unsigned archive)"), "{o:?}");

    // The same 2017 archive again (even under another name) is a no-op with a message.
    let before = env.dump();
    let again = drop_file(&env, "copy-of-emerging.rules.tar.gz", &read(ARCHIVE_2017));
    let o = ingest_file(&env, &again);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stderr.contains("same content"), "{o:?}");
    assert!(env.dump() == before, "the store changed");
    assert!(!again.exists());
}

#[test]
fn wrong_md5_is_rejected_with_both_values_and_nothing_stored() {
    let env = Env::with_config(ACCEPT);
    let a = drop_file(&env, "emerging.rules.tar.gz", &read(ARCHIVE_2017));
    drop_file(
        &env,
        "emerging.rules.tar.gz.md5",
        b"00112233445566778899aabbccddeeff  emerging.rules.tar.gz\n",
    );
    let o = ingest_file(&env, &a);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(
        o.stdout.contains("3ed507977921535c79d7d322803cdd34")
            && o.stdout.contains("00112233445566778899aabbccddeeff"),
        "{o:?}"
    );
    assert!(failed_reasons(&env).contains("md5 mismatch"));
    assert_eq!(rule_count(&env), 0);
    assert_eq!(env.status()["sources"].as_array().unwrap().len(), 0);
}

#[test]
fn older_archive_of_the_same_source_is_rejected_as_a_rollback() {
    // The 2017 marker says suricata-1.3; an archive_sources entry makes both one source.
    let env = Env::with_config(&format!(
        "{ACCEPT}archive_sources:\n  - match: \"emerging.rules*.tar.gz\"\n    ruleset: et-open\n    name: et-open-suricata\n"
    ));
    let new = drop_file(
        &env,
        "emerging.rules-2024.tar.gz",
        &targz_of_dir(&corpus("et-open-suricata-5.0-2024-04-21/rules")),
    );
    let o = ingest_file(&env, &new);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_counts(&env, "et-open-suricata", 34_850, 24_827, 10_023);
    let before = env.dump();
    let old_bytes = read(ARCHIVE_2017);
    let old_id = {
        use sha2::{Digest, Sha256};
        format!("archive-{}", &hex::encode(Sha256::digest(&old_bytes))[..16])
    };
    let old = drop_file(&env, "emerging.rules.tar.gz", &old_bytes);
    let o = ingest_file(&env, &old);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(o.stdout.contains("older than the last archive"), "{o:?}");
    assert!(
        o.stdout.contains("2017-03-10") && o.stdout.contains("2024-04-"),
        "{o:?}"
    );
    assert!(failed_reasons(&env).contains("a replay or rollback"));
    // Nothing but the journal learnt about it.
    let strip = |d: Vec<String>| -> Vec<String> {
        d.into_iter().filter(|l| !l.contains(&old_id)).collect()
    };
    assert!(strip(env.dump()) == strip(before), "the store changed");
    assert_counts(&env, "et-open-suricata", 34_850, 24_827, 10_023);
    assert!(!old.exists());
}

#[test]
fn archive_is_refused_with_the_hint_when_the_option_is_off() {
    let env = Env::new();
    let a = drop_file(&env, "emerging.rules.tar.gz", &read(ARCHIVE_2017));
    let o = ingest_file(&env, &a);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(o.stdout.contains("accept_unsigned_archives: true"), "{o:?}");
    let reasons = failed_reasons(&env);
    assert!(
        reasons.contains("accept_unsigned_archives: true") && reasons.contains("archive_sources"),
        "{reasons}"
    );
    // Moved out of the inbox into failed/, not lost.
    assert!(!a.exists());
    let kept = walkdir::WalkDir::new(env.path("spool/failed"))
        .into_iter()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name() == "emerging.rules.tar.gz");
    assert!(kept);
    assert_eq!(rule_count(&env), 0);
}

#[test]
fn unattributable_archive_shows_the_archive_sources_entry_to_add() {
    let env = Env::with_config(ACCEPT);
    let a = drop_file(&env, "local-hunting.rules", &small_rules(9_000_000, 3));
    let o = ingest_file(&env, &a);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(
        o.stdout.contains("archive_sources") && o.stdout.contains("match: \"local-hunting.rules\""),
        "{o:?}"
    );
    assert_eq!(rule_count(&env), 0);
}

#[test]
fn archive_of_a_bundle_fed_source_keeps_the_bundle_sequence_check() {
    let env = Env::with_config(&format!(
        "{ACCEPT}archive_sources:\n  - match: \"hand-*.rules\"\n    ruleset: et-open\n    name: et-open\n"
    ));
    let files = |n| vec![("emerging-test.rules".to_string(), small_rules(2_000_000, n))];
    let b1 = env.bundle("et-open", 1, &files(5));
    let b2 = env.bundle("et-open", 2, &files(6));
    assert_eq!(env.ingest(&b1).code, Some(0));
    let a = drop_file(&env, "hand-2024.rules", &small_rules(2_000_000, 6));
    let o = ingest_file(&env, &a);
    assert_eq!(o.code, Some(0), "{o:?}");
    let s = env.source_status("et-open");
    assert_eq!(
        (s["rules"].clone(), s["last_sequence"].clone()),
        (6.into(), 1.into()),
        "{s}"
    );
    assert_eq!(s["origin"], "unsigned archive");
    // The next signed bundle is accepted and moves the sequence on.
    let o = env.ingest(&b2);
    assert_eq!(o.code, Some(0), "{o:?}");
    let s = env.source_status("et-open");
    assert_eq!(s["last_sequence"], 2, "{s}");
    assert_eq!(s["origin"], "signed bundle");
}

#[test]
fn watch_takes_a_growing_file_only_once_it_is_stable() {
    let env = Env::with_config(&format!("{ACCEPT}debounce: 2s\n"));
    let archive = targz(&[
        (
            "rules/emerging-test.rules".into(),
            small_rules(2_100_000, 40),
        ),
        ("rules/suricata-5.0-enhanced-open.txt".into(), Vec::new()),
    ]);
    let w = Watch::start(&env, &[]);
    let p = env.inbox().join("emerging.rules.tar.gz");
    // A slow copy: a chunk every 300 ms for ~2.4 s, longer than the 2 s debounce time.
    let chunks: Vec<&[u8]> = archive.chunks(archive.len() / 8 + 1).collect();
    for c in &chunks {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .unwrap();
        f.write_all(c).unwrap();
        drop(f);
        std::thread::sleep(std::time::Duration::from_millis(300));
        // Still growing: not taken, not rejected.
        assert!(p.exists(), "taken while still being copied");
        assert!(!env.path("spool/failed").exists() || failed_reasons(&env).is_empty());
    }
    assert!(
        wait_for(20, || !p.exists()),
        "the finished file was not taken"
    );
    assert!(wait_for(10, || env.source_status("et-open-suricata-5.0")
        ["rules"]
        == 40));
    let o = w.terminate();
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(failed_reasons(&env).is_empty(), "{o:?}");
}

#[test]
fn held_archive_is_released_with_approve_and_bad_archive_sources_are_named() {
    let env = Env::with_config(&format!(
        "{ACCEPT}archive_sources:\n  - match: \"hand-*.rules\"\n    ruleset: et-open\n    name: hand\n"
    ));
    let a = drop_file(&env, "hand-1.rules", &small_rules(3_000_000, 10));
    // A dry run shows the import and leaves the file and the store alone.
    let o = env.run(&["ingest", "--dry-run", a.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stdout.contains("dry-run") && o.stdout.contains("added 10"),
        "{o:?}"
    );
    assert!(a.exists());
    assert_eq!(rule_count(&env), 0);
    assert_eq!(ingest_file(&env, &a).code, Some(0));
    // 8 of 10 rules gone: the sanity gate holds it; the work copy waits for --approve.
    let b = drop_file(&env, "hand-2.rules", &small_rules(3_000_000, 2));
    let o = ingest_file(&env, &b);
    assert!(o.stdout.contains("HELD"), "{o:?}");
    assert_eq!(env.source_status("hand")["rules"], 10);
    let held = env.status()["sources"][0]["held"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(held.starts_with("archive-"), "{held}");
    let o = env.run(&["ingest", "--approve", &held]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("hand")["rules"], 2);

    // A typo in archive_sources is named with its key.
    let bad = Env::with_config(&format!(
        "{ACCEPT}archive_sources:\n  - match: \"x*\"\n    ruleset: et-open-typo\n"
    ));
    let o = bad.run(&["status"]);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(o.stderr.contains("archive_sources[0].ruleset"), "{o:?}");
}

#[test]
fn watch_moves_a_dropped_archive_to_failed_when_the_option_is_off() {
    let env = Env::new();
    let archive = targz(&[
        (
            "rules/emerging-test.rules".into(),
            small_rules(2_200_000, 5),
        ),
        ("rules/suricata-5.0-enhanced-open.txt".into(), Vec::new()),
    ]);
    let p = drop_file(&env, "emerging.rules.tar.gz", &archive);
    let w = Watch::start(&env, &[]);
    assert!(wait_for(15, || failed_reasons(&env)
        .contains("accept_unsigned_archives: true")));
    let o = w.terminate();
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(!p.exists());
    assert!(o.stdout.contains("REJECTED"), "{o:?}");
    assert_eq!(env.status()["sources"].as_array().unwrap().len(), 0);
}
