//! The stored change report, gzipped while it is made. The `added` list is the one that can hold
//! a whole ruleset (a first import adds every rule): each rules file's rules go, once diffed and
//! written, to a thread of their own that serialises the added ones and compresses them, so the
//! list is never held whole and the work is done by the time the bundle is committed. The rest of the
//! report follows at the end. The result is the report's JSON object (keys in another order),
//! gzipped.

use std::io::Write;
use std::sync::mpsc;
use std::thread::JoinHandle;

use serde::Serialize;

use super::diff::Report;
use crate::store::NewRule;
use crate::timing::{self, Activity};

enum Msg {
    /// More of `added`, in order: the rules of one file and which of them (by position) were
    /// added.
    Added(Vec<NewRule>, Vec<u32>),
    /// The end of the JSON object, after the last entry.
    Tail(Vec<u8>),
}

/// A report being gzipped ([`ReportGz::start`], [`ReportGz::added`], [`ReportGz::finish`]).
/// Dropped unfinished (a hold, a rejection), its thread ends on its own.
pub struct ReportGz {
    tx: Option<mpsc::SyncSender<Msg>>,
    thread: Option<JoinHandle<anyhow::Result<Vec<u8>>>>,
    entries: usize,
}

/// An `added` entry as [`super::diff::Entry`] serialises it (same fields, same order; an added
/// rule has no previous rev), read from the rule itself.
#[derive(Serialize)]
struct AddedEntry<'a> {
    gid: u32,
    sid: u32,
    rev: u32,
    msg: &'a str,
    file: &'a str,
    category: Option<&'a str>,
    enabled: bool,
}

impl<'a> From<&'a NewRule> for AddedEntry<'a> {
    fn from(r: &'a NewRule) -> Self {
        AddedEntry {
            gid: r.gid,
            sid: r.sid,
            rev: r.rev,
            msg: &r.msg,
            file: &r.file,
            category: r.category.as_deref(),
            enabled: r.enabled,
        }
    }
}

impl std::fmt::Debug for ReportGz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReportGz({} added entries)", self.entries)
    }
}

/// The report thread: serialise and compress what comes, in order.
fn compress(rx: mpsc::Receiver<Msg>) -> anyhow::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Buffered: serde writes token by token, and each small write into the encoder costs far
    // more than the bytes it carries.
    let mut w = std::io::BufWriter::with_capacity(1 << 16, gz);
    w.write_all(b"{\"added\":[")?;
    let mut first = true;
    for msg in rx {
        let _busy = timing::Span::new(Activity::Report);
        match msg {
            Msg::Added(rules, added) => {
                for r in added.iter().filter_map(|&i| rules.get(i as usize)) {
                    if !first {
                        w.write_all(b",")?;
                    }
                    first = false;
                    serde_json::to_writer(&mut w, &AddedEntry::from(r))?;
                }
            }
            Msg::Tail(tail) => {
                w.write_all(&tail)?;
                let gz = w.into_inner().map_err(|e| e.into_error())?;
                return Ok(gz.finish()?);
            }
        }
    }
    anyhow::bail!("the change report was left unfinished")
}

impl ReportGz {
    /// Start the report thread and the report's JSON object.
    pub fn start() -> ReportGz {
        // A few files in flight: the thread keeps up, and memory stays a few files' rules.
        let (tx, rx) = mpsc::sync_channel::<Msg>(4);
        ReportGz {
            tx: Some(tx),
            thread: Some(std::thread::spawn(move || compress(rx))),
            entries: 0,
        }
    }

    /// Append `rules[i]` for each `i` of `added` to `added`.
    pub fn added(&mut self, rules: Vec<NewRule>, added: Vec<u32>) -> anyhow::Result<()> {
        self.entries += added.len();
        self.send(Msg::Added(rules, added))
    }

    fn send(&mut self, msg: Msg) -> anyhow::Result<()> {
        let sent = self.tx.as_ref().map(|tx| tx.send(msg));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread ended early: its error says why.
            _ => self.join().map(|_| ()),
        }
    }

    fn join(&mut self) -> anyhow::Result<Vec<u8>> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the report thread panicked"))?
                .map_err(|e| e.context("gzipping the change report")),
            None => anyhow::bail!("the change report was already finished"),
        }
    }

    /// The gzipped report: the entries given to [`ReportGz::added`] as its `added` list, every
    /// other field from `report` (whose own `added` is left out).
    pub fn finish(mut self, report: &Report) -> anyhow::Result<Vec<u8>> {
        let mut rest = serde_json::to_value(report)?;
        if let Some(o) = rest.as_object_mut() {
            o.remove("added");
        }
        let rest = serde_json::to_vec(&rest)?;
        // `{"bundle":…}` → `],"bundle":…}`; the object always has fields.
        let mut tail = b"],".to_vec();
        tail.extend_from_slice(rest.get(1..).unwrap_or_default());
        self.send(Msg::Tail(tail))?;
        self.join()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::diff::Entry;
    use std::io::Read;

    fn rule(sid: u32) -> NewRule {
        let text = format!(
            "alert ip any any -> any any (msg:\"ET TEST \\\"quoted\\\" {sid}\"; sid:{sid}; rev:2;)"
        );
        NewRule {
            gid: 1,
            sid,
            rev: 2,
            msg: format!("ET TEST \"quoted\" {sid}").into(),
            hash: crate::store::text_hash(&text),
            enabled: sid.is_multiple_of(2),
            classtype: None,
            // Some rules without a category: `null` in the report.
            category: (!sid.is_multiple_of(5)).then(|| "TEST".into()),
            file: format!("rules/emerging-test-{}.rules", sid / 1000).into(),
            line: sid as usize,
        }
    }

    fn entry(r: &NewRule) -> Entry {
        crate::ingest::diff::entry(r, None)
    }

    fn report(added: Vec<Entry>) -> Report {
        Report {
            bundle: "b".into(),
            source: "s".into(),
            ruleset: "et-open".into(),
            sequence: 3,
            counts: Default::default(),
            added,
            removed: vec![entry(&rule(9))],
            modified: Vec::new(),
            enabled_changed: Vec::new(),
            rules: 1,
            standard: 1,
            non_standard: 0,
            indicators: 0,
            duplicates: Vec::new(),
            errors: vec!["x:1: bad".into()],
            outcome: "stored".into(),
            held_reason: None,
            origin: "signed bundle".into(),
            download: None,
        }
    }

    fn gunzip(z: &[u8]) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(z)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn an_added_entry_is_serialised_as_the_report_entry_byte_for_byte() {
        for sid in [1, 5, 10, 2_000_001] {
            let r = rule(sid);
            assert_eq!(
                serde_json::to_string(&AddedEntry::from(&r)).unwrap(),
                serde_json::to_string(&entry(&r)).unwrap()
            );
        }
    }

    #[test]
    fn streamed_report_reads_back_as_the_whole_one() {
        for n in [0u32, 1, 5_000] {
            let mut gz = ReportGz::start();
            let mut want = Vec::new();
            // Files of 700 rules; every third rule of a file is not an added one.
            let all: Vec<NewRule> = (1..=n).map(rule).collect();
            for file in all.chunks(700) {
                let added: Vec<u32> = (0..file.len() as u32).filter(|i| i % 3 != 1).collect();
                want.extend(added.iter().map(|&i| entry(&file[i as usize])));
                gz.added(file.to_vec(), added).unwrap();
            }
            let back: Report =
                serde_json::from_str(&gunzip(&gz.finish(&report(Vec::new())).unwrap())).unwrap();
            assert_eq!(back.added.len(), want.len(), "{n} rules");
            assert_eq!(
                serde_json::to_value(&back).unwrap(),
                serde_json::to_value(report(want)).unwrap(),
                "{n} rules"
            );
        }
    }
}
