//! The stored change report, gzipped while it is made. The `added` list is the one that can hold
//! a whole ruleset (a first import adds every rule): its entries are serialised as the rules are
//! diffed and compressed on a thread of their own, so the list is never held in memory and the
//! compression is done by the time the bundle is committed. The rest of the report follows at
//! the end. The result is the report's JSON object (keys in another order), gzipped.

use std::io::Write;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::diff::{Entry, Report};
use crate::timing::{self, Activity};

/// Serialised entries handed to the compressing thread at a time.
const CHUNK: usize = 64 << 10;

/// A report being gzipped ([`ReportGz::start`], [`ReportGz::added`], [`ReportGz::finish`]).
/// Dropped unfinished (a hold, a rejection), its thread ends on its own.
pub struct ReportGz {
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<std::io::Result<Vec<u8>>>>,
    buf: Vec<u8>,
    entries: usize,
}

impl std::fmt::Debug for ReportGz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReportGz({} added entries)", self.entries)
    }
}

impl ReportGz {
    /// Start the compressing thread and the report's JSON object.
    pub fn start() -> ReportGz {
        // A few chunks in flight: the thread keeps up, and memory stays a few chunks.
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let thread = std::thread::spawn(move || {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            for chunk in rx {
                timing::timed(Activity::Report, || gz.write_all(&chunk))?;
            }
            timing::timed(Activity::Report, || gz.finish())
        });
        let mut buf = Vec::with_capacity(CHUNK + 1024);
        buf.extend_from_slice(b"{\"added\":[");
        ReportGz {
            tx: Some(tx),
            thread: Some(thread),
            buf,
            entries: 0,
        }
    }

    /// Append one entry to `added`.
    pub fn added(&mut self, e: &Entry) -> anyhow::Result<()> {
        if self.entries > 0 {
            self.buf.push(b',');
        }
        self.entries += 1;
        serde_json::to_writer(&mut self.buf, e)?;
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> anyhow::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 1024));
        let sent = self.tx.as_ref().map(|tx| tx.send(chunk));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread ended early: its error comes out of `finish`.
            _ => self.join().map(|_| ()),
        }
    }

    fn join(&mut self) -> anyhow::Result<Vec<u8>> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the report thread panicked"))?
                .map_err(|e| anyhow::anyhow!("gzipping the change report: {e}")),
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
        self.buf.extend_from_slice(b"],");
        self.buf
            .extend_from_slice(rest.get(1..).unwrap_or_default());
        self.send()?;
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
                gz.added(e).unwrap();
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
