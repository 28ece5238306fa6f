//! `etferry sync`'s way into the pipeline: a payload it downloaded and gated itself enters at the
//! stage after verification, with its provenance, and is journalled, held, stored and exported
//! like a bundle.

use std::path::Path;

use super::{diff, Import, Ingestor, Options, Outcome, Stop};

/// A payload `sync` downloaded and put through the fetch gate itself: no manifest, no signature.
#[derive(Debug, Clone)]
pub struct Download {
    pub source: String,
    pub ruleset: String,
    pub engine: Option<String>,
    pub sequence: u64,
    pub provenance: crate::store::Provenance,
}

impl Ingestor {
    /// The stages after download for a payload `sync` fetched (`files` read from `work`, the
    /// pending download's directory under the work dir): parse, diff, gate, store, export, done.
    /// Resumes like a bundle: stored before a crash means only the export is left.
    pub fn import_download(
        &mut self,
        id: &str,
        work: &Path,
        d: &Download,
        files: Vec<(String, Vec<u8>)>,
        opts: Options,
    ) -> anyhow::Result<Outcome> {
        if let Some(row) = self.store.bundle(id)? {
            if row.status == "done" {
                return Ok(Outcome::AlreadyDone);
            }
            if !opts.dry_run && (row.stage == "stored" || row.stage == "exported") {
                return self.finish(id, work, row.source.as_deref(), None, opts);
            }
            if row.status == "held" && !opts.approve {
                let why = row.reason.clone().unwrap_or_default();
                return Ok(Outcome::Held(format!("{id} is still held: {why}")));
            }
        }
        let imp = Import {
            source: d.source.clone(),
            ruleset: d.ruleset.clone(),
            engine: d.engine.clone(),
            sequence: d.sequence,
            created_at: d.provenance.downloaded_at,
            // No courier to stall: the host downloads itself.
            lifetime: 0,
            origin: diff::ORIGIN_DOWNLOAD,
            archive: None,
            download: Some(d.provenance.clone()),
        };
        if !opts.dry_run {
            self.store.journal(
                id,
                Some(&d.source),
                Some(d.sequence),
                "verified",
                "in-progress",
                None,
            )?;
        }
        match self.import_payload(id, work, &imp, files, opts) {
            Ok(o) => Ok(o),
            Err(Stop::Abandon) => Ok(Outcome::Abandoned),
            // Disk full, I/O error: the pending download stays and is retried next run.
            Err(Stop::Fault(e)) => Err(self.fault(id, e, opts)),
            Err(Stop::Hold(reason)) => Ok(Outcome::Held(reason)),
            Err(Stop::Reject(reason)) => {
                if !opts.dry_run {
                    self.store
                        .journal(id, None, None, "rejected", "rejected", Some(&reason))?;
                }
                Ok(Outcome::Rejected(reason))
            }
        }
    }
}
