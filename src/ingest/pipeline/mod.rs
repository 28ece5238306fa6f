//! One bundle through the journal stages:
//! seen → copied → verified → parsed → diffed → gated → stored → exported → done
//! (or rejected / held / failed). Every stage can be redone: the store transaction records the
//! bundle as stored, so a rerun after a crash redoes the whole bundle if it was not stored, and
//! goes straight to the export if it was.
//!
//! This file holds the `Ingestor`, its types and `process`, which sends a path down one of two
//! paths: `signed` (a signed bundle: seen → copied → verified, the sequence checks) or `archive`
//! (a bare archive dropped by hand); `download` is a `sync` download entering after verification.
//! All three go on through `stages` (parse, diff, gate, store) and `finish` (export, done);
//! `refuse` holds the reject and fault moves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Utc;

use super::config::WatchConfig;
use super::diff::{self, Report};

mod archive;
mod finish;
mod refuse;
mod signed;
mod stages;
use crate::bundle::{self, PublicKey};
use crate::exit::Exit;
use crate::fsutil::{self, RunLock};
use crate::safe_name::{self, escape};
use crate::sinks::Sink;
use crate::store::Store;

mod download;
pub use download::Download;

/// Env var naming a stage at which the process aborts (test hook for the kill -9 test).
pub const CRASH_ENV: &str = "ETFERRY_TEST_CRASH_AT";

pub(crate) fn crash_point(stage: &'static str) {
    crate::timing::mark(stage);
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    tracing::debug!(
        "stage {stage} reached at {} ms",
        start.elapsed().as_millis()
    );
    if let Ok(want) = std::env::var(CRASH_ENV) {
        if want == stage {
            eprintln!("etferry: test hook {CRASH_ENV}={stage}: aborting");
            std::process::abort();
        }
    }
}

/// How to process one bundle.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Release a bundle held by the sanity gate.
    pub approve: bool,
    /// Verify, parse, diff and gate, but store, move and send nothing.
    pub dry_run: bool,
    /// Remove the bundle from where it arrived once it is done or rejected (the inbox).
    pub remove_source: bool,
}

/// What happened to one bundle.
#[derive(Debug)]
pub enum Outcome {
    /// Stored (and exported where sinks are configured).
    Done(Box<Report>),
    /// A heartbeat: the source's last-seen time moved on.
    Heartbeat {
        source: String,
    },
    /// Processed before; nothing to do.
    AlreadyDone,
    Rejected(String),
    Held(String),
    /// Stopped by a signal between stages; the next run redoes the bundle.
    Abandoned,
    DryRun(Box<Report>),
}

impl Outcome {
    pub fn exit(&self) -> Exit {
        match self {
            Outcome::Rejected(_) => Exit::Rejected,
            Outcome::Held(_) => Exit::Held,
            _ => Exit::Ok,
        }
    }
}

/// The air-gapped pipeline: config, trusted keys, store, sinks.
pub struct Ingestor {
    pub cfg: WatchConfig,
    keys: Vec<PublicKey>,
    pub store: Store,
    sinks: Vec<Box<dyn Sink>>,
    stop: Arc<AtomicBool>,
    /// `Partial` once a sink failed in this run (its changes stay pending).
    pub export_exit: Exit,
    /// Changes the sinks confirmed in this run (every sink counted).
    pub exported: usize,
    _lock: RunLock,
}

/// What the stages after verification know about an import (from a manifest or a bare archive).
struct Import {
    source: String,
    ruleset: String,
    engine: Option<String>,
    sequence: u64,
    created_at: chrono::DateTime<Utc>,
    lifetime: i64,
    origin: &'static str,
    archive: Option<crate::store::ArchiveImport>,
    download: Option<crate::store::Provenance>,
}

enum Stop {
    /// The bundle is at fault: exit 4, moved to `failed/`.
    Reject(String),
    Hold(String),
    Abandon,
    /// This machine is at fault (disk full, permission denied, I/O error): exit 1, the bundle
    /// stays where it is (inbox or `work/`) and the journal says `failed`, to be retried.
    Fault(anyhow::Error),
}

/// Store, disk and move errors are local faults unless a stage says otherwise.
impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Fault(e)
    }
}

/// Print a line about a bundle with its untrusted parts escaped.
fn say(msg: &str) {
    eprintln!("{}", escape(msg));
}

impl Ingestor {
    /// Open the store (taking the run lock beside it) and load the trusted keys.
    pub fn open(cfg: WatchConfig) -> anyhow::Result<Ingestor> {
        // Whatever is written under work/, done/, failed/ and the store is private.
        fsutil::private_umask();
        let lock = RunLock::acquire(&lock_path(&cfg.store))?;
        let keys = cfg.load_trusted_keys()?;
        let store = Store::open(&cfg.store)?;
        store.mark_run_start()?;
        let sinks = cfg.sinks.build(&cfg.export_policy())?;
        Ok(Ingestor {
            cfg,
            keys,
            store,
            sinks,
            stop: Arc::new(AtomicBool::new(false)),
            export_exit: Exit::Ok,
            exported: 0,
            _lock: lock,
        })
    }

    /// Add a sink; the exported stage calls every registered sink.
    pub fn add_sink(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    /// Use `flag` (set by SIGTERM) to stop the pipeline between stages.
    pub fn set_stop_flag(&mut self, flag: Arc<AtomicBool>) {
        self.stop = flag;
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Process one bundle directory, or a bare archive file (`.tar.gz`, `.tgz`, `.zip`, `.rules`).
    pub fn process(&mut self, path: &Path, opts: Options) -> anyhow::Result<Outcome> {
        // `inbox/x/` names the same entry as `inbox/x`, but only the second is the link itself.
        let path_buf = fsutil::strip_trailing(path);
        let path: &Path = &path_buf;
        let meta = std::fs::symlink_metadata(path).ok();
        let is_link = meta.as_ref().is_some_and(|m| m.file_type().is_symlink());
        if is_bare_archive(path) && (is_link || meta.as_ref().is_some_and(|m| m.is_file())) {
            return self.process_archive(path, opts);
        }
        if meta.is_none() && is_bare_archive(path) {
            // A held archive named by the inbox path it had (it waits in work/ under its id).
            if let Some(f) = self.held_archive_named(path) {
                return self.process_archive(&f, opts);
            }
        }
        let id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow::anyhow!("{}: not a bundle directory", safe_name::path(path)))?;
        let work = self.cfg.work.join(&id);
        if is_link {
            let reason = format!(
                "{id}: {} is a symbolic link; links on the medium are never followed, nothing was copied",
                path.display()
            );
            return self.reject_in_place(&id, &reason, opts);
        }
        if id.starts_with("archive-") && !path.join(bundle::MANIFEST).exists() {
            // A held bare archive released with `ingest --approve <id or work path>`: its work copy.
            let dir = if path.is_dir() { path } else { &work };
            if let Some(f) = archive_in(dir) {
                return self.process_archive(&f, opts);
            }
        }
        let row = self.store.bundle(&id)?;
        if !opts.dry_run {
            if let Some(row) = &row {
                if row.status == "done" && path.is_dir() && path != work {
                    if let Some(why) = self.differs_from_stored(&id, path)? {
                        return self.reject_in_place(&id, &why, opts);
                    }
                }
                if row.status == "done" {
                    say(&format!("{id}: already done; nothing to do"));
                    if opts.remove_source && path != work {
                        remove_dir(path);
                    }
                    return Ok(Outcome::AlreadyDone);
                }
                if row.stage == "stored" || row.stage == "exported" {
                    // Stored before a crash: only the export and the move are left.
                    return self.finish(&id, path, row.source.as_deref(), None, opts);
                }
                if row.status == "held" && !opts.approve {
                    if opts.remove_source && path != work && work.is_dir() {
                        // The work copy is what `--approve` uses.
                        remove_dir(path);
                    }
                    let why = row.reason.clone().unwrap_or_default();
                    return Ok(Outcome::Held(format!("{id} is still held: {why}")));
                }
            }
        }
        let source_dir = if path.is_dir() {
            path.to_path_buf()
        } else if path.exists() {
            return Err(crate::exit::usage(format!(
                "{}: not a bundle directory; only signed bundles (directories with manifest.json) and, with accept_unsigned_archives, bare .tar.gz/.tgz/.zip/.rules files are ingested",
                path.display()
            )));
        } else if work.is_dir() {
            work.clone()
        } else {
            return Err(crate::exit::usage(format!(
                "{}: no such bundle (not in the work directory either)",
                path.display()
            )));
        };
        if !super::inbox::is_bundle_dir(&source_dir) {
            // A folder is not a broken bundle: rejecting it would move it (an inbox, a medium
            // full of good bundles) into failed/. `ingest` expands folders before this point.
            return Err(crate::exit::usage(format!(
                "{}: not a bundle ({} is missing); nothing was moved",
                path.display(),
                bundle::MANIFEST
            )));
        }
        match self.run_stages(&id, &source_dir, &work, opts) {
            Ok(o) => Ok(o),
            Err(Stop::Fault(e)) => Err(self.fault(&id, e, opts)),
            Err(Stop::Abandon) => Ok(Outcome::Abandoned),
            Err(Stop::Hold(reason)) => {
                if opts.remove_source && path != work && work.is_dir() {
                    // Held bundles wait in the work dir for `ingest --approve`.
                    remove_dir(path);
                }
                Ok(Outcome::Held(reason))
            }
            Err(Stop::Reject(reason)) => {
                let reason = escape(&reason).into_owned();
                if !opts.dry_run {
                    self.reject(&id, path, &work, &reason, opts)?;
                }
                Ok(Outcome::Rejected(reason))
            }
        }
    }
}

/// Lock file beside the store: one ingest or watch at a time per store.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut s = store.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A file the pipeline takes as a bare archive (by name; the content is checked later).
pub fn is_bare_archive(p: &Path) -> bool {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    !n.starts_with('.')
        && [".tar.gz", ".tgz", ".zip", ".rules"]
            .iter()
            .any(|e| n.ends_with(e))
}

impl Ingestor {
    /// The work copy of a held bare archive whose file name is `path`'s.
    fn held_archive_named(&self, path: &Path) -> Option<PathBuf> {
        let name = path.file_name()?;
        std::fs::read_dir(&self.cfg.work)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("archive-"))
            .map(|e| e.path().join(name))
            .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
    }
}

/// The bare archive inside a work directory.
fn archive_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_file() && is_bare_archive(p))
}

/// `<file>.md5` beside a dropped archive.
pub fn md5_beside(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".md5");
    PathBuf::from(s)
}

fn remove_dir(p: &Path) {
    if let Err(e) = std::fs::remove_dir_all(p) {
        tracing::warn!("cannot remove {} from the inbox: {e}", safe_name::path(p));
    }
}

/// Lowercase hex sha256 of `data`.
fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}
