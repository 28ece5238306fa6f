//! Atomic publishing into the spool, and retention.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use super::{safe_relative_path, trusted_comment, FileEntry, Manifest, SigningKey};
use super::{MANIFEST, SIGNATURE};
use crate::fsutil::{fsync_dir, write_synced};

/// Publish a bundle: write the payload and the signed manifest into a temp directory inside `spool`,
/// fsync everything, then rename it to `<bundle_id>`. A crash leaves only a `.tmp-*` directory, which
/// is never taken for a bundle (it has no name of that form) and is removed by [`prune`].
///
/// `manifest.files` is filled in here from `payload` (path, size, sha256).
pub fn publish(
    spool: &Path,
    mut manifest: Manifest,
    payload: &[(String, Vec<u8>)],
    key: &SigningKey,
) -> anyhow::Result<PathBuf> {
    if manifest.bundle_id != super::bundle_id(&manifest.source.name, manifest.sequence) {
        bail!(
            "bundle id {} does not match source {} and sequence {}",
            manifest.bundle_id,
            manifest.source.name,
            manifest.sequence
        );
    }
    let final_dir = spool.join(&manifest.bundle_id);
    if final_dir.exists() {
        bail!(
            "bundle {} already exists in {}; refusing to overwrite a published bundle",
            manifest.bundle_id,
            spool.display()
        );
    }
    fs::create_dir_all(spool)
        .with_context(|| format!("cannot create spool {}", spool.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{}-", manifest.bundle_id))
        .tempdir_in(spool)
        .with_context(|| format!("cannot create a temp directory in {}", spool.display()))?;

    manifest.files.clear();
    for (rel, data) in payload {
        if !safe_relative_path(rel) {
            bail!("payload path {rel:?} is not a safe relative path");
        }
        let path = tmp.path().join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        write_synced(&path, data)?;
        manifest.files.push(FileEntry {
            path: rel.clone(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
        });
    }

    // The manifest is written last: a directory without a valid manifest is not a bundle yet.
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    manifest_bytes.push(b'\n');
    let sig = key.sign(
        &manifest_bytes,
        &trusted_comment(&manifest.bundle_id, manifest.sequence),
    )?;
    write_synced(&tmp.path().join(MANIFEST), &manifest_bytes)?;
    write_synced(&tmp.path().join(SIGNATURE), sig.as_bytes())?;
    sync_tree(tmp.path())?;

    let tmp_path = tmp.keep();
    if let Err(e) = fs::rename(&tmp_path, &final_dir) {
        let _ = fs::remove_dir_all(&tmp_path);
        return Err(e).with_context(|| {
            format!(
                "cannot move bundle {} into place in {}",
                manifest.bundle_id,
                spool.display()
            )
        });
    }
    fsync_dir(spool)?;
    Ok(final_dir)
}

fn sync_tree(dir: &Path) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(dir).contents_first(true) {
        let entry = entry?;
        if entry.file_type().is_dir() {
            fsync_dir(entry.path())?;
        }
    }
    Ok(())
}

/// Published bundles of `source_name` in `spool`, oldest first, as (sequence, path).
pub fn list_bundles(spool: &Path, source_name: &str) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(spool) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", spool.display())),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = sequence_of(name, source_name) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// `<source>-<8+ digits>` → the sequence.
fn sequence_of(dir_name: &str, source_name: &str) -> Option<u64> {
    let rest = dir_name.strip_prefix(source_name)?.strip_prefix('-')?;
    if rest.len() >= 8 && rest.bytes().all(|b| b.is_ascii_digit()) {
        rest.parse().ok()
    } else {
        None
    }
}

/// Keep the newest `keep` bundles of `source_name`; remove older ones and temp directories that a
/// crashed run of this source left behind. Returns the removed paths.
pub fn prune(spool: &Path, source_name: &str, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let bundles = list_bundles(spool, source_name)?;
    let excess = bundles.len().saturating_sub(keep.max(1));
    for (_, path) in bundles.into_iter().take(excess) {
        fs::remove_dir_all(&path).with_context(|| format!("cannot prune {}", path.display()))?;
        removed.push(path);
    }
    let tmp_prefix = format!(".tmp-{source_name}-");
    if let Ok(rd) = fs::read_dir(spool) {
        for entry in rd.flatten() {
            let name = entry.file_name();
            let stale = name.to_str().is_some_and(|n| {
                n.strip_prefix(&tmp_prefix)
                    .and_then(|rest| rest.split('-').next())
                    .is_some_and(|seq| seq.len() >= 8 && seq.bytes().all(|b| b.is_ascii_digit()))
            });
            if stale {
                let _ = fs::remove_dir_all(entry.path());
                removed.push(entry.path());
            }
        }
    }
    Ok(removed)
}
