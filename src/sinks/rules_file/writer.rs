//! From the stored payloads to the text of the merged rules file, `sid-msg.map` and
//! `classification.config`, as suricata-update 1.3 builds them: files in name order,
//! `*deleted.rules` ignored, one rule per `gid:sid` (the higher rev wins, else the first seen),
//! then the policy, then flowbits. Nothing here touches the file system.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::flowbits;
use super::parse::{parse_file, py_strip, SuRule};
use super::policy::{Policy, PolicyCounts};
use super::pyfmt::fnmatch;

/// One file of a stored payload (an archive member, or a plain payload file).
#[derive(Debug, Clone)]
pub struct Input {
    pub source: String,
    /// Path inside the archive, e.g. `rules/emerging-dns.rules`.
    pub path: String,
    pub data: Vec<u8>,
}

/// suricata-update's default `ignore:` list.
const IGNORE: [&str; 1] = ["*deleted.rules"];

/// What the file holds and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Rules written (enabled + disabled).
    pub total: usize,
    pub enabled: usize,
    /// Written commented out.
    pub disabled: usize,
    pub by_policy: PolicyCounts,
    /// Disabled rules enabled (with `noalert`) because an enabled rule checks their flowbit.
    pub by_flowbits: usize,
    pub rules_files: usize,
    /// Files skipped as suricata-update skips them (`*deleted.rules`).
    pub ignored_files: usize,
    /// Lines suricata-update would log as "Failed to parse rule" and skip.
    pub skipped_lines: usize,
}

/// The three outputs, as text.
#[derive(Debug, Clone, Default)]
pub struct Built {
    pub rules: String,
    pub sid_msg_map: String,
    pub classification: String,
    pub counts: Counts,
    /// `file:line: reason` of skipped lines (first few are logged).
    pub skipped: Vec<String>,
}

/// Build the outputs from `inputs` (any order; sorted here by source, then path).
pub fn build(mut inputs: Vec<Input>, policy: &Policy) -> Built {
    inputs.sort_by(|a, b| (&a.source, &a.path).cmp(&(&b.source, &b.path)));
    let mut b = Built::default();
    let mut classification = Vec::new();
    let mut files = Vec::new();
    for i in &inputs {
        if i.path.contains("classification.config") {
            classification.push(i);
        } else if i.path.ends_with(".rules") {
            let base = i.path.rsplit('/').next().unwrap_or(&i.path);
            if IGNORE.iter().any(|p| fnmatch(base, p)) {
                b.counts.ignored_files += 1;
            } else {
                files.push(i);
            }
        }
    }
    b.counts.rules_files = files.len();
    let parsed: Vec<_> = files
        .par_iter()
        .map(|i| {
            let group: Arc<str> = Arc::from(i.path.as_str());
            let (rules, errors) = parse_file(&i.data, &group);
            let errors: Vec<String> = errors
                .into_iter()
                .map(|(n, e)| format!("{}: {}:{n}: {e}", i.source, i.path))
                .collect();
            (rules, errors)
        })
        .collect();

    // build_rule_map: first seen keeps its place; a higher rev replaces it there.
    let mut rules: Vec<SuRule> = Vec::new();
    let mut at: HashMap<(i64, i64), usize> = HashMap::new();
    for (file_rules, errors) in parsed {
        b.skipped.extend(errors);
        for r in file_rules {
            match at.get(&r.id()) {
                None => {
                    at.insert(r.id(), rules.len());
                    rules.push(r);
                }
                Some(&k) if r.rev > rules[k].rev => rules[k] = r,
                Some(_) => {}
            }
        }
    }
    b.counts.skipped_lines = b.skipped.len();
    b.counts.by_policy = policy.apply(&mut rules);
    b.counts.by_flowbits = flowbits::resolve(&mut rules);

    let mut out = String::with_capacity(rules.iter().map(|r| r.raw.len() + 12).sum());
    let mut map = String::new();
    for r in rules.iter_mut() {
        out.push_str(&r.format());
        out.push('\n');
        if r.enabled {
            b.counts.enabled += 1;
        } else {
            b.counts.disabled += 1;
        }
        if let Some(line) = sid_msg_line(r) {
            map.push_str(&line);
            map.push('\n');
        }
    }
    b.counts.total = rules.len();
    b.rules = out;
    b.sid_msg_map = map;
    b.classification = merge_classification(&classification);
    b
}

/// `format_sidmsgmap` (v1): `sid || msg || reference…`; a rule with a bare `reference;` has no
/// line, as in suricata-update.
fn sid_msg_line(r: &SuRule) -> Option<String> {
    let mut parts = vec![r.sid.to_string(), r.msg.clone()];
    for x in &r.references {
        parts.push(x.clone()?);
    }
    Some(parts.join(" || "))
}

/// `load_classification` over the rulesets' `classification.config` files: one line per
/// short name, a later line replacing an earlier one only with a greater priority (compared as
/// text, as suricata-update compares them), in first-seen order.
fn merge_classification(files: &[&Input]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut by_key: HashMap<String, (String, String)> = HashMap::new();
    for f in files {
        let text = String::from_utf8_lossy(&f.data);
        for line in text.split('\n') {
            if line.starts_with('#') || py_strip(line).is_empty() {
                continue;
            }
            let Some(value) = line.split(':').nth(1) else {
                tracing::warn!("{}: {}: not a classification line: {line}", f.source, f.path);
                continue;
            };
            let parts: Vec<&str> = py_strip(value).split(',').collect();
            let [key, _desc, prio] = parts[..] else {
                tracing::warn!("{}: {}: not a classification line: {line}", f.source, f.path);
                continue;
            };
            if let Some((p, _)) = by_key.get(key) {
                if p.as_str() >= prio {
                    continue;
                }
            } else {
                order.push(key.to_string());
            }
            by_key.insert(
                key.to_string(),
                (prio.to_string(), py_strip(line).to_string()),
            );
        }
    }
    order
        .iter()
        .filter_map(|k| by_key.get(k))
        .map(|(_, l)| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str, text: &str) -> Input {
        Input {
            source: "et-open".into(),
            path: path.into(),
            data: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn duplicates_keep_the_higher_rev_in_the_first_place_and_deleted_files_are_ignored() {
        let b = build(
            vec![
                input("rules/b.rules", "alert tcp any any -> any any (msg:\"new\"; sid:1; rev:2;)\n"),
                input("rules/a.rules", "alert tcp any any -> any any (msg:\"old\"; sid:1; rev:1;)\nalert tcp any any -> any any (msg:\"two\"; reference:url,x.org; sid:2; rev:1;)\n"),
                input("rules/emerging-deleted.rules", "alert tcp any any -> any any (msg:\"gone\"; sid:3; rev:1;)\n"),
                input("rules/classification.config", "config classification: a,A,2\nconfig classification: a,A2,3\n# c\nconfig classification: b,B,1\n"),
            ],
            &Policy::default(),
        );
        assert_eq!(
            b.rules,
            "alert tcp any any -> any any (msg:\"new\"; sid:1; rev:2;)\nalert tcp any any -> any any (msg:\"two\"; reference:url,x.org; sid:2; rev:1;)\n"
        );
        assert_eq!(b.sid_msg_map, "1 || new\n2 || two || url,x.org\n");
        assert_eq!(b.classification, "config classification: a,A2,3\nconfig classification: b,B,1\n");
        assert_eq!((b.counts.total, b.counts.ignored_files, b.counts.rules_files), (2, 1, 2));
    }
}
