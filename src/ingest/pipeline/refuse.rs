//! The ways a bundle does not get stored: rejected (the bundle is at fault, exit 4, moved to
//! `failed/` with a reason), rejected in place (a link, or a different bundle under a done id:
//! nothing is copied), or a local fault (this machine is at fault, exit 1, retried).

use std::path::Path;

use anyhow::Context;

use super::{remove_dir, sha256_hex, Ingestor, Options, Outcome};
use crate::bundle;
use crate::fsutil;
use crate::safe_name::escape;

impl Ingestor {
    /// A local fault: the journal says `failed` at the stage reached (so a bundle stored before
    /// the fault only needs its export and move), the bundle stays where it is, exit 1.
    pub(super) fn fault(&self, id: &str, e: anyhow::Error, opts: Options) -> anyhow::Error {
        let reason = escape(&format!(
            "{id}: a local fault, not the bundle's; it stays to be retried: {e:#}"
        ))
        .into_owned();
        if !opts.dry_run {
            // A failed transaction leaves its pages in the WAL; on a full disk, emptying the WAL
            // is what makes room for this one small write.
            let _ = self
                .store
                .conn()
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
            let stage = match self.store.bundle(id) {
                Ok(Some(row)) => row.stage,
                _ => "seen".to_string(),
            };
            if let Err(j) = self
                .store
                .journal(id, None, None, &stage, "failed", Some(&reason))
            {
                tracing::warn!("{id}: cannot record the failure in the journal either: {j:#}");
            }
        }
        anyhow::anyhow!(reason)
    }

    /// Reject what is not copied off the medium (a link, or a different bundle under a done id):
    /// `failed/<id>.reason.txt` says why and the entry stays where it is. A done bundle keeps
    /// its journal row.
    pub(super) fn reject_in_place(
        &mut self,
        id: &str,
        reason: &str,
        opts: Options,
    ) -> anyhow::Result<Outcome> {
        let reason = escape(reason).into_owned();
        if opts.dry_run {
            return Ok(Outcome::Rejected(reason));
        }
        fsutil::create_private_dir(&self.cfg.failed)
            .with_context(|| format!("cannot create {}", self.cfg.failed.display()))?;
        crate::fsutil::atomic_write(
            &self.cfg.failed.join(format!("{id}.reason.txt")),
            format!("{reason}\n").as_bytes(),
        )?;
        let done = matches!(self.store.bundle(id)?, Some(r) if r.status == "done");
        if !done {
            self.store
                .journal(id, None, None, "rejected", "rejected", Some(&reason))?;
        }
        Ok(Outcome::Rejected(reason))
    }

    /// For a bundle whose id is done: `None` when `dir`'s manifest is byte for byte the stored
    /// one (or none was recorded), else why it is refused.
    pub(super) fn differs_from_stored(
        &self,
        id: &str,
        dir: &Path,
    ) -> anyhow::Result<Option<String>> {
        let Some(stored) = self.store.manifest_sha256(id)? else {
            return Ok(None);
        };
        let bytes = match fsutil::read_medium(dir, bundle::MANIFEST, bundle::MANIFEST_CAP) {
            Ok(b) => b,
            Err(e) if e.is_refusal() => return Ok(Some(format!("{id}: {e}"))),
            Err(e) => return Err(e.into()),
        };
        let sha = sha256_hex(&bytes);
        Ok((sha != stored).then(|| {
            format!(
                "{id}: a different bundle under an id that is already done: its manifest (sha256 {sha}) \
                 is not the stored one ({stored}); the stored bundle is kept"
            )
        }))
    }

    pub(super) fn reject(
        &mut self,
        id: &str,
        src: &Path,
        work: &Path,
        reason: &str,
        opts: Options,
    ) -> anyhow::Result<()> {
        use crate::ingest::medium::{copy_bundle, CopyError};
        fsutil::create_private_dir(&self.cfg.failed)
            .with_context(|| format!("cannot create {}", self.cfg.failed.display()))?;
        let dest = self.cfg.failed.join(id);
        if dest.exists() {
            std::fs::remove_dir_all(&dest)?;
        }
        if work.is_dir() {
            fsutil::move_tree(work, &dest)?;
        } else if src.is_dir() {
            // What the manifest lists, copied privately; a bundle the copy refuses (a link, a
            // file over its cap) is not copied at all and stays where it is.
            match copy_bundle(src, &dest, self.cfg.limits.max_total_size.0) {
                Ok(_) | Err(CopyError::Refused(_)) => {}
                Err(CopyError::Fault(e)) => return Err(e),
            }
        }
        if opts.remove_source && dest.exists() && src.exists() && src != work {
            remove_dir(src);
        }
        crate::fsutil::atomic_write(
            &self.cfg.failed.join(format!("{id}.reason.txt")),
            format!("{reason}\n").as_bytes(),
        )?;
        self.store
            .journal(id, None, None, "rejected", "rejected", Some(reason))?;
        Ok(())
    }
}
