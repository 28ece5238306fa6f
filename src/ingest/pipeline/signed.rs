//! The signed-bundle path: seen → copied (off the medium) → verified (signature, files), the
//! sequence checks and the `max_sequence_jump` hold, heartbeats; then the shared stages.

use std::path::Path;

use chrono::Utc;

use super::{crash_point, diff, say, sha256_hex, Import, Ingestor, Options, Outcome, Stop, Store};
use crate::bundle::{self, Manifest, VerifiedBundle};
use crate::safe_name::escape;

impl Ingestor {
    pub(super) fn run_stages(
        &mut self,
        id: &str,
        src: &Path,
        work: &Path,
        opts: Options,
    ) -> Result<Outcome, Stop> {
        let dry = opts.dry_run;
        let j = |s: &Store, stage: &str, m: Option<&Manifest>| -> Result<(), Stop> {
            if !dry {
                s.journal(
                    id,
                    m.map(|m| m.source.name.as_str()),
                    m.map(|m| m.sequence),
                    stage,
                    "in-progress",
                    None,
                )?;
            }
            Ok(())
        };
        j(&self.store, "seen", None)?;
        crash_point("seen");
        let dir = if dry || src == work {
            src.to_path_buf()
        } else {
            use crate::ingest::medium::{copy_bundle, CopyError};
            let copied =
                copy_bundle(src, work, self.cfg.limits.max_total_size.0).map_err(|e| match e {
                    CopyError::Refused(r) => Stop::Reject(r),
                    CopyError::Fault(e) => Stop::Fault(e),
                })?;
            if !copied.unlisted.is_empty() {
                say(&format!(
                    "warning: {id}: left on the medium, neither copied nor trusted (the manifest does not list them): {}",
                    copied.unlisted.join(", ")
                ));
            }
            work.to_path_buf()
        };
        j(&self.store, "copied", None)?;
        crash_point("copied");
        if self.stopping() {
            return Err(Stop::Abandon);
        }

        let vb = self.verify(&dir)?;
        let m = vb.manifest.clone();
        if m.bundle_id != id {
            return Err(Stop::Reject(format!(
                "{id}: the directory name does not match the signed bundle id {}",
                m.bundle_id
            )));
        }
        if !self.cfg.rulesets.contains(&m.source.ruleset) {
            return Err(Stop::Reject(format!(
                "{id}: ruleset {} is not imported here (rulesets: {}); add it to `rulesets` in the config to accept it",
                m.source.ruleset,
                self.cfg.rulesets.join(", ")
            )));
        }
        if let Some(s) = self.store.source(&m.source.name)? {
            if m.sequence <= s.last_sequence {
                return Err(Stop::Reject(format!(
                    "{id}: sequence {} is not greater than the last accepted sequence {} of source {} (bundle {}): a replay or rollback",
                    m.sequence, s.last_sequence, s.name, s.last_bundle
                )));
            }
            let jump = m.sequence - s.last_sequence;
            if jump > self.cfg.max_sequence_jump && !opts.approve {
                let reason = format!(
                    "{id}: held: sequence {} is {jump} above the last accepted sequence {} of source {}, \
                     more than max_sequence_jump ({}); if the DMZ really went on this far, release it \
                     with `etferry ingest --approve {id}`",
                    m.sequence, s.last_sequence, s.name, self.cfg.max_sequence_jump
                );
                if !dry {
                    self.store.journal(
                        id,
                        Some(&m.source.name),
                        Some(m.sequence),
                        "verified",
                        "held",
                        Some(&escape(&reason)),
                    )?;
                }
                return Err(Stop::Hold(reason));
            }
        }
        if !dry {
            self.store
                .record_manifest(id, &sha256_hex(&vb.manifest_bytes))?;
        }
        j(&self.store, "verified", Some(&m))?;
        crash_point("verified");
        let lifetime = (m.expires_at - m.created_at).num_seconds().max(0);

        if m.is_heartbeat() {
            if dry {
                return Ok(Outcome::Heartbeat {
                    source: m.source.name.clone(),
                });
            }
            self.store
                .record_heartbeat(id, &m.source.name, m.sequence, Utc::now(), lifetime)?;
            return self
                .finish(id, src, Some(&m.source.name), None, opts)
                .map_err(Stop::from);
        }
        if self.stopping() {
            return Err(Stop::Abandon);
        }

        let files: Vec<(String, Vec<u8>)> = vb
            .payload
            .into_iter()
            .map(|(e, data)| (e.path, data))
            .collect();
        let imp = Import {
            source: m.source.name.clone(),
            ruleset: m.source.ruleset.clone(),
            engine: m.source.engine.clone(),
            sequence: m.sequence,
            created_at: m.created_at,
            lifetime,
            origin: if vb.key_id.is_empty() {
                diff::ORIGIN_UNSIGNED_BUNDLE
            } else {
                diff::ORIGIN_BUNDLE
            },
            archive: None,
            download: None,
        };
        self.import_payload(id, src, &imp, files, opts)
    }

    /// Verify signature, manifest and files; an unsigned bundle only when signatures are not
    /// required.
    fn verify(&self, dir: &Path) -> Result<VerifiedBundle, Stop> {
        let has_sig = std::fs::symlink_metadata(dir.join(bundle::SIGNATURE)).is_ok();
        let mut opts = bundle::VerifyOptions::at(Utc::now());
        opts.max_total_size = self.cfg.limits.max_total_size.0;
        opts.allow_unsigned = !self.cfg.require_signature;
        bundle::verify_with(dir, &self.keys, &opts).map_err(|e| match e {
            // A medium that cannot be read here is this machine's fault, not the bundle's.
            bundle::BundleError::Io { .. } => Stop::Fault(e.into()),
            e if !has_sig => Stop::Reject(format!(
                "{e}; the bundle is unsigned and require_signature is true"
            )),
            e => Stop::Reject(e.to_string()),
        })
    }
}
