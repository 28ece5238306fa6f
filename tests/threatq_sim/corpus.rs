//! ExportItems from real ET rule files, for the sink tests. A small option splitter (quotes and
//! backslash escapes respected) is enough for msg, sid, rev, gid, classtype, reference, metadata;
//! the product's parser lives in `src/rules/`.

use std::collections::HashMap;
use std::path::Path;

use etferry::sinks::ExportItem;

pub const SURICATA_5: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpus/et-open-suricata-5.0-2024-04-21/rules"
);

/// Split the option body `msg:"a\;b"; sid:1;` into (key, value) pairs.
fn options(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut esc = false;
    let chars: Vec<char> = body.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if esc {
            cur.push(c);
            esc = false;
            continue;
        }
        // A quote closes a value only before `;` (ET has `pcre:"/^["']?post/Ri"`).
        let closes = || {
            chars[i + 1..]
                .iter()
                .find(|c| !c.is_whitespace())
                .is_none_or(|c| *c == ';')
        };
        match c {
            '\\' => {
                cur.push(c);
                esc = true;
            }
            '"' if !in_q => {
                cur.push(c);
                in_q = true;
            }
            '"' if closes() => {
                cur.push(c);
                in_q = false;
            }
            ';' if !in_q => {
                let t = cur.trim();
                if !t.is_empty() {
                    let (k, v) = t.split_once(':').unwrap_or((t, ""));
                    out.push((k.trim().to_string(), v.trim().to_string()));
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    out
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s);
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// One rule line (enabled or `#`-disabled) → ExportItem; `None` for comments.
pub fn item_from_line(line: &str, file: &str, engine: &str) -> Option<ExportItem> {
    let t = line.trim();
    let enabled = !t.starts_with('#');
    let text = t.trim_start_matches(|c: char| c == '#' || c.is_whitespace());
    let action = text.split_whitespace().next()?;
    if !matches!(action, "alert" | "drop" | "pass" | "reject") || !text.ends_with(')') {
        return None;
    }
    let open = text.find('(')?;
    let opts = options(&text[open + 1..text.len() - 1]);
    let get = |k: &str| opts.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let sid: u32 = get("sid")?.parse().ok()?;
    let rev: u32 = get("rev").and_then(|r| r.parse().ok()).unwrap_or(1);
    let gid: u32 = get("gid").and_then(|r| r.parse().ok()).unwrap_or(1);
    let mut references = Vec::new();
    let mut metadata = Vec::new();
    for (k, v) in &opts {
        match k.as_str() {
            "reference" => {
                if let Some((a, b)) = v.split_once(',') {
                    references.push((a.trim().to_string(), b.trim().to_string()));
                }
            }
            "metadata" => {
                for e in v.split(',') {
                    let e = e.trim();
                    if let Some((a, b)) = e.split_once(' ') {
                        metadata.push((a.trim().to_string(), b.trim().to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    Some(ExportItem {
        source: format!("et-open-{engine}"),
        ruleset: "et-open".into(),
        engine: Some(engine.into()),
        gid,
        sid,
        rev,
        msg: get("msg").map(|m| unquote(&m)).unwrap_or_default(),
        text: text.to_string(),
        enabled,
        removed: false,
        status: if enabled { "Active" } else { "Review" }.into(),
        classtype: get("classtype"),
        file: file.to_string(),
        references,
        metadata,
        previous_rev: None,
        previous_text: None,
    })
}

/// Every rule of every `.rules` file under `dir`, sorted by file then line.
pub fn load_dir(dir: &str, engine: &str) -> Vec<ExportItem> {
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
        let text = std::fs::read_to_string(&f).unwrap();
        out.extend(
            text.lines()
                .filter_map(|l| item_from_line(l, &name, engine)),
        );
    }
    out
}

/// Items a sink is given for one file only.
pub fn load_file(dir: &str, file: &str, engine: &str) -> Vec<ExportItem> {
    let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
    let name = format!("rules/{file}");
    text.lines()
        .filter_map(|l| item_from_line(l, &name, engine))
        .collect()
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
