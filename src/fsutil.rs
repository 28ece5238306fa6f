//! File-system helpers that keep writes crash-safe (atomic replace, directory fsync, run locks),
//! reads from an untrusted medium safe (no symlink is ever followed, sizes are capped), copies
//! private (0600 files, 0700 directories) and moves possible across file systems.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit::{coded, Exit};

/// Write `data` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
/// A crash leaves either the old file or the new one, never a torn one.
pub fn atomic_write(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    fsync_dir(&dir)
}

/// Write `data` to a new file and fsync it (no rename; for files inside a temp directory).
pub fn write_synced(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// fsync a directory so that a rename inside it is durable.
pub fn fsync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync directory {}", dir.display()))?;
    }
    Ok(())
}

/// Make everything this process creates private from here on: the umask gains `077`, so new
/// files are at most 0600 and new directories 0700 (a stricter umask stays stricter). Used by the
/// commands that write the store, work/, done/ and failed/.
pub fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only changes this process's file-creation mask; it cannot fail.
    unsafe {
        let old = libc::umask(0o077);
        libc::umask(old | 0o077);
    }
}

/// Why something on the medium was not read.
#[derive(Debug, thiserror::Error)]
pub enum MediumError {
    /// A symbolic link where a file or directory was expected: never followed.
    #[error("{0} is a symbolic link; links on the medium are never followed")]
    Symlink(String),
    /// Not a regular file (a device, FIFO or socket).
    #[error("{0} is not a regular file")]
    NotRegular(String),
    /// Larger than the cap for this kind of file.
    #[error("{what} is larger than its cap of {cap} bytes")]
    TooLarge { what: String, cap: u64 },
    #[error("cannot read {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl MediumError {
    /// True when the medium (or the file on it) is at fault, not this machine.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, MediumError::Io { .. })
    }

    /// True when the file is simply not there (yet).
    pub fn is_not_found(&self) -> bool {
        matches!(self, MediumError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Refuse `root` itself and every component of `rel` below it that is a symbolic link. The
/// directories above `root` are the operator's (an inbox may well sit behind a link).
pub fn check_no_symlinks(root: &Path, rel: &str) -> Result<(), MediumError> {
    let root = strip_trailing(root);
    let mut p = root.clone();
    let mut shown = root.display().to_string();
    let check = |p: &Path, shown: &str| -> Result<(), MediumError> {
        match fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => Err(MediumError::Symlink(shown.to_string())),
            Ok(_) => Ok(()),
            Err(e) => Err(MediumError::Io {
                what: shown.to_string(),
                source: e,
            }),
        }
    };
    check(&p, &shown)?;
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        p.push(part);
        shown = format!("{shown}/{part}");
        check(&p, &shown)?;
    }
    Ok(())
}

/// `a/b/` and `a/b` name the same entry, but only the second is the link itself to `lstat`.
pub fn strip_trailing(p: &Path) -> PathBuf {
    let c: PathBuf = p.components().collect();
    if c.as_os_str().is_empty() {
        p.to_path_buf()
    } else {
        c
    }
}

/// Open a file on the medium without following a link at its last component (`O_NOFOLLOW`),
/// without blocking on a FIFO, and only if it is a regular file.
pub fn open_nofollow(path: &Path) -> Result<File, MediumError> {
    let shown = || path.display().to_string();
    let mut o = OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let f = o.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return MediumError::Symlink(shown());
        }
        MediumError::Io {
            what: shown(),
            source: e,
        }
    })?;
    let meta = f.metadata().map_err(|e| MediumError::Io {
        what: shown(),
        source: e,
    })?;
    if !meta.is_file() {
        return Err(MediumError::NotRegular(shown()));
    }
    Ok(f)
}

/// Open `rel` under `root` on the medium, and its path: no link anywhere from `root` down, a
/// regular file. Every read of a file off the medium starts here.
pub fn open_medium(root: &Path, rel: &str) -> Result<(File, PathBuf), MediumError> {
    check_no_symlinks(root, rel)?;
    let path = root.join(rel);
    let f = open_nofollow(&path)?;
    Ok((f, path))
}

/// Read `rel` under `root` from the medium ([`open_medium`]), at most `cap` bytes (more is
/// [`MediumError::TooLarge`]; nothing past the cap is read).
pub fn read_medium(root: &Path, rel: &str, cap: u64) -> Result<Vec<u8>, MediumError> {
    let (f, path) = open_medium(root, rel)?;
    read_capped(f, &path.display().to_string(), cap)
}

/// Read at most `cap` bytes of an open file; one byte more is [`MediumError::TooLarge`].
pub fn read_capped(f: File, what: &str, cap: u64) -> Result<Vec<u8>, MediumError> {
    use std::io::Read;
    // Sized from the file's length (one byte more, to see the end): `take` hides the length
    // from `read_to_end`, which would otherwise double its way up to as much as twice the file.
    // Only a hint: a file that grows or shrinks meanwhile is still read to the cap.
    let hint = f.metadata().map(|m| m.len()).unwrap_or(0).min(cap) + 1;
    let mut data = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    f.take(cap.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| MediumError::Io {
            what: what.to_string(),
            source: e,
        })?;
    if data.len() as u64 > cap {
        return Err(MediumError::TooLarge {
            what: what.to_string(),
            cap,
        });
    }
    Ok(data)
}

/// Create a directory (and its parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Write a new file with mode 0600 and fsync it (an existing file is replaced).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = create_private(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Create (or truncate) a private (0600) file for writing.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o.open(path)?;
    // An existing file keeps its mode through `open`: narrow it too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Move a file or directory tree. A rename where it can be; across file systems (`EXDEV`) a
/// private copy beside the destination, fsynced, renamed into place, and only then the source
/// removed, so a crash leaves the source or a whole destination, never only half of one.
pub fn move_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    match fs::rename(from, to) {
        Ok(()) => return fsync_dir(&parent_dir(to)),
        Err(e) if is_cross_device(&e) => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
        }
    }
    let parent = parent_dir(to);
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.moving"));
    if fs::symlink_metadata(&tmp).is_ok() {
        remove_tree(&tmp)?;
    }
    copy_tree_private(from, &tmp)
        .with_context(|| format!("cannot copy {} to {}", from.display(), parent.display()))?;
    fs::rename(&tmp, to)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), to.display()))?;
    fsync_dir(&parent)?;
    remove_tree(from)
}

fn is_cross_device(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EXDEV) {
        return true;
    }
    e.kind() == std::io::ErrorKind::CrossesDevices
}

fn remove_tree(p: &Path) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    if meta.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
    .with_context(|| format!("cannot remove {}", p.display()))
}

/// Copy a tree of regular files and directories (links refused), files 0600 and fsynced,
/// directories 0700.
fn copy_tree_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_file() {
        return copy_file_private(from, to);
    }
    for e in walkdir::WalkDir::new(from).follow_links(false) {
        let e = e?;
        let rel = e.path().strip_prefix(from)?;
        let dest = to.join(rel);
        let ft = e.file_type();
        if ft.is_dir() {
            create_private_dir(&dest)?;
        } else if ft.is_file() {
            copy_file_private(e.path(), &dest)?;
        } else {
            anyhow::bail!("{} is not a regular file or directory", e.path().display());
        }
    }
    for e in walkdir::WalkDir::new(to).contents_first(true) {
        let e = e?;
        if e.file_type().is_dir() {
            fsync_dir(e.path())?;
        }
    }
    Ok(())
}

/// Copy one regular file (never through a link) to a new 0600 file, fsynced, and keep its
/// modification time (a `.rules` file's version may be its time).
pub fn copy_file_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut src = open_nofollow(from)?;
    let mtime = src.metadata().and_then(|m| m.modified()).ok();
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut dest = o
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    std::io::copy(&mut src, &mut dest)
        .and_then(|_| dest.sync_all())
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    if let Some(t) = mtime {
        let _ = dest.set_modified(t);
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An exclusive lock held for the life of a run. A second run fails at once with exit 75.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Take the lock at `path` (created if missing) or fail with exit 75 naming the lock.
    pub fn acquire(path: &Path) -> anyhow::Result<RunLock> {
        fs::create_dir_all(parent_dir(path))
            .with_context(|| format!("cannot create the directory of {}", path.display()))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                // Record who holds it, for an operator looking at a stuck lock.
                let _ = file.set_len(0);
                let _ = (&file).write_all(format!("{}\n", std::process::id()).as_bytes());
                Ok(RunLock {
                    _file: file,
                    path: path.to_path_buf(),
                })
            }
            Err(fs::TryLockError::WouldBlock) => Err(coded(
                Exit::Locked,
                format!(
                    "another etferry run holds the lock {}; try again when it has finished",
                    path.display()
                ),
            )),
            Err(fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_exits_75() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fetch.lock");
        let _held = RunLock::acquire(&p).unwrap();
        let err = RunLock::acquire(&p).unwrap_err();
        assert_eq!(crate::exit::exit_for(&err), Exit::Locked);
        assert!(err.to_string().contains("fetch.lock"));
    }

    #[test]
    fn links_are_never_followed_and_caps_hold() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("bundle");
        fs::create_dir_all(b.join("real")).unwrap();
        fs::write(b.join("real/x"), b"12345").unwrap();
        std::os::unix::fs::symlink(b.join("real"), b.join("sub")).unwrap();
        std::os::unix::fs::symlink(b.join("real/x"), b.join("y")).unwrap();
        assert_eq!(read_medium(&b, "real/x", 5).unwrap(), b"12345");
        assert!(matches!(
            read_medium(&b, "real/x", 4),
            Err(MediumError::TooLarge { cap: 4, .. })
        ));
        for rel in ["sub/x", "y"] {
            let e = read_medium(&b, rel, 100).unwrap_err();
            assert!(matches!(e, MediumError::Symlink(_)), "{rel}: {e}");
        }
        // The entry itself, named with or without a trailing slash.
        std::os::unix::fs::symlink(&b, dir.path().join("link")).unwrap();
        let e = check_no_symlinks(
            Path::new(&format!("{}/", dir.path().join("link").display())),
            "",
        )
        .unwrap_err();
        assert!(matches!(e, MediumError::Symlink(_)), "{e}");
        assert!(matches!(
            open_nofollow(Path::new("/dev/null")),
            Err(MediumError::NotRegular(_))
        ));
    }

    #[test]
    fn private_copies_and_moves() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a");
        fs::create_dir_all(src.join("d")).unwrap();
        fs::write(src.join("d/f"), b"x").unwrap();
        fs::set_permissions(src.join("d/f"), fs::Permissions::from_mode(0o644)).unwrap();
        copy_tree_private(&src, &dir.path().join("b")).unwrap();
        let m = fs::metadata(dir.path().join("b/d/f")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        move_tree(&dir.path().join("b"), &dir.path().join("c")).unwrap();
        assert_eq!(fs::read(dir.path().join("c/d/f")).unwrap(), b"x");
        assert!(!dir.path().join("b").exists());
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
