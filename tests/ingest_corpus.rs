//! The real ET corpus through `etferry ingest`: counts in the store equal SOURCES.md, IP lists
//! become indicators, and the 2017 → 2024 diff equals an independent computation.

mod ingest_support;

use std::collections::HashMap;

use ingest_support::*;

#[test]
fn corpus_rulesets_are_stored_with_the_corpus_counts() {
    let env = Env::new();
    // (source, payload, rules, standard, non-standard) from tests/corpus/SOURCES.md
    let sets: [(&str, Vec<u8>, u64, u64, u64); 3] = [
        (
            "et-open-suricata-1.3",
            read("et-open-suricata-1.3-enhanced-2017-03-10/emerging.rules.tar.gz"),
            23_906,
            19_556,
            4_350,
        ),
        (
            "et-open-snort-2.9.0",
            read("et-open-snort-2.9.0-2020-03-27/emerging.rules.tar.gz"),
            28_895,
            19_475,
            9_420,
        ),
        (
            "et-open-suricata-5.0",
            targz_of_dir(&corpus("et-open-suricata-5.0-2024-04-21/rules")),
            34_850,
            24_827,
            10_023,
        ),
    ];
    for (src, archive, rules, standard, non_standard) in sets {
        let b = env.bundle(src, 1, &[("emerging.rules.tar.gz".into(), archive)]);
        let o = env.ingest(&b);
        assert_eq!(o.code, Some(0), "{src}: {o:?}");
        let s = env.source_status(src);
        assert_eq!(s["rules"], rules, "{src}: {s}");
        assert_eq!(s["standard"], standard, "{src}: {s}");
        assert_eq!(s["non_standard"], non_standard, "{src}: {s}");
        assert_eq!(s["last_sequence"], 1);
        assert_eq!(s["held"].as_array().unwrap().len(), 0);
    }
    // Non-standard rules are stored without their `#`, with their class.
    let o = env.run(&["rules", "--sid", "2012189", "--json"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    for r in v["rules"].as_array().unwrap() {
        assert!(!r["text"].as_str().unwrap().starts_with('#'));
        assert_eq!(r["class"] == "standard", r["enabled"] == true);
    }
    // Every rule of emerging-deleted.rules is non-standard and gets the non-standard status.
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    let (n, enabled): (i64, i64) = c
        .query_row(
            "SELECT COUNT(*), SUM(enabled) FROM rules WHERE source = 'et-open-suricata-5.0'
             AND file = 'rules/emerging-deleted.rules'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, enabled), (3_444, 0));
    let o = env.run(&[
        "rules",
        "--grep",
        "ET DELETED",
        "--status",
        "Inactive",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(v["rules"].as_array().unwrap().len() >= 3_444);
}

#[test]
fn block_ip_lists_become_indicators_with_their_sections() {
    let env = Env::new();
    let files = vec![
        (
            "emerging-Block-IPs.txt".to_string(),
            read("et-blocklists/fwrules-2020-rev5793/emerging-Block-IPs.txt"),
        ),
        (
            "compromised-ips.txt".to_string(),
            read("et-blocklists/blockrules-2019-10-04/compromised-ips.txt"),
        ),
        (
            "emerging-botcc.rules".to_string(),
            read("et-blocklists/blockrules-2019-10-04/emerging-botcc.rules"),
        ),
    ];
    let b = env.bundle_in(
        &env.path("spool/outbox"),
        "et-blockrules",
        "et-blockrules",
        1,
        &files,
    );
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(0), "{o:?}");
    let s = env.source_status("et-blockrules");
    assert_eq!(s["rules"], 436, "{s}");
    // 1,151 IPs + 965 CIDRs (Block-IPs) + 722 IPs (compromised-ips), per SOURCES.md.
    assert_eq!(s["indicators"], 1_151 + 965 + 722, "{s}");
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    let by: HashMap<String, i64> = c
        .prepare("SELECT section || '/' || kind, COUNT(*) FROM indicators GROUP BY 1")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(by.get("compromised-ips/ip"), Some(&722));
    assert!(by.contains_key("Feodo/ip"), "{by:?}");
    assert!(by.contains_key("Spamhaus DROP Nets/cidr"), "{by:?}");
    assert!(by.contains_key("Dshield Top Attackers/cidr"), "{by:?}");
    let feodo: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM indicators WHERE section = 'Feodo' AND value IN ('222.222.222.222', '192.168.1.101')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(feodo, 2, "real data, RFC 1918 included, is kept");
}

/// One rule as the test reads it straight from the corpus, independent of the product's parser.
struct Simple {
    rev: u32,
    text: String,
    enabled: bool,
}

fn simple_rules(dir: &std::path::Path) -> HashMap<u32, Simple> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("rules") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.lines() {
            let body = line.trim_start_matches(['#', ' ']);
            if !body.starts_with("alert ") || !body.contains("sid:") {
                continue;
            }
            let num = |key: &str| -> u32 {
                let i = body.find(key).unwrap() + key.len();
                body[i..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<String>()
                    .parse()
                    .unwrap()
            };
            let sid = num(" sid:");
            out.insert(
                sid,
                Simple {
                    rev: num(" rev:"),
                    text: body.trim_end().to_string(),
                    enabled: !line.starts_with('#'),
                },
            );
        }
    }
    out
}

#[test]
fn diff_2017_then_2024_equals_an_independent_computation() {
    let env = Env::new();
    let old_dir = corpus("et-open-suricata-1.3-enhanced-2017-03-10/rules");
    let new_dir = corpus("et-open-suricata-5.0-2024-04-21/rules");
    let b1 = env.bundle(
        "et-open",
        1,
        &[(
            "emerging.rules.tar.gz".into(),
            read("et-open-suricata-1.3-enhanced-2017-03-10/emerging.rules.tar.gz"),
        )],
    );
    let b2 = env.bundle(
        "et-open",
        2,
        &[("emerging.rules.tar.gz".into(), targz_of_dir(&new_dir))],
    );
    assert_eq!(env.ingest(&b1).code, Some(0));
    let o = env.ingest(&b2);
    assert_eq!(o.code, Some(0), "{o:?}");

    let old = simple_rules(&old_dir);
    let new = simple_rules(&new_dir);
    let (mut added, mut removed, mut modified, mut enabled_changed, mut unchanged) =
        (0, 0, 0, 0, 0);
    for (sid, n) in &new {
        match old.get(sid) {
            None => added += 1,
            Some(o) if o.rev != n.rev || o.text != n.text => modified += 1,
            Some(o) if o.enabled != n.enabled => enabled_changed += 1,
            Some(_) => unchanged += 1,
        }
    }
    for sid in old.keys() {
        if !new.contains_key(sid) {
            removed += 1;
        }
    }
    let o = env.run(&["report", "--last", "--json"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let c = &r["counts"];
    assert_eq!(c["added"], added, "{c}");
    assert_eq!(c["removed"], removed, "{c}");
    assert_eq!(c["modified"], modified, "{c}");
    assert_eq!(c["enabled_changed"], enabled_changed, "{c}");
    assert_eq!(c["unchanged"], unchanged, "{c}");
    assert_eq!(r["added"].as_array().unwrap().len(), added);
    assert_eq!(r["removed"].as_array().unwrap().len(), removed);
    assert_eq!(r["bundle"], "et-open-00000002");
    assert_eq!(r["sequence"], 2);
    let e = &r["added"][0];
    for k in ["gid", "sid", "rev", "msg", "file", "category"] {
        assert!(!e[k].is_null(), "entry lacks {k}: {e}");
    }
    // The store now holds the 2024 set; removed rules stay with removed status.
    let s = env.source_status("et-open");
    assert_eq!(s["rules"], 34_850);
    let o = env.run(&["rules", "--status", "Expired", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["rules"].as_array().unwrap().len(), removed);
}
