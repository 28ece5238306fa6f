//! Pending downloads: a download that passed the fetch gate is written to
//! `<state>/work/<source>-<sequence>/` (its files under `payload/`, and `download.json`) before
//! the fetch state moves on, and leaves only once the store has it. A crash at any point leaves
//! either nothing (the next run downloads again) or this directory (the next run finishes it),
//! never a fetch state that claims a version the store lacks.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::Upstream;
use crate::fetch::state::SourceState;
use crate::store::Provenance;

/// `download.json`.
pub const META: &str = "download.json";
const PAYLOAD: &str = "payload";

/// What a pending download is, and the fetch state to save once it is in the work dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    /// `<source>-<sequence, 8 digits>`, as a bundle id: the same name the published bundle has.
    pub id: String,
    pub source: String,
    pub ruleset: String,
    pub engine: Option<String>,
    pub sequence: u64,
    pub provenance: Provenance,
    pub upstream: Upstream,
    /// Payload files: (path, size, sha256).
    pub files: Vec<(String, u64, String)>,
    /// The source's fetch state with this download (saved after the directory is written).
    pub state: SourceState,
    /// The state before it (restored, sequence kept, when the download is rejected, so the
    /// next run tries again instead of calling the bad version unchanged).
    pub previous: SourceState,
    /// The signed bundle of this download is in the spool (`publish:` only).
    pub published: bool,
}

impl Pending {
    /// Write the directory `work/<id>` through a hidden temporary name: it exists whole or not
    /// at all.
    pub fn write(&self, work: &Path, payload: &[(String, Vec<u8>)]) -> anyhow::Result<PathBuf> {
        let dest = work.join(&self.id);
        let tmp = work.join(format!(".{}.writing", self.id));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .with_context(|| format!("cannot remove {}", tmp.display()))?;
        }
        for (name, data) in payload {
            if !crate::bundle::safe_relative_path(name) {
                anyhow::bail!(
                    "{}: payload file {name:?} is not a safe relative path",
                    self.id
                );
            }
            let p = tmp.join(PAYLOAD).join(name);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            crate::fsutil::write_synced(&p, data)?;
        }
        let mut meta = serde_json::to_vec_pretty(self)?;
        meta.push(b'\n');
        crate::fsutil::write_synced(&tmp.join(META), &meta)?;
        if dest.exists() {
            std::fs::remove_dir_all(&dest)
                .with_context(|| format!("cannot remove {}", dest.display()))?;
        }
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), dest.display()))?;
        crate::fsutil::fsync_dir(work)?;
        Ok(dest)
    }

    /// Rewrite `download.json` of an existing directory (e.g. once its bundle is published).
    pub fn save_meta(&self, dir: &Path) -> anyhow::Result<()> {
        let mut meta = serde_json::to_vec_pretty(self)?;
        meta.push(b'\n');
        crate::fsutil::atomic_write(&dir.join(META), &meta)
    }

    /// Read `dir/download.json`.
    pub fn load(dir: &Path) -> anyhow::Result<Pending> {
        let p = dir.join(META);
        let b = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_slice(&b).with_context(|| format!("{} is not valid", p.display()))
    }

    /// The payload files, checked against the sizes and sha256 recorded when they were written:
    /// a damaged work dir is never stored.
    pub fn read_payload(&self, dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::with_capacity(self.files.len());
        for (name, size, sha) in &self.files {
            let p = dir.join(PAYLOAD).join(name);
            let data = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
            let got = hex::encode(Sha256::digest(&data));
            if data.len() as u64 != *size || got != *sha {
                anyhow::bail!(
                    "{}: {} bytes with sha256 {got}, but {size} bytes with sha256 {sha} were downloaded; \
                     the pending download is damaged",
                    p.display(),
                    data.len()
                );
            }
            out.push((name.clone(), data));
        }
        Ok(out)
    }
}

/// The file list of `payload` for [`Pending::files`].
pub fn file_list(payload: &[(String, Vec<u8>)]) -> Vec<(String, u64, String)> {
    payload
        .iter()
        .map(|(n, d)| (n.clone(), d.len() as u64, hex::encode(Sha256::digest(d))))
        .collect()
}

/// The pending download directories in `work`, oldest sequence first per source. Hidden
/// directories (a write that did not finish) are removed.
pub fn list(work: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(work) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", work.display())),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot read {}", work.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        if name.starts_with('.') {
            // Killed while writing: the download was never announced to the fetch state.
            if let Err(err) = std::fs::remove_dir_all(&p) {
                tracing::warn!("cannot remove {}: {err}", p.display());
            }
            continue;
        }
        if p.join(META).is_file() {
            v.push(p);
        }
    }
    // `<source>-<8 digits>` sorts by source, then sequence.
    v.sort();
    Ok(v)
}
