//! One bundle through the journal stages:
//! seen → copied → verified → parsed → diffed → gated → stored → exported → done
//! (or rejected / held / failed). Every stage can be redone: the store transaction records the
//! bundle as stored, so a rerun after a crash redoes the whole bundle if it was not stored, and
//! goes straight to the export if it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;

use super::config::WatchConfig;
use super::diff::{self, Report};
use super::{gate, payload};

mod archive;
mod refuse;
use crate::bundle::{self, Manifest, PublicKey, VerifiedBundle};
use crate::exit::Exit;
use crate::fsutil::{self, RunLock};
use crate::safe_name::{self, escape};
use crate::sinks::Sink;
use crate::store::{Store, StoreBatch};

mod download;
pub use download::Download;

/// Env var naming a stage at which the process aborts (test hook for the kill -9 test).
pub const CRASH_ENV: &str = "ETFERRY_TEST_CRASH_AT";

pub(crate) fn crash_point(stage: &str) {
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

    fn run_stages(
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
            use super::medium::{copy_bundle, CopyError};
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

    /// The stages after verification, shared by signed bundles and bare archives: archive limits,
    /// parse, diff, sanity gate, store (one transaction), export, done.
    fn import_payload(
        &mut self,
        id: &str,
        src: &Path,
        imp: &Import,
        files: Vec<(String, Vec<u8>)>,
        opts: Options,
    ) -> Result<Outcome, Stop> {
        let dry = opts.dry_run;
        let j = |s: &Store, stage: &str| -> Result<(), Stop> {
            if !dry {
                s.journal(
                    id,
                    Some(&imp.source),
                    Some(imp.sequence),
                    stage,
                    "in-progress",
                    None,
                )?;
            }
            Ok(())
        };
        let p = payload::parse_payload(&files, &self.cfg.archive_limits())
            .map_err(|e| Stop::Reject(format!("{id}: {e}")))?;
        tracing::debug!("{} rules parsed", p.rules.len());
        let parse_errors = p.errors;
        let (rules, dups) = payload::dedupe(p.rules);
        j(&self.store, "parsed")?;
        crash_point("parsed");

        let old = self.store.rules_of(&imp.source)?;
        let mut d = diff::diff(&rules, &old);
        drop(old);
        d.label_removed(&self.store.rule_labels(&imp.source, &d.removed_keys)?);
        let old_inds = self.store.indicator_count(&imp.source)?;
        j(&self.store, "diffed")?;
        crash_point("diffed");

        let new_inds = p
            .indicators
            .as_ref()
            .map(|v| v.len() as u64)
            .unwrap_or(old_inds);
        let held = gate::check(
            d.before + old_inds,
            rules.len() as u64 + new_inds,
            self.cfg.sanity.max_drop_percent,
        );
        let standard = rules.iter().filter(|r| r.enabled).count() as u64;
        let mut errors = parse_errors;
        errors.extend(p.indicator_errors.iter().cloned());
        let mut report = Report {
            bundle: id.to_string(),
            source: imp.source.clone(),
            ruleset: imp.ruleset.clone(),
            sequence: imp.sequence,
            counts: d.counts,
            added: d.added,
            removed: d.removed,
            modified: d.modified,
            enabled_changed: d.enabled_changed,
            rules: rules.len() as u64,
            standard,
            non_standard: rules.len() as u64 - standard,
            indicators: new_inds,
            duplicates: dups
                .iter()
                .map(|r| diff::Entry {
                    gid: r.gid,
                    sid: r.sid,
                    rev: r.rev,
                    msg: r.msg.clone(),
                    file: format!("{}:{}", r.file, r.line).into(),
                    category: r.category.clone(),
                    enabled: r.enabled,
                    previous_rev: None,
                })
                .collect(),
            errors,
            outcome: "stored".into(),
            held_reason: None,
            origin: imp.origin.to_string(),
            download: imp.download.clone(),
        };
        if dry {
            report.outcome = "dry-run".into();
            report.held_reason = held;
            return Ok(Outcome::DryRun(Box::new(report)));
        }
        // A download of `sync` is released by source name, not by a bundle path.
        let held = match (held, &imp.download) {
            (Some(r), Some(_)) => Some(r.replace(
                "etferry ingest --approve BUNDLE",
                &format!("etferry sync --approve {}", imp.source),
            )),
            (h, _) => h,
        };
        if let Some(reason) = held {
            if !opts.approve {
                let reason = format!("{id}: held by the sanity gate: {reason}");
                self.store
                    .journal(
                        id,
                        Some(&imp.source),
                        Some(imp.sequence),
                        "gated",
                        "held",
                        Some(&reason),
                    )
                    .map_err(Stop::from)?;
                return Err(Stop::Hold(reason));
            }
            say(&format!("{id}: approved by the operator: {reason}"));
        }
        j(&self.store, "gated")?;
        crash_point("gated");
        if self.stopping() {
            return Err(Stop::Abandon);
        }

        let batch = StoreBatch {
            bundle: id,
            source: &imp.source,
            ruleset: &imp.ruleset,
            engine: imp.engine.as_deref(),
            sequence: imp.sequence,
            created_at: imp.created_at,
            lifetime_secs: imp.lifetime,
            rules: &rules,
            removed: &d.removed_keys,
            changes: &d.changes,
            moved: &d.moved,
            payload: &files,
            indicators: p.indicators.as_deref(),
            archive: imp.archive.clone(),
            download: imp.download.clone(),
        };
        let store = &mut self.store;
        // A full ruleset's report is several MB of JSON: it is gzipped on another core while
        // the rules are written, and joined just before the commit.
        std::thread::scope(|s| {
            let gz = s.spawn(|| crate::store::gzip_json(&report));
            store.store_bundle(
                &batch,
                || {
                    gz.join()
                        .map_err(|_| anyhow::anyhow!("the report thread panicked"))?
                },
                || crash_point("storing"),
            )
        })
        .map_err(|e| Stop::Fault(e.context(format!("{id}: storing failed, nothing stored"))))?;
        crash_point("stored");
        self.finish(id, src, Some(&imp.source), Some(report), opts)
            .map_err(Stop::from)
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

    /// Export, move the bundle to `done/`, and mark it done.
    fn finish(
        &mut self,
        id: &str,
        src: &Path,
        source: Option<&str>,
        report: Option<Report>,
        opts: Options,
    ) -> anyhow::Result<Outcome> {
        let exit = self.export_pending()?;
        self.store.journal(
            id,
            None,
            None,
            "exported",
            "in-progress",
            (exit != Exit::Ok).then_some("a sink failed; the changes stay pending"),
        )?;
        crash_point("exported");
        let work = self.cfg.work.join(id);
        if work.is_dir() {
            fsutil::create_private_dir(&self.cfg.done)
                .with_context(|| format!("cannot create {}", self.cfg.done.display()))?;
            let dest = self.cfg.done.join(id);
            if dest.exists() {
                std::fs::remove_dir_all(&dest)?;
            }
            // work/ and done/ may be on different file systems.
            fsutil::move_tree(&work, &dest)?;
        }
        if opts.remove_source && src != work && src.exists() {
            remove_dir(src);
        }
        self.store.journal(id, None, None, "done", "done", None)?;
        Ok(match report {
            Some(r) => Outcome::Done(Box::new(r)),
            None => match self.store.bundle(id)?.and_then(|b| b.report) {
                Some(j) if source.is_some() => match serde_json::from_str::<Report>(&j) {
                    Ok(r) => Outcome::Done(Box::new(r)),
                    Err(_) => Outcome::AlreadyDone,
                },
                _ => Outcome::Heartbeat {
                    source: source.unwrap_or_default().to_string(),
                },
            },
        })
    }

    /// Send every pending change to every sink; failed items stay pending. `Partial` when a sink
    /// failed. A sink that takes indicators gets the pending block-list indicators right after
    /// the rules; a sink that paused on purpose (ThreatQ connector off) keeps everything pending
    /// and is not a failure.
    pub fn export_pending(&mut self) -> anyhow::Result<Exit> {
        let policy = self.cfg.export_policy();
        let ind_policy = self.cfg.indicator_policy();
        let mut exit = Exit::Ok;
        for sink in self.sinks.iter_mut() {
            let name = sink.name().to_string();
            let items = self.store.pending_exports(&name, &policy)?;
            let inds = if sink.takes_indicators() {
                self.store.pending_indicators(&name, &ind_policy)?
            } else {
                Vec::new()
            };
            let started = std::time::Instant::now();
            if items.is_empty() && inds.is_empty() && !sink.whole_store() {
                println!(
                    "{}",
                    crate::sinks::summary_line(
                        &name,
                        Some(&Default::default()),
                        0,
                        started.elapsed()
                    )
                );
                continue;
            }
            let result = sink.export(&items);
            // One line per sink and run, terminal or not: an upload is never silent. Whole-store
            // sinks (rules file, STIX) say what they wrote themselves.
            if !sink.whole_store() {
                println!(
                    "{}",
                    crate::sinks::summary_line(
                        &name,
                        result.as_ref().ok(),
                        items.len(),
                        started.elapsed()
                    )
                );
            }
            let mut paused = None;
            match result {
                Ok(outcome) => {
                    paused = outcome.paused.clone();
                    if !outcome.failed.is_empty() {
                        exit = Exit::Partial;
                        eprintln!(
                            "sink {name}: {} of {} changes failed and stay pending (first: {})",
                            outcome.failed.len(),
                            items.len(),
                            outcome.failed[0].1
                        );
                    }
                    self.store.record_export(&name, &items, &outcome)?;
                    self.exported += outcome.confirmed.len();
                }
                Err(e) => {
                    exit = Exit::Partial;
                    eprintln!(
                        "sink {name}: export failed, {} changes stay pending: {e:#}",
                        items.len()
                    );
                }
            }
            if sink.takes_indicators() {
                let started = std::time::Instant::now();
                let result = sink.export_indicators(&inds);
                if !inds.is_empty() {
                    println!(
                        "{}",
                        crate::sinks::summary_of(
                            &name,
                            "indicator",
                            result.as_ref().ok(),
                            inds.len(),
                            started.elapsed()
                        )
                    );
                }
                match result {
                    Ok(outcome) => {
                        if !outcome.failed.is_empty() {
                            exit = Exit::Partial;
                            eprintln!(
                                "sink {name}: {} of {} indicators failed and stay pending (first: {})",
                                outcome.failed.len(),
                                inds.len(),
                                outcome.failed[0].1
                            );
                        }
                        // `exported` counts rule changes (the run summary's "changes sent");
                        // indicators have their own summary line.
                        self.store.record_indicator_export(&name, &inds, &outcome)?;
                    }
                    Err(e) => {
                        exit = Exit::Partial;
                        eprintln!(
                            "sink {name}: indicator export failed, {} stay pending: {e:#}",
                            inds.len()
                        );
                    }
                }
            }
            // `status` shows why a sink sent nothing on purpose; a normal run clears it.
            self.store.set_sink_note(&name, paused.as_deref())?;
        }
        self.export_exit = self.export_exit.worst(exit);
        Ok(exit)
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
