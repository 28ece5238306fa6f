//! ExportItems from real ET rule files, for the sink tests, built with the product's own parser
//! (`etferry::rules`), so the tests see exactly the fields the pipeline would store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use etferry::rules::{self, ParseOptions, Rule};
use etferry::sinks::ExportItem;

#[path = "../corpus_support/mod.rs"]
mod corpus_support;

/// The ET Open Suricata 5.0 rules folder of the unpacked corpus.
pub fn suricata_5() -> PathBuf {
    corpus_support::root().join("et-open-suricata-5.0-2024-04-21/rules")
}

/// One parsed rule → the ExportItem a sink would be given for it.
fn item_from_rule(r: &Rule<'_>, file: &str, engine: &str) -> ExportItem {
    let pairs = |v: &[(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    ExportItem {
        source: format!("et-open-{engine}"),
        ruleset: "et-open".into(),
        engine: Some(engine.into()),
        gid: r.gid,
        sid: r.sid,
        rev: r.rev,
        msg: r.msg.to_string(),
        text: r.text.to_string(),
        enabled: r.enabled,
        removed: false,
        status: if r.enabled { "Active" } else { "Review" }.into(),
        classtype: r.classtype.as_deref().map(String::from),
        file: file.to_string(),
        references: pairs(&r.references),
        metadata: pairs(&r.metadata),
        previous_rev: None,
        previous_text: None,
    }
}

/// Every rule of one rules file's bytes, in file order.
fn items_from_bytes(data: &[u8], name: &str, engine: &str) -> Vec<ExportItem> {
    let parsed = rules::parse_bytes(name, data, &ParseOptions::default());
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed
        .rules
        .iter()
        .map(|r| item_from_rule(r, name, engine))
        .collect()
}

/// Every rule of every `.rules` file under `dir`, sorted by file then line.
pub fn load_dir(dir: &Path, engine: &str) -> Vec<ExportItem> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = format!(
            "rules/{}",
            Path::new(&f).file_name().unwrap().to_string_lossy()
        );
        out.extend(items_from_bytes(&std::fs::read(&f).unwrap(), &name, engine));
    }
    out
}

/// Items a sink is given for one file only.
pub fn load_file(dir: &Path, file: &str, engine: &str) -> Vec<ExportItem> {
    let data = std::fs::read(dir.join(file)).unwrap();
    items_from_bytes(&data, &format!("rules/{file}"), engine)
}

/// What the store would hand the sink after `prev` was confirmed and `cur` arrived: added,
/// modified (text or rev), enabled changes (with their status), removed (with `removed_status`).
pub fn diff(prev: &[ExportItem], cur: &[ExportItem]) -> Vec<ExportItem> {
    let old: HashMap<(u32, u32), &ExportItem> = prev.iter().map(|i| ((i.gid, i.sid), i)).collect();
    let now: HashMap<(u32, u32), &ExportItem> = cur.iter().map(|i| ((i.gid, i.sid), i)).collect();
    let mut out = Vec::new();
    for it in cur {
        match old.get(&(it.gid, it.sid)) {
            None => out.push(it.clone()),
            Some(o) if o.text != it.text || o.rev != it.rev || o.enabled != it.enabled => {
                let mut c = it.clone();
                c.previous_rev = Some(o.rev);
                c.previous_text = Some(o.text.clone());
                out.push(c);
            }
            Some(_) => {}
        }
    }
    for it in prev {
        if !now.contains_key(&(it.gid, it.sid)) {
            let mut c = it.clone();
            c.removed = true;
            c.status = "Expired".into();
            out.push(c);
        }
    }
    out
}

/// A deterministic "next day" of `base`: `changed` rules get rev+1 (text and updated_at too),
/// `added` rules are new SIDs, `removed` rules disappear, `disabled` rules get shipped disabled.
pub fn next_day(
    base: &[ExportItem],
    changed: usize,
    added: usize,
    removed: usize,
    disabled: usize,
) -> Vec<ExportItem> {
    let mut out: Vec<ExportItem> = Vec::with_capacity(base.len() + added);
    let step = (base.len() / (changed + removed + disabled + 1)).max(1);
    let mut n = 0usize;
    for (i, it) in base.iter().enumerate() {
        let mut c = it.clone();
        if i % step == 0 && i > 0 {
            n += 1;
            if n <= changed {
                let new_rev = c.rev + 1;
                c.text = c
                    .text
                    .replace(&format!("rev:{};", c.rev), &format!("rev:{new_rev};"));
                c.rev = new_rev;
                for (k, v) in c.metadata.iter_mut() {
                    if k == "updated_at" {
                        *v = "2024_04_22".into();
                    }
                }
            } else if n <= changed + removed {
                continue;
            } else if n <= changed + removed + disabled && c.enabled {
                c.enabled = false;
                c.status = "Review".into();
            }
        }
        out.push(c);
    }
    for (k, orig) in base.iter().take(added).enumerate() {
        let mut c = orig.clone();
        c.sid = 2_999_000 + k as u32;
        c.rev = 1;
        c.text = c
            .text
            .replace(&format!("sid:{};", orig.sid), &format!("sid:{};", c.sid));
        c.msg = format!("{} (new)", c.msg);
        out.push(c);
    }
    out
}
