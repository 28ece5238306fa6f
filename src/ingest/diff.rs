//! The diff of a bundle's rules against the store, per (gid, sid) within one source, and the
//! per-SID change report built from it.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::HashSetExt;
use serde::{Deserialize, Serialize};

use super::report_gz::ReportGz;
use crate::store::{Change, NewRule, StoredRule, StoredRules, TextRef};

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
    pub category: Option<Arc<str>>,
    /// Shipped enabled (standard) in the new version.
    pub enabled: bool,
    /// The previous rev, for modified rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_rev: Option<u32>,
}

/// The diff of one bundle.
#[derive(Debug, Default)]
pub struct Diff {
    pub counts: Counts,
    pub added: Vec<Entry>,
    pub removed: Vec<Entry>,
    pub modified: Vec<Entry>,
    pub enabled_changed: Vec<Entry>,
    /// The history rows to write: every change but the arrival of a rule the store never held.
    pub history: Vec<Change>,
    /// (gid, sid) that disappeared.
    pub removed_keys: Vec<(u32, u32)>,
    /// The stored texts the bundle replaces (modified rules whose text changed) or removes, as
    /// the store knew them before the bundle's rows were written.
    pub replaced: Vec<TextRef>,
    /// Rules in the store before (not counting removed ones).
    pub before: u64,
    /// Rules in the bundle, and how many of them are standard (shipped enabled).
    pub rules: u64,
    pub standard: u64,
    /// Where `added` went instead, when it was streamed ([`Differ::stream_added`]).
    pub report_gz: Option<ReportGz>,
}

/// The report entry of `r`.
pub(crate) fn entry(r: &NewRule, previous_rev: Option<u32>) -> Entry {
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

fn text_ref(old: &StoredRules, o: &StoredRule) -> TextRef {
    TextRef {
        key: (o.gid, o.sid),
        hash: o.text_hash(),
        file: old.file(o).to_string(),
    }
}

/// What a rule of the bundle means for its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Same rev, text and class: the row stays as it is.
    Unchanged,
    /// New to the store or added again after a removal: the row is (re)written, and the rule
    /// belongs in the report's `added` list ([`Differ::added`]).
    Added,
    /// Modified, enabled↔disabled, or unchanged but now in another rules file: the row is
    /// (re)written with this rule.
    Write,
    /// Its (gid, sid) came before in this bundle: nothing was counted; the caller deduplicates
    /// the whole bundle first.
    Duplicate,
}

/// The diff of a source's new rules against what the store holds, built one rule at a time as
/// the rules arrive, so a bundle's rows can be written while later rules files are parsed.
pub struct Differ {
    old: StoredRules,
    /// Which of `old` the bundle has (by position), and the bundle's keys `old` lacks: a
    /// second sight of either is a duplicate.
    seen_old: Vec<bool>,
    /// Seeded foldhash, not SipHash: one lookup per rule of a whole ruleset, on the thread
    /// that writes the rows; the seed still keeps crafted keys from colliding on purpose.
    seen_new: foldhash::HashSet<(u32, u32)>,
    d: Diff,
    /// The first error of the streamed report, given back by `finish`.
    report_err: Option<anyhow::Error>,
}

impl Differ {
    pub fn new(old: StoredRules) -> Differ {
        let d = Diff {
            before: old.iter().filter(|o| !o.removed).count() as u64,
            ..Diff::default()
        };
        Differ {
            seen_old: vec![false; old.len()],
            seen_new: foldhash::HashSet::new(),
            old,
            d,
            report_err: None,
        }
    }

    /// Serialise added rules into `gz` as they come instead of keeping them (`Diff::added`
    /// stays empty): a first import adds a whole ruleset.
    pub fn stream_added(&mut self, gz: ReportGz) {
        self.d.report_gz = Some(gz);
    }

    /// Put `rules[i]` for each `i` of `added` (the rules [`Differ::add`] said were
    /// [`Step::Added`], in order) in the report's `added` list. A streamed report takes the
    /// rules whole to its own thread, which reads the entries from them: the thread that writes
    /// the rows neither copies them into entries nor frees them.
    pub fn added(&mut self, rules: Vec<NewRule>, added: Vec<u32>) {
        if added.is_empty() {
            return;
        }
        match &mut self.d.report_gz {
            Some(gz) => {
                if let Err(err) = gz.added(rules, added) {
                    self.report_err.get_or_insert(err);
                }
            }
            None => {
                let entries = added.iter().filter_map(|&i| rules.get(i as usize));
                self.d.added.extend(entries.map(|r| entry(r, None)));
            }
        }
    }

    /// Count the next rule of the bundle and say what it means for its row.
    pub fn add(&mut self, r: &NewRule) -> Step {
        let key = (r.gid, r.sid);
        let old = self.old.get(key);
        let first = match old {
            Some((i, _)) => !std::mem::replace(&mut self.seen_old[i], true),
            None => self.seen_new.insert(key),
        };
        if !first {
            return Step::Duplicate;
        }
        let d = &mut self.d;
        d.rules += 1;
        d.standard += u64::from(r.enabled);
        let kind = match old.map(|(_, o)| o) {
            // New to the store: no history row, the report records its arrival.
            None => None,
            Some(o) if o.removed => Some("added"),
            Some(o) if o.rev != r.rev || !o.has_text(&r.hash) => {
                if !o.has_text(&r.hash) {
                    d.replaced.push(text_ref(&self.old, o));
                }
                d.counts.modified += 1;
                d.modified.push(entry(r, Some(o.rev)));
                Some("modified")
            }
            Some(o) if o.enabled != r.enabled => {
                d.counts.enabled_changed += 1;
                d.enabled_changed.push(entry(r, None));
                Some("enabled_changed")
            }
            Some(o) => {
                d.counts.unchanged += 1;
                return if *self.old.file(o) != r.file {
                    Step::Write
                } else {
                    Step::Unchanged
                };
            }
        };
        if let Some(kind) = kind {
            self.d.history.push(Change {
                gid: r.gid,
                sid: r.sid,
                kind,
                rev: r.rev,
                enabled: r.enabled,
                hash: r.hash,
            });
        }
        if matches!(kind, None | Some("added")) {
            self.d.counts.added += 1;
            return Step::Added;
        }
        Step::Write
    }

    /// The rules of the store the bundle no longer has, and the whole diff.
    pub fn finish(self) -> anyhow::Result<Diff> {
        let Differ {
            old,
            seen_old,
            mut d,
            report_err,
            ..
        } = self;
        if let Some(e) = report_err {
            return Err(e);
        }
        // In key order, as `old` is.
        let removed = old
            .iter()
            .zip(&seen_old)
            .filter(|(o, seen)| !o.removed && !**seen)
            .map(|(o, _)| o);
        for o in removed {
            d.counts.removed += 1;
            d.removed_keys.push((o.gid, o.sid));
            d.replaced.push(text_ref(&old, o));
            d.removed.push(Entry {
                gid: o.gid,
                sid: o.sid,
                rev: o.rev,
                // Set by `label_removed`: only removed rules need them from the store.
                msg: Arc::from(""),
                file: old.file(o).clone(),
                category: None,
                enabled: o.enabled,
                previous_rev: None,
            });
        }
        Ok(d)
    }
}

impl Diff {
    /// Give the removed entries their msg and category (`Store::rule_labels` of `removed_keys`).
    pub fn label_removed(&mut self, labels: &HashMap<(u32, u32), crate::store::Label>) {
        for e in &mut self.removed {
            if let Some((msg, category)) = labels.get(&(e.gid, e.sid)) {
                e.msg = Arc::from(msg.as_str());
                e.category = category.as_deref().map(Arc::from);
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
