//! The STIX 2.1 sink: the bundle for the full ET Open 5.0 set passes stix2-validator with no
//! errors and holds one indicator per exported rule and per block-list address in the store;
//! a re-export keeps ids and `created`, moves `modified` only for changed rules, and writes a
//! removed rule `revoked: true`.

mod ingest_support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use ingest_support::*;
use serde_json::Value;

/// stix2_validator from `ETFERRY_STIX2_VALIDATOR`, the CI venv, or PATH; `None` (skipped with a
/// message) only outside CI.
fn validator() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ETFERRY_STIX2_VALIDATOR").map(PathBuf::from),
        Some(PathBuf::from("/opt/etferry-pytools/bin/stix2_validator")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return Some(c);
        }
    }
    if Command::new("stix2_validator")
        .arg("--help")
        .output()
        .is_ok()
    {
        return Some(PathBuf::from("stix2_validator"));
    }
    if std::env::var_os("CI").is_some() {
        panic!("stix2_validator is not installed; .ci/run installs it into /opt/etferry-pytools");
    }
    eprintln!(
        "SKIPPED: stix2_validator not found (set ETFERRY_STIX2_VALIDATOR or run \
         `python3 -m venv /opt/etferry-pytools && /opt/etferry-pytools/bin/pip install stix2-validator`)"
    );
    None
}

fn bundle_json(env: &Env) -> Value {
    serde_json::from_slice(&std::fs::read(env.path("out/etferry.json")).unwrap()).unwrap()
}

fn by_id(v: &Value) -> HashMap<String, Value> {
    v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_string(), o.clone()))
        .collect()
}

#[test]
fn full_et_open_bundle_validates_and_matches_the_store() {
    let Some(tool) = validator() else { return };
    let env = Env::with_config("sinks:\n  stix:\n    path: ../out/etferry.json\n");
    let archive = targz_of_dir(&corpus("et-open-suricata-5.0-2024-04-21/rules"));
    let b = env.bundle(
        "et-open-suricata-5.0",
        1,
        &[("emerging.rules.tar.gz".into(), archive)],
    );
    let r = env.ingest(&b);
    assert_eq!(r.code, Some(0), "{r:?}");
    let v = bundle_json(&env);
    let objs = v["objects"].as_array().unwrap();

    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    let rules: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM rules WHERE enabled = 1 AND removed = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let addresses: i64 = c
        .query_row("SELECT COUNT(DISTINCT value) FROM indicators", [], |r| {
            r.get(0)
        })
        .unwrap();
    let count = |f: &dyn Fn(&Value) -> bool| objs.iter().filter(|o| f(o)).count() as i64;
    assert_eq!(count(&|o| o["pattern_type"] == "suricata"), rules);
    assert_eq!(count(&|o| o["pattern_type"] == "stix"), addresses);
    assert!(addresses > 100, "{addresses}");
    assert_eq!(count(&|o| o["type"] == "identity"), 1);
    assert_eq!(objs.len() as i64, rules + addresses + 1);
    println!("STIX: {rules} rule indicators, {addresses} address indicators");

    // One rule, looked at closely.
    let one = objs
        .iter()
        .find(|o| o["external_references"][0]["external_id"] == "1:2101948")
        .expect("sid 2101948");
    assert_eq!(one["created_by_ref"], objs[0]["id"]);
    assert!(one["pattern"].as_str().unwrap().contains("sid:2101948;"));
    assert!(one["name"].as_str().unwrap().starts_with("GPL DNS"));
    assert!(one["valid_from"].as_str().unwrap().ends_with('Z'));
    assert!(objs.iter().any(|o| o["pattern"]
        .as_str()
        .is_some_and(|p| p.starts_with("[ipv4-addr:value = '"))));

    // stix2-validator takes about 10 ms per object (some 5 minutes for the whole set on two
    // cores), so CI validates the identity, every address indicator and every 8th rule indicator,
    // each exactly as etferry wrote it; ETFERRY_STIX_FULL=1 validates the whole file.
    let target = if std::env::var_os("ETFERRY_STIX_FULL").is_some() {
        env.path("out/etferry.json")
    } else {
        let mut sample = v.clone();
        let kept: Vec<Value> = objs
            .iter()
            .enumerate()
            .filter(|(i, o)| o["pattern_type"] != "suricata" || i % 8 == 0)
            .map(|(_, o)| o.clone())
            .collect();
        assert!(kept.len() > 3_000, "{}", kept.len());
        sample["objects"] = Value::Array(kept);
        let p = env.path("out/sample.json");
        std::fs::write(&p, serde_json::to_vec_pretty(&sample).unwrap()).unwrap();
        p
    };
    let out = Command::new(&tool).arg(&target).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[X]"))
        .take(20)
        .collect();
    let warnings = text.lines().filter(|l| l.contains("[!]")).count();
    println!(
        "stix2_validator: exit {:?}, {} errors, {warnings} warnings",
        out.status.code(),
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rules_file(rules: &[(u32, u32)]) -> Vec<(String, Vec<u8>)> {
    let text: String = rules
        .iter()
        .map(|&(sid, rev)| {
            format!(
                "alert tcp any any -> any any (msg:\"ET TEST r{sid}\"; content:\"a{rev}\"; \
                 reference:url,example.org/{sid}; reference:cve,2021-44228; \
                 metadata:created_at 2024_01_0{rev}; sid:{sid}; rev:{rev};)\n"
            )
        })
        .collect();
    vec![("rules/emerging-test.rules".into(), text.into_bytes())]
}

#[test]
fn reexport_updates_modified_in_place_and_revokes_removed_rules() {
    let env = Env::with_config(
        "sanity:\n  max_drop_percent: 50\nsinks:\n  stix:\n    path: ../out/etferry.json\n",
    );
    let b = env.bundle(
        "et-open",
        1,
        &rules_file(&[(2_000_001, 1), (2_000_002, 1), (2_000_003, 1)]),
    );
    assert_eq!(env.ingest(&b).code, Some(0));
    let first = by_id(&bundle_json(&env));
    assert_eq!(first.len(), 4);
    let r1 = first
        .values()
        .find(|o| o["name"] == "ET TEST r2000001")
        .unwrap();
    assert_eq!(r1["valid_from"], "2024-01-01T00:00:00.000Z");
    assert!(r1["external_references"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["external_id"] == "CVE-2021-44228"));

    std::thread::sleep(std::time::Duration::from_millis(20));
    // 2000001 unchanged, 2000002 gets rev 2, 2000003 is removed.
    let b = env.bundle("et-open", 2, &rules_file(&[(2_000_001, 1), (2_000_002, 2)]));
    assert_eq!(env.ingest(&b).code, Some(0));
    let second = by_id(&bundle_json(&env));
    assert_eq!(second.len(), 4, "no duplicates");
    let find = |m: &HashMap<String, Value>, name: &str| {
        m.values().find(|o| o["name"] == name).unwrap().clone()
    };
    let (a1, a2) = (
        find(&first, "ET TEST r2000001"),
        find(&second, "ET TEST r2000001"),
    );
    assert_eq!(a1, a2, "an unchanged rule is written as it was");
    let (b1, b2) = (
        find(&first, "ET TEST r2000002"),
        find(&second, "ET TEST r2000002"),
    );
    assert_eq!(b1["id"], b2["id"]);
    assert_eq!(b1["created"], b2["created"]);
    assert_ne!(b1["modified"], b2["modified"]);
    assert!(b2["pattern"].as_str().unwrap().contains("rev:2;"));
    let (c1, c2) = (
        find(&first, "ET TEST r2000003"),
        find(&second, "ET TEST r2000003"),
    );
    assert_eq!(c1["id"], c2["id"]);
    assert_eq!(c2["revoked"], true);
    assert!(c1.get("revoked").is_none());

    // An export with nothing new rewrites nothing.
    let before = std::fs::read(env.path("out/etferry.json")).unwrap();
    let o = env.run(&["export", "stix"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stdout.contains("2 rule indicators") || o.stdout.contains("3 rule indicators"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("unchanged"), "{}", o.stdout);
    assert_eq!(std::fs::read(env.path("out/etferry.json")).unwrap(), before);
}
