//! The diff of a bundle's rules against the store, per (gid, sid) within one source, and the
//! per-SID change report built from it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::{NewRule, StoredRule};

/// Counts per kind of change. `modified` wins over `enabled_changed` when a rule has both.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    pub enabled_changed: u64,
    pub unchanged: u64,
}

/// One line of the change report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub gid: u32,
    pub sid: u32,
    pub rev: u32,
    // Shared with the parsed rule: a full ruleset's report holds tens of thousands of entries.
    pub msg: Arc<str>,
    pub file: Arc<str>,
    pub category: Option<String>,
    /// Shipped enabled (standard) in the new version.
    pub enabled: bool,
    /// The previous rev, for modified rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_rev: Option<u32>,
}

/// The diff of one bundle.
#[derive(Debug, Default, Clone)]
pub struct Diff {
    pub counts: Counts,
    pub added: Vec<Entry>,
    pub removed: Vec<Entry>,
    pub modified: Vec<Entry>,
    pub enabled_changed: Vec<Entry>,
    /// History kind per (gid, sid) for what the store must write (`new` for a rule the store
    /// never held).
    pub changes: HashMap<(u32, u32), &'static str>,
    /// (gid, sid) that disappeared.
    pub removed_keys: Vec<(u32, u32)>,
    /// Unchanged rules now in another rules file (not a change to report, but the row's file).
    pub moved: HashSet<(u32, u32)>,
    /// Rules in the store before (not counting removed ones).
    pub before: u64,
}

fn entry(r: &NewRule, previous_rev: Option<u32>) -> Entry {
    Entry {
        gid: r.gid,
        sid: r.sid,
        rev: r.rev,
        msg: r.msg.clone(),
        file: r.file.clone(),
        category: r.category.clone(),
        enabled: r.enabled,
        previous_rev,
    }
}

/// Compare the new, deduplicated rules of a source with what the store holds for it.
pub fn diff(new: &[NewRule], old: &HashMap<(u32, u32), StoredRule>) -> Diff {
    let mut d = Diff {
        before: old.values().filter(|o| !o.removed).count() as u64,
        ..Diff::default()
    };
    let mut seen: HashSet<(u32, u32)> = HashSet::with_capacity(new.len());
    for r in new {
        let key = (r.gid, r.sid);
        seen.insert(key);
        match old.get(&key) {
            None => {
                d.counts.added += 1;
                d.added.push(entry(r, None));
                d.changes.insert(key, "new");
            }
            Some(o) if o.removed => {
                d.counts.added += 1;
                d.added.push(entry(r, None));
                d.changes.insert(key, "added");
            }
            Some(o) if o.rev != r.rev || o.text_hash != r.hash => {
                d.counts.modified += 1;
                d.modified.push(entry(r, Some(o.rev)));
                d.changes.insert(key, "modified");
            }
            Some(o) if o.enabled != r.enabled => {
                d.counts.enabled_changed += 1;
                d.enabled_changed.push(entry(r, None));
                d.changes.insert(key, "enabled_changed");
            }
            Some(o) => {
                d.counts.unchanged += 1;
                if o.file != r.file {
                    d.moved.insert(key);
                }
            }
        }
    }
    let mut removed: Vec<_> = old
        .iter()
        .filter(|(k, o)| !o.removed && !seen.contains(k))
        .collect();
    removed.sort_by_key(|(k, _)| **k);
    for (k, o) in removed {
        d.counts.removed += 1;
        d.removed_keys.push(*k);
        d.removed.push(Entry {
            gid: k.0,
            sid: k.1,
            rev: o.rev,
            // Set by `label_removed`: only removed rules need them from the store.
            msg: Arc::from(""),
            file: o.file.clone(),
            category: None,
            enabled: o.enabled,
            previous_rev: None,
        });
    }
    d
}

impl Diff {
    /// Give the removed entries their msg and category (`Store::rule_labels` of `removed_keys`).
    pub fn label_removed(&mut self, labels: &HashMap<(u32, u32), crate::store::Label>) {
        for e in &mut self.removed {
            if let Some((msg, category)) = labels.get(&(e.gid, e.sid)) {
                e.msg = Arc::from(msg.as_str());
                e.category = category.clone();
            }
        }
    }
}

/// The change report of one bundle (`etferry report --json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub bundle: String,
    pub source: String,
    pub ruleset: String,
    pub sequence: u64,
    pub counts: Counts,
    pub added: Vec<Entry>,
    pub removed: Vec<Entry>,
    pub modified: Vec<Entry>,
    pub enabled_changed: Vec<Entry>,
    /// Rules in the bundle, by class.
    pub rules: u64,
    pub standard: u64,
    pub non_standard: u64,
    pub indicators: u64,
    /// Duplicate (gid, sid) dropped in favour of the highest rev.
    pub duplicates: Vec<Entry>,
    /// Per-rule parse errors and IP-list problems (`file:line: reason`).
    pub errors: Vec<String>,
    /// `stored`, `held`, or `dry-run`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_reason: Option<String>,
    /// `signed bundle`, `unsigned bundle` (with `require_signature: false`) or `unsigned archive`
    /// (a bare archive dropped by hand), for auditors.
    #[serde(default = "signed_bundle")]
    pub origin: String,
    /// Where a `sync` download came from (URL redacted, md5, time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<crate::store::Provenance>,
}

/// The origin of a report from a signed bundle.
pub const ORIGIN_BUNDLE: &str = "signed bundle";
/// The origin of a report from a bare archive dropped by hand.
pub const ORIGIN_ARCHIVE: &str = "unsigned archive";
/// The origin of a report from a download of `etferry sync` (gated on the host itself).
pub const ORIGIN_DOWNLOAD: &str = "download";
/// The origin of a report from a bundle without a signature (`require_signature: false`).
pub const ORIGIN_UNSIGNED_BUNDLE: &str = "unsigned bundle";

fn signed_bundle() -> String {
    ORIGIN_BUNDLE.to_string()
}

impl Report {
    /// A short human summary.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "{} ({} #{}, {}): {} — added {}, removed {}, modified {}, enabled↔disabled {}, unchanged {}; \
             {} rules ({} standard, {} non-standard), {} indicators, {} duplicates, {} errors",
            self.bundle,
            self.source,
            self.sequence,
            self.origin,
            self.outcome,
            c.added,
            c.removed,
            c.modified,
            c.enabled_changed,
            c.unchanged,
            self.rules,
            self.standard,
            self.non_standard,
            self.indicators,
            self.duplicates.len(),
            self.errors.len()
        )
    }
}
