//! The stored change report, gzipped while it is made. The `added` list is the one that can hold
//! a whole ruleset (a first import adds every rule): its entries go, a batch at a time, to a
//! thread of their own that serialises and compresses them as the rules are diffed, so the list
//! is never held whole and the work is done by the time the bundle is committed. The rest of the
//! report follows at the end. The result is the report's JSON object (keys in another order),
//! gzipped.

use std::io::Write;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::diff::{Entry, Report};
use crate::timing::{self, Activity};

/// Entries handed to the report thread at a time.
const BATCH: usize = 1024;

enum Msg {
    /// More of `added`, in order.
    Added(Vec<Entry>),
    /// The end of the JSON object, after the last entry.
    Tail(Vec<u8>),
}

/// A report being gzipped ([`ReportGz::start`], [`ReportGz::added`], [`ReportGz::finish`]).
/// Dropped unfinished (a hold, a rejection), its thread ends on its own.
pub struct ReportGz {
    tx: Option<mpsc::SyncSender<Msg>>,
    thread: Option<JoinHandle<anyhow::Result<Vec<u8>>>>,
    batch: Vec<Entry>,
    entries: usize,
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
            Msg::Added(entries) => {
                for e in &entries {
                    if !first {
                        w.write_all(b",")?;
                    }
                    first = false;
                    serde_json::to_writer(&mut w, e)?;
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
        // A few batches in flight: the thread keeps up, and memory stays a few batches.
        let (tx, rx) = mpsc::sync_channel::<Msg>(4);
        ReportGz {
            tx: Some(tx),
            thread: Some(std::thread::spawn(move || compress(rx))),
            batch: Vec::with_capacity(BATCH),
            entries: 0,
        }
    }

    /// Append one entry to `added`.
    pub fn added(&mut self, e: Entry) -> anyhow::Result<()> {
        self.entries += 1;
        self.batch.push(e);
        if self.batch.len() >= BATCH {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
            self.send(Msg::Added(batch))?;
        }
        Ok(())
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
        let batch = std::mem::take(&mut self.batch);
        self.send(Msg::Added(batch))?;
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
    use std::io::Read;

    fn entry(sid: u32) -> Entry {
        Entry {
            gid: 1,
            sid,
            rev: 2,
            msg: format!("ET TEST \"quoted\" {sid}").into(),
            file: "rules/emerging-test.rules".into(),
            category: Some("TEST".into()),
            enabled: sid.is_multiple_of(2),
            previous_rev: None,
        }
    }

    fn report(added: Vec<Entry>) -> Report {
        Report {
            bundle: "b".into(),
            source: "s".into(),
            ruleset: "et-open".into(),
            sequence: 3,
            counts: Default::default(),
            added,
            removed: vec![entry(9)],
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

    fn gunzip(z: &[u8]) -> Report {
        let mut s = String::new();
        flate2::read::GzDecoder::new(z)
            .read_to_string(&mut s)
            .unwrap();
        serde_json::from_str(&s).unwrap()
    }

    #[test]
    fn streamed_report_reads_back_as_the_whole_one() {
        for n in [0u32, 1, 5_000] {
            let all: Vec<Entry> = (1..=n).map(entry).collect();
            let mut gz = ReportGz::start();
            for e in &all {
                gz.added(e.clone()).unwrap();
            }
            let back = gunzip(&gz.finish(&report(Vec::new())).unwrap());
            let want = report(all);
            assert_eq!(
                serde_json::to_value(&back).unwrap(),
                serde_json::to_value(&want).unwrap(),
                "{n} entries"
            );
        }
    }
}
