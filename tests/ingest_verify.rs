//! What the air-gapped side refuses or holds, and that nothing is stored when it does.

mod ingest_support;

use chrono::Utc;
use etferry::bundle::{self, Manifest, SigningKey, SourceInfo};
use ingest_support::*;

fn rules_file(sid: u32, n: u32) -> Vec<(String, Vec<u8>)> {
    vec![("emerging-test.rules".to_string(), small_rules(sid, n))]
}

fn reason(env: &Env, id: &str) -> String {
    std::fs::read_to_string(env.path(&format!("spool/failed/{id}.reason.txt"))).unwrap()
}

#[test]
fn same_bundle_twice_changes_nothing() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    assert_eq!(env.ingest(&b).code, Some(0));
    let before = env.dump();
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stderr.contains("already done"), "{o:?}");
    assert_eq!(env.dump(), before);
    assert!(env
        .path("spool/done/et-open-00000001/manifest.json")
        .exists());
}

#[test]
fn replayed_older_sequence_is_rejected_with_exit_4() {
    let env = Env::new();
    let b1 = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    let b2 = env.bundle("et-open", 2, &rules_file(2_000_000, 6));
    assert_eq!(env.ingest(&b2).code, Some(0));
    let before = env.dump();
    let o = env.ingest(&b1);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(o.stdout.contains("replay or rollback"), "{o:?}");
    assert!(reason(&env, "et-open-00000001").contains("last accepted sequence 2"));
    assert!(env
        .path("spool/failed/et-open-00000001/manifest.json")
        .exists());
    // Only the journal learnt about the rejected bundle.
    let strip = |d: Vec<String>| -> Vec<String> {
        d.into_iter().filter(|l| !l.contains("00000001")).collect()
    };
    assert_eq!(strip(env.dump()), strip(before));
    assert_eq!(env.source_status("et-open")["rules"], 6);
}

#[test]
fn one_changed_payload_byte_is_rejected_and_nothing_stored() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    let f = b.join("emerging-test.rules");
    let mut data = std::fs::read(&f).unwrap();
    data[10] ^= 1;
    std::fs::write(&f, data).unwrap();
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(reason(&env, "et-open-00000001").contains("sha256"), "{o:?}");
    assert_eq!(env.status()["sources"].as_array().unwrap().len(), 0);
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM rules", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn unsigned_bundle_is_rejected_when_signatures_are_required() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    std::fs::remove_file(b.join("manifest.json.minisig")).unwrap();
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(reason(&env, "et-open-00000001").contains("unsigned"));
    assert_eq!(env.status()["sources"].as_array().unwrap().len(), 0);
}

#[test]
fn bundle_signed_by_an_untrusted_key_is_rejected() {
    let env = Env::new();
    let other = tempfile::tempdir().unwrap();
    let (skp, _) = bundle::keygen(other.path(), None).unwrap();
    let key = SigningKey::load(&skp, None).unwrap();
    let m = Manifest::new(
        SourceInfo {
            name: "et-open".into(),
            ruleset: "et-open".into(),
            engine: None,
            url: "https://example.invalid/x".into(),
        },
        1,
        Utc::now(),
        std::time::Duration::from_secs(86400),
    );
    let b = bundle::publish(
        &env.path("spool/outbox"),
        m,
        &rules_file(2_000_000, 3),
        &key,
    )
    .unwrap();
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(reason(&env, "et-open-00000001").contains("not a trusted key"));
}

#[test]
fn unsafe_archives_are_rejected_with_a_clear_reason() {
    let env = Env::with_config("limits:\n  max_member_size: 1MiB\n  max_total_size: 4MiB\n");
    let good = small_rules(2_000_000, 2);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut t = Vec::new();
    raw_tar_entry(
        &mut t,
        "rules/../../etc/evil.rules",
        tar::EntryType::Regular,
        None,
        &good,
    );
    cases.push(("dotdot", gzip_tar(t), ".."));
    let mut t = Vec::new();
    raw_tar_entry(
        &mut t,
        "/etc/evil.rules",
        tar::EntryType::Regular,
        None,
        &good,
    );
    cases.push(("absolute", gzip_tar(t), "absolute"));
    let mut t = Vec::new();
    raw_tar_entry(
        &mut t,
        "rules/link.rules",
        tar::EntryType::Symlink,
        Some("/etc/passwd"),
        b"",
    );
    cases.push(("symlink", gzip_tar(t), "symbolic link"));
    // A gzip bomb: 8 MiB of zeros compress to a few KiB; the member limit is 1 MiB.
    let mut t = Vec::new();
    raw_tar_entry(
        &mut t,
        "rules/bomb.rules",
        tar::EntryType::Regular,
        None,
        &vec![0u8; 8 << 20],
    );
    let bomb = gzip_tar(t);
    assert!(bomb.len() < 100_000);
    cases.push(("bomb", bomb, "limit"));
    for (i, (name, archive, word)) in cases.into_iter().enumerate() {
        let src = format!("et-open-{name}");
        let b = env.bundle(&src, 1, &[("emerging.rules.tar.gz".into(), archive)]);
        let o = env.ingest(&b);
        assert_eq!(o.code, Some(4), "{name}: {o:?}");
        let r = reason(&env, &format!("{src}-00000001"));
        assert!(r.contains(word), "{name}: reason {r:?} lacks {word:?}");
        assert!(r.contains("emerging.rules.tar.gz"), "{name}: {r}");
        assert!(!env.path("etc").exists() && !std::path::Path::new("/etc/evil.rules").exists());
        assert_eq!(
            env.status()["sources"].as_array().unwrap().len(),
            0,
            "case {i}"
        );
    }
}

#[test]
fn empty_ruleset_is_held_until_approved() {
    let env = Env::new();
    let b1 = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    assert_eq!(env.ingest(&b1).code, Some(0));
    let b2 = env.bundle(
        "et-open",
        2,
        &[("emerging-test.rules".into(), b"# nothing\n".to_vec())],
    );
    let o = env.ingest(&b2);
    assert_eq!(o.code, Some(5), "{o:?}");
    assert!(o.stdout.contains("HELD"), "{o:?}");
    let s = env.source_status("et-open");
    assert_eq!(s["rules"], 5);
    assert_eq!(s["held"][0], "et-open-00000002");
    assert_eq!(s["last_sequence"], 1);
    // Still held on a plain rerun.
    assert_eq!(env.ingest(&b2).code, Some(5));
    let o = env.run(&["ingest", "--approve", b2.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let s = env.source_status("et-open");
    assert_eq!(s["rules"], 0);
    assert_eq!(s["last_sequence"], 2);
    assert_eq!(s["held"].as_array().unwrap().len(), 0);
    let r: serde_json::Value =
        serde_json::from_str(&env.run(&["report", "--last", "--json"]).stdout).unwrap();
    assert_eq!(r["counts"]["removed"], 5);
}

#[test]
fn large_drop_is_held_and_small_drop_is_not() {
    let env = Env::new();
    assert_eq!(
        env.ingest(&env.bundle("et-open", 1, &rules_file(2_000_000, 10)))
            .code,
        Some(0)
    );
    // 10 → 8: 20 %, at the limit, passes.
    assert_eq!(
        env.ingest(&env.bundle("et-open", 2, &rules_file(2_000_000, 8)))
            .code,
        Some(0)
    );
    // 8 → 6: 25 %, held.
    let o = env.ingest(&env.bundle("et-open", 3, &rules_file(2_000_000, 6)));
    assert_eq!(o.code, Some(5), "{o:?}");
    assert_eq!(env.source_status("et-open")["rules"], 8);
}

#[test]
fn duplicate_sids_keep_the_highest_rev_and_are_reported() {
    let env = Env::new();
    let text = "alert tcp any any -> any any (msg:\"ET TEST a\"; sid:2000001; rev:3;)\n\
                alert tcp any any -> any any (msg:\"ET TEST b\"; sid:2000001; rev:7;)\n\
                alert tcp any any -> any any (msg:\"ET TEST c\"; sid:2000001; rev:5;)\n";
    let b = env.bundle(
        "et-open",
        1,
        &[("x.rules".into(), text.as_bytes().to_vec())],
    );
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("2 duplicates"), "{o:?}");
    let v: serde_json::Value =
        serde_json::from_str(&env.run(&["rules", "--sid", "2000001", "--json"]).stdout).unwrap();
    assert_eq!(v["rules"].as_array().unwrap().len(), 1);
    assert_eq!(v["rules"][0]["rev"], 7);
    assert_eq!(v["rules"][0]["msg"], "ET TEST b");
    let r: serde_json::Value =
        serde_json::from_str(&env.run(&["report", "--last", "--json"]).stdout).unwrap();
    assert_eq!(r["duplicates"].as_array().unwrap().len(), 2);
}

#[test]
fn bundle_of_a_ruleset_not_imported_is_refused() {
    let env = Env::with_config("rulesets: [et-pro]\n");
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 3));
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(
        o.stdout.contains("ruleset et-open is not imported here"),
        "{o:?}"
    );
}

#[test]
fn heartbeat_moves_the_sequence_and_status_warns_about_a_stalled_courier() {
    let env = Env::new();
    assert_eq!(
        env.ingest(&env.bundle("et-open", 1, &rules_file(2_000_000, 3)))
            .code,
        Some(0)
    );
    let mut m = Manifest::new(
        SourceInfo {
            name: "et-open".into(),
            ruleset: "et-open".into(),
            engine: Some("suricata-5.0".into()),
            url: "https://example.invalid/x".into(),
        },
        2,
        Utc::now(),
        std::time::Duration::from_secs(3600),
    );
    m.unchanged_since = Some(Utc::now());
    let hb = bundle::publish(&env.path("spool/outbox"), m, &[], &env.key).unwrap();
    let o = env.ingest(&hb);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("heartbeat"), "{o:?}");
    let s = env.source_status("et-open");
    assert_eq!(s["last_sequence"], 2);
    assert_eq!(s["rules"], 3);
    assert_eq!(s["stalled"], false);
    // Pretend the courier has been silent for longer than the bundle lifetime.
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    c.execute(
        "UPDATE sources SET last_seen_at = '2020-01-01T00:00:00+00:00'",
        [],
    )
    .unwrap();
    let o = env.run(&["status"]);
    assert!(o.stdout.contains("courier stalled"), "{o:?}");
}

#[test]
fn dry_run_stores_nothing() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 4));
    let o = env.run(&["ingest", "--dry-run", b.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("added 4"), "{o:?}");
    assert_eq!(env.status()["sources"].as_array().unwrap().len(), 0);
    assert_eq!(env.ingest(&b).code, Some(0));
}
