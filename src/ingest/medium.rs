//! Copying a bundle off the medium (inbox) into the work directory: only the manifest, its
//! signature and the files the manifest lists; never through a symbolic link; private copies
//! (0600 files, 0700 directories); nothing larger than the caps. What the manifest does not list
//! stays on the medium and is named in a warning.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::bundle::{self, MANIFEST, MANIFEST_CAP, SIGNATURE, SIGNATURE_CAP};
use crate::fsutil::{self, MediumError};

/// Why a copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The bundle is at fault (a link, a device, a file over its cap): reject it.
    #[error("{0}")]
    Refused(String),
    /// This machine is at fault (disk full, permission denied, I/O error): retry later.
    #[error("{0:#}")]
    Fault(anyhow::Error),
}

impl CopyError {
    fn medium(name: &str, e: MediumError) -> CopyError {
        if e.is_refusal() {
            CopyError::Refused(format!("{name}: {e}"))
        } else {
            CopyError::Fault(anyhow::Error::new(e).context(name.to_string()))
        }
    }

    fn fault(e: impl Into<anyhow::Error>, what: String) -> CopyError {
        CopyError::Fault(e.into().context(what))
    }
}

/// What the copy left on the medium: entries the manifest does not list (relative paths).
#[derive(Debug, Default)]
pub struct Copied {
    pub unlisted: Vec<String>,
}

/// Copy bundle `src` to `dest` through `.<name>.copying` beside it, so a half-copied bundle is
/// never taken for a whole one. `max_total` caps the sum of the listed sizes.
pub fn copy_bundle(src: &Path, dest: &Path, max_total: u64) -> Result<Copied, CopyError> {
    let src = &fsutil::strip_trailing(src);
    let name = crate::safe_name::path(src);
    fsutil::check_no_symlinks(src, "").map_err(|e| CopyError::medium(&name, e))?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    fsutil::create_private_dir(parent)
        .map_err(|e| CopyError::fault(e, format!("cannot create {}", parent.display())))?;
    let tmp = parent.join(format!(
        ".{}.copying",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .map_err(|e| CopyError::fault(e, format!("cannot remove {}", tmp.display())))?;
    }
    fsutil::create_private_dir(&tmp)
        .map_err(|e| CopyError::fault(e, format!("cannot create {}", tmp.display())))?;

    // A refused or failed copy leaves no half-copied directory behind.
    let listed = match copy_listed(src, &tmp, &name, max_total) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let unlisted = unlisted_entries(src, &listed);
    if dest.exists() {
        std::fs::remove_dir_all(dest)
            .map_err(|e| CopyError::fault(e, format!("cannot remove {}", dest.display())))?;
    }
    std::fs::rename(&tmp, dest)
        .map_err(|e| CopyError::fault(e, format!("cannot move {} into place", tmp.display())))?;
    fsutil::fsync_dir(parent).map_err(CopyError::Fault)?;
    Ok(Copied { unlisted })
}

/// Copy the manifest, the signature and the files the manifest lists from `src` into `tmp`;
/// returns every name copied or considered (for the unlisted warning).
fn copy_listed(
    src: &Path,
    tmp: &Path,
    name: &str,
    max_total: u64,
) -> Result<BTreeSet<String>, CopyError> {
    let mut listed = BTreeSet::new();
    for (file, cap) in [(MANIFEST, MANIFEST_CAP), (SIGNATURE, SIGNATURE_CAP)] {
        listed.insert(file.to_string());
        match fsutil::read_medium(src, file, cap) {
            Ok(data) => write(tmp, file, &data)?,
            // Verification names what is missing (or takes an unsigned bundle where allowed).
            Err(e) if e.is_not_found() => {}
            // Over its cap: not copied; verification says so from the medium's side.
            Err(MediumError::TooLarge { what, cap }) => {
                return Err(CopyError::Refused(format!(
                    "{name}: {} is larger than its cap of {cap} bytes",
                    crate::safe_name::escape(&what)
                )))
            }
            Err(e) => return Err(CopyError::medium(name, e)),
        }
    }
    let files = std::fs::read(tmp.join(MANIFEST))
        .ok()
        .and_then(|m| bundle::listed_files(&m))
        .unwrap_or_default();
    let declared: u64 = files.iter().map(|f| f.size).fold(0, u64::saturating_add);
    if declared > max_total {
        return Err(CopyError::Refused(format!(
            "{name}: the manifest lists {declared} bytes, more than limits.max_total_size ({max_total} bytes); nothing was copied"
        )));
    }
    for f in &files {
        // An unsafe path, or one listed twice, is for verification to name.
        if !bundle::safe_relative_path(&f.path) || !listed.insert(f.path.clone()) {
            continue;
        }
        match copy_file(src, tmp, &f.path, f.size) {
            Ok(()) => {}
            Err(Failed::Write(e)) => return Err(e),
            Err(Failed::Medium(e)) if e.is_not_found() => {}
            Err(Failed::Medium(MediumError::TooLarge { .. })) => {
                return Err(CopyError::Refused(format!(
                    "{name}: file {} is larger than the {} bytes the manifest says",
                    crate::safe_name::escape(&f.path),
                    f.size
                )))
            }
            Err(Failed::Medium(e)) => return Err(CopyError::medium(name, e)),
        }
    }
    Ok(listed)
}

/// Why one listed file was not copied: the medium's side, or this machine's.
enum Failed {
    Medium(MediumError),
    Write(CopyError),
}

/// Copy the listed file `rel` (at most `cap` bytes) from the medium into `tmp`, by the kernel:
/// a payload of megabytes is not read into memory here only to be written out and freed (the
/// verification reads the copy). Opened as [`fsutil::read_medium`] opens it, and nothing past
/// the cap.
fn copy_file(src: &Path, tmp: &Path, rel: &str, cap: u64) -> Result<(), Failed> {
    let (from, from_path) = fsutil::open_medium(src, rel).map_err(Failed::Medium)?;
    let (mut out, to) = create(tmp, rel).map_err(Failed::Write)?;
    let fault = |e: std::io::Error, what: String| Failed::Write(CopyError::fault(e, what));
    // One byte past the cap, to see a file larger than the manifest says.
    let copied = std::io::copy(
        &mut std::io::Read::take(from, cap.saturating_add(1)),
        &mut out,
    )
    .map_err(|e| {
        fault(
            e,
            format!("cannot copy {} to {}", from_path.display(), to.display()),
        )
    })?;
    if copied > cap {
        return Err(Failed::Medium(MediumError::TooLarge {
            what: from_path.display().to_string(),
            cap,
        }));
    }
    out.sync_all()
        .map_err(|e| fault(e, format!("cannot write {}", to.display())))
}

fn write(tmp: &Path, rel: &str, data: &[u8]) -> Result<(), CopyError> {
    let (mut f, to) = create(tmp, rel)?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| CopyError::fault(e, format!("cannot write {}", to.display())))
}

/// Create `rel` under `tmp` for writing, private, with its folders; and its path.
fn create(tmp: &Path, rel: &str) -> Result<(std::fs::File, PathBuf), CopyError> {
    let to = tmp.join(rel);
    if let Some(p) = to.parent() {
        fsutil::create_private_dir(p)
            .map_err(|e| CopyError::fault(e, format!("cannot create {}", p.display())))?;
    }
    let f = fsutil::create_private(&to)
        .map_err(|e| CopyError::fault(e, format!("cannot write {}", to.display())))?;
    Ok((f, to))
}

/// Entries under `src` that are neither listed nor a directory on the way to a listed file.
fn unlisted_entries(src: &Path, listed: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(src)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for e in walk.into_iter().filter_map(|e| e.ok()) {
        let Ok(rel) = e.path().strip_prefix(src) else {
            continue;
        };
        let rel = rel.to_string_lossy().into_owned();
        if listed.contains(&rel) {
            continue;
        }
        if e.file_type().is_dir() {
            continue;
        }
        out.push(if e.file_type().is_symlink() {
            format!("{rel} (symbolic link)")
        } else {
            rel
        });
    }
    out
}
