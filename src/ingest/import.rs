//! Parse, diff and write one payload's rules in one pass: each rules file's rules are diffed
//! against the store and their changed rows written into the bundle's open transaction while
//! the next files are still being decompressed and parsed ([`super::stream`]).
//!
//! A payload that holds a (gid, sid) twice cannot be diffed rule by rule (the highest rev wins,
//! wherever it comes), so on the first duplicate the caller rolls back and [`deduplicated`]
//! does the same work on the deduplicated rules.

use super::diff::{Diff, Differ, Step};
use super::payload::{self, Limits, PayloadError};
use super::report_gz::ReportGz;
use super::stream::{self, Item};
use crate::store::{BundleTx, Indicator, NewRule, StoredRules};

/// Why an import stopped.
#[derive(Debug)]
pub enum Failed {
    /// The payload is at fault (archive, limits): the bundle is rejected with this reason.
    Payload(String),
    /// The store is (disk, I/O): a local fault.
    Store(anyhow::Error),
}

impl From<PayloadError> for Failed {
    fn from(e: PayloadError) -> Self {
        Failed::Payload(e.0)
    }
}

impl From<anyhow::Error> for Failed {
    fn from(e: anyhow::Error) -> Self {
        Failed::Store(e)
    }
}

/// A payload diffed against the store, its changed rule rows written (not committed).
#[derive(Debug, Default)]
pub struct Streamed {
    pub diff: Diff,
    /// Per-rule parse errors (`file:line: reason`).
    pub errors: Vec<String>,
    /// `None`: the payload has no IP list.
    pub indicators: Option<Vec<Indicator>>,
    pub indicator_errors: Vec<String>,
    /// Rules dropped for a higher rev (or an earlier one of the same rev) of their (gid, sid).
    pub duplicates: Vec<NewRule>,
}

/// The diff in progress and the transaction its rows go to.
struct Feed<'t, 's> {
    tx: &'t BundleTx<'s>,
    differ: Differ,
    errors: Vec<String>,
    lists: Vec<(String, Vec<u8>)>,
}

impl<'t, 's> Feed<'t, 's> {
    fn new(tx: &'t BundleTx<'s>, old: StoredRules) -> Self {
        crate::timing::mark("stored rules loaded");
        let mut differ = Differ::new(old);
        if !tx.is_dry() {
            // A dry run's report is returned whole; a stored one is gzipped as it is made.
            differ.stream_added(ReportGz::start());
        }
        Feed {
            tx,
            differ,
            errors: Vec::new(),
            lists: Vec::new(),
        }
    }

    /// Diff the rules of one file and write the rows that change. `false` at a duplicate key.
    fn rules(&mut self, rules: Vec<NewRule>) -> Result<bool, Failed> {
        let mut write: Vec<&NewRule> = Vec::with_capacity(rules.len());
        let mut added: Vec<u32> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            match self.differ.add(r) {
                Step::Added => {
                    write.push(r);
                    added.push(i as u32);
                }
                Step::Write => write.push(r),
                Step::Unchanged => {}
                Step::Duplicate => return Ok(false),
            }
        }
        // In key order within the file: fewer B-tree pages touched per file.
        write.sort_unstable_by_key(|r| (r.gid, r.sid));
        self.tx.put_rules(&write)?;
        drop(write);
        self.differ.added(rules, added);
        Ok(true)
    }

    fn finish(self) -> Result<Streamed, Failed> {
        let mut s = Streamed {
            diff: self.differ.finish()?,
            errors: self.errors,
            ..Streamed::default()
        };
        if !self.lists.is_empty() {
            let mut inds = Vec::new();
            for (path, data) in &self.lists {
                payload::parse_ip_list(path, data, &mut inds, &mut s.indicator_errors);
            }
            s.indicators = Some(inds);
        }
        crate::timing::mark("rules diffed and written");
        Ok(s)
    }
}

/// Stream `files` into `tx` (source `source`). `None` when the payload holds a (gid, sid)
/// twice: the caller rolls `tx` back and calls [`deduplicated`].
pub fn stream(
    tx: &BundleTx<'_>,
    source: &str,
    files: &[(String, Vec<u8>)],
    limits: &Limits,
) -> Result<Option<Streamed>, Failed> {
    stream::with_members(files, limits, |members| {
        // Read while the first files are being decompressed.
        let mut feed = Feed::new(tx, crate::store::rules_in(tx.conn(), source)?);
        tx.put_payload(files)?;
        for item in members {
            match item? {
                Item::Rules { rules, errors, .. } => {
                    feed.errors.extend(errors);
                    if !feed.rules(rules)? {
                        return Ok(None);
                    }
                }
                Item::IpList { path, data } => feed.lists.push((path, data)),
            }
        }
        Ok(Some(feed.finish()?))
    })
}

/// The same as [`stream`] for a payload with duplicates: every rule is parsed first, one rule per
/// (gid, sid) kept (the highest rev, the first on a tie), and those are diffed and written.
pub fn deduplicated(
    tx: &BundleTx<'_>,
    source: &str,
    files: &[(String, Vec<u8>)],
    limits: &Limits,
) -> Result<Streamed, Failed> {
    let p = payload::parse_payload(files, limits)?;
    let (rules, duplicates) = payload::dedupe(p.rules);
    let mut feed = Feed::new(tx, crate::store::rules_in(tx.conn(), source)?);
    tx.put_payload(files)?;
    feed.errors = p.errors;
    feed.rules(rules)?;
    let mut s = feed.finish()?;
    s.indicators = p.indicators;
    s.indicator_errors = p.indicator_errors;
    s.duplicates = duplicates;
    Ok(s)
}
