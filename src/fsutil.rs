//! File-system helpers that keep writes crash-safe: atomic replace, directory fsync, run locks.

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
