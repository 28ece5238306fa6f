//! Rule texts are not copied into rows: the store keeps each source's signed payload and reads
//! texts back from it, checked against each rule's text hash. These tests hold that to the real
//! corpus: every text comes back byte for byte, history keeps what a change replaced, and a
//! damaged payload is an error rather than a wrong text.

mod ingest_support;

use std::collections::HashMap;
use std::path::Path;

use etferry::rules::{parse_bytes, ParseOptions};
use etferry::store::Store;
use ingest_support::*;

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/et-open-sample/rules"
);

/// Every rule text of a rules directory, as the parser gives it, by (gid, sid).
fn texts_of(dir: &Path) -> HashMap<(u32, u32), String> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("rules") {
            continue;
        }
        let data = std::fs::read(&p).unwrap();
        let pf = parse_bytes(&p.display().to_string(), &data, &ParseOptions::default());
        for r in pf.rules {
            out.insert((r.gid, r.sid), r.text.into_owned());
        }
    }
    out
}

/// Ingest a rules directory as sequence `seq` of source `et-open`.
fn ingest_dir(env: &Env, seq: u64, dir: &Path) {
    let b = env.bundle(
        "et-open",
        seq,
        &[("emerging.rules.tar.gz".into(), targz_of_dir(dir))],
    );
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(0), "{o:?}");
}

fn rule_json(env: &Env, sid: u32) -> serde_json::Value {
    let o = env.run(&["rules", "--sid", &sid.to_string(), "--json"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    v["rules"][0].clone()
}

#[test]
fn every_corpus_rule_text_reads_back_byte_identical_from_the_store() {
    let env = Env::new();
    let dir = corpus("et-open-suricata-5.0-2024-04-21/rules");
    let b = env.bundle(
        "et-open-suricata-5.0",
        1,
        &[("emerging.rules.tar.gz".into(), targz_of_dir(&dir))],
    );
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(0), "{o:?}");

    let want = texts_of(&dir);
    assert_eq!(want.len(), 34_850);
    let store = Store::open(&env.store_path()).unwrap();
    let keys: Vec<(u32, u32)> = store
        .rules_of("et-open-suricata-5.0")
        .unwrap()
        .iter()
        .map(|r| (r.gid, r.sid))
        .collect();
    assert_eq!(keys.len(), want.len());
    let got = store.texts("et-open-suricata-5.0", &keys).unwrap();
    assert_eq!(got.len(), want.len());
    for (k, text) in &want {
        assert_eq!(got.get(k), Some(text), "rule {}:{}", k.0, k.1);
    }
    // The rows hold no copy of the texts.
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    let inline: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM rules WHERE text IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(inline, 0);
}

/// The sample with rule `sid` given a new rev and content, and rule `gone` (if any) deleted.
/// Returns the new text of `sid` and the last text of `gone`.
fn changed_sample(dest: &Path, sid: u32, gone: Option<u32>) -> (String, String) {
    copy_dir(Path::new(SAMPLE), dest);
    let mut new_text = String::new();
    let mut gone_text = String::new();
    for e in std::fs::read_dir(dest).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            if line.contains(&format!("sid:{sid};")) {
                let l = line
                    .replace("flow:established", "flow:established,to_server")
                    .replace("rev:", "rev:1");
                new_text = l.trim_start_matches('#').trim_start().to_string();
                out.push_str(&l);
            } else if gone.is_some_and(|g| line.contains(&format!("sid:{g};"))) {
                gone_text = line.trim_start_matches('#').trim_start().to_string();
                continue;
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        std::fs::write(&p, out).unwrap();
    }
    assert!(!new_text.is_empty() && (gone.is_none() || !gone_text.is_empty()));
    (new_text, gone_text)
}

#[test]
fn history_keeps_the_text_a_change_replaced_and_a_removed_rule_keeps_its_last_text() {
    let env = Env::new();
    let before = texts_of(Path::new(SAMPLE));
    // Two enabled rules of the sample with `flow:established` (so the change is a real one).
    let mut candidates: Vec<u32> = before
        .iter()
        .filter(|(_, t)| t.contains("flow:established;") && t.starts_with("alert"))
        .map(|(k, _)| k.1)
        .collect();
    candidates.sort();
    let (sid, gone) = (candidates[0], candidates[1]);

    ingest_dir(&env, 1, Path::new(SAMPLE));
    let changed = env.path("changed/rules");
    let (new_text, gone_text) = changed_sample(&changed, sid, Some(gone));
    ingest_dir(&env, 2, &changed);

    // The current text is the new one, read back from the new payload.
    let r = rule_json(&env, sid);
    assert_eq!(r["text"], new_text.as_str());
    // The history row of the change holds the text it replaced.
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    let previous: String = c
        .query_row(
            "SELECT previous_text FROM rule_history WHERE sid = ?1 AND change = 'modified'",
            [sid],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(previous, before[&(1, sid)]);
    // The removed rule is still shown, with its last text and the removed status.
    let r = rule_json(&env, gone);
    assert_eq!(r["removed"], true);
    assert_eq!(r["status"], "Expired");
    assert_eq!(r["text"], gone_text.as_str());
    let removed_text: String = c
        .query_row(
            "SELECT previous_text FROM rule_history WHERE sid = ?1 AND change = 'removed'",
            [gone],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(removed_text, gone_text);
    // `--grep` searches the texts read back from the payload.
    let o = env.run(&["rules", "--grep", "flow:established,to_server", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let sids: Vec<u64> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sid"].as_u64().unwrap())
        .collect();
    assert!(sids.contains(&(sid as u64)), "{sids:?}");
}

#[test]
fn a_payload_changed_inside_the_store_is_an_error_not_a_wrong_text() {
    let env = Env::new();
    ingest_dir(&env, 1, Path::new(SAMPLE));
    let sid = *texts_of(Path::new(SAMPLE))
        .iter()
        .find(|(_, t)| t.contains("flow:established;"))
        .map(|((_, s), _)| s)
        .unwrap();
    // Someone edits the stored payload: same rules, one text changed, rev kept.
    let changed = env.path("changed/rules");
    changed_sample(&changed, sid, None);
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    c.execute(
        "UPDATE payload_files SET data = ?1",
        [targz_of_dir(&changed)],
    )
    .unwrap();
    drop(c);
    let o = env.run(&["rules", "--sid", &sid.to_string(), "--json"]);
    assert_ne!(o.code, Some(0), "{o:?}");
    assert!(
        o.stderr.contains("the store is damaged") && o.stderr.contains(&sid.to_string()),
        "{o:?}"
    );
}

#[test]
fn a_store_of_an_older_schema_is_refused_and_left_untouched() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("spool")).unwrap();
    {
        let c = rusqlite::Connection::open(env.store_path()).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (1);
             CREATE TABLE rules (source TEXT, gid INTEGER, sid INTEGER, text TEXT NOT NULL);",
        )
        .unwrap();
    }
    let o = env.run(&["status"]);
    assert_ne!(o.code, Some(0), "{o:?}");
    assert!(o.stderr.contains("schema version 1"), "{o:?}");
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    let tables: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 2);
}
