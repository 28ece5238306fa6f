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
use crate::bundle::{self, Manifest, PublicKey, VerifiedBundle};
use crate::exit::Exit;
use crate::fsutil::RunLock;
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
    Reject(String),
    Hold(String),
    Abandon,
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Reject(format!("{e:#}"))
    }
}

impl Ingestor {
    /// Open the store (taking the run lock beside it) and load the trusted keys.
    pub fn open(cfg: WatchConfig) -> anyhow::Result<Ingestor> {
        let lock = RunLock::acquire(&lock_path(&cfg.store))?;
        let mut keys = Vec::new();
        for k in &cfg.trusted_keys {
            keys.push(
                PublicKey::load(k)
                    .with_context(|| format!("cannot load trusted key {}", k.display()))?,
            );
        }
        let store = Store::open(&cfg.store)?;
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
        if path.is_file() && is_bare_archive(path) {
            return self.process_archive(path, opts);
        }
        let id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow::anyhow!("{}: not a bundle directory", path.display()))?;
        let work = self.cfg.work.join(&id);
        if id.starts_with("archive-") && !path.exists() && work.is_dir() {
            // A held bare archive released with `ingest --approve <id>`: its work copy.
            if let Some(f) = archive_in(&work) {
                return self.process_archive(&f, opts);
            }
        }
        let row = self.store.bundle(&id)?;
        if !opts.dry_run {
            if let Some(row) = &row {
                if row.status == "done" {
                    eprintln!("{id}: already done; nothing to do");
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
        match self.run_stages(&id, &source_dir, &work, opts) {
            Ok(o) => Ok(o),
            Err(Stop::Abandon) => Ok(Outcome::Abandoned),
            Err(Stop::Hold(reason)) => {
                if opts.remove_source && path != work && work.is_dir() {
                    // Held bundles wait in the work dir for `ingest --approve`.
                    remove_dir(path);
                }
                Ok(Outcome::Held(reason))
            }
            Err(Stop::Reject(reason)) => {
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
                )
                .map_err(|e| Stop::Reject(format!("{e:#}")))?;
            }
            Ok(())
        };
        j(&self.store, "seen", None)?;
        crash_point("seen");
        let dir = if dry || src == work {
            src.to_path_buf()
        } else {
            copy_bundle(src, work).map_err(|e| Stop::Reject(format!("{e:#}")))?;
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
            origin: diff::ORIGIN_BUNDLE,
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
                )
                .map_err(|e| Stop::Reject(format!("{e:#}")))?;
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
            eprintln!("{id}: approved by the operator: {reason}");
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
        .map_err(|e| Stop::Reject(format!("{id}: storing failed, nothing stored: {e:#}")))?;
        crash_point("stored");
        self.finish(id, src, Some(&imp.source), Some(report), opts)
            .map_err(Stop::from)
    }

    /// A bare archive dropped by hand: its id is `archive-<sha256 prefix>`, so the same content
    /// twice is the same import. Work, done and failed hold a directory of that id with the file.
    fn process_archive(&mut self, path: &Path, opts: Options) -> anyhow::Result<Outcome> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let limit = self.cfg.limits.max_total_size.0;
        if size > limit {
            let reason = format!(
                "{name}: {size} bytes is larger than limits.max_total_size ({limit} bytes)"
            );
            return self.reject_archive(&name, path, None, &reason, opts);
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let sha = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(&bytes))
        };
        let id = format!("archive-{}", &sha[..16]);
        if !self.cfg.accept_unsigned_archives {
            let reason = format!(
                "{name}: a bare archive, not a signed bundle, and this site does not accept unsigned archives. \
                 To accept it, set `accept_unsigned_archives: true` in watch.yaml and, if its source cannot be \
                 told from the archive, add an `archive_sources` entry (match: \"{name}\", ruleset: et-open, engine: …)"
            );
            return self.reject_archive(&name, path, Some(&id), &reason, opts);
        }
        let work = self.cfg.work.join(&id);
        if !opts.dry_run {
            if let Some(row) = self.store.bundle(&id)? {
                if row.status == "done" {
                    eprintln!(
                        "{name}: the same content (sha256 {sha}) was imported before as {id}; nothing to do"
                    );
                    if opts.remove_source {
                        remove_file_and_md5(path);
                    }
                    return Ok(Outcome::AlreadyDone);
                }
                if row.stage == "stored" || row.stage == "exported" {
                    let out = self.finish(&id, &work, row.source.as_deref(), None, opts)?;
                    if opts.remove_source {
                        remove_file_and_md5(path);
                    }
                    return Ok(out);
                }
                if row.status == "held" && !opts.approve {
                    if opts.remove_source && work.is_dir() {
                        remove_file_and_md5(path);
                    }
                    let why = row.reason.clone().unwrap_or_default();
                    return Ok(Outcome::Held(format!("{id} ({name}) is still held: {why}")));
                }
            }
        }
        match self.archive_stages(&id, &name, path, bytes, &sha, &work, opts) {
            Ok(o) => {
                if opts.remove_source && !opts.dry_run {
                    remove_file_and_md5(path);
                }
                Ok(o)
            }
            Err(Stop::Abandon) => Ok(Outcome::Abandoned),
            Err(Stop::Hold(reason)) => {
                if opts.remove_source && work.is_dir() {
                    remove_file_and_md5(path);
                }
                Ok(Outcome::Held(reason))
            }
            Err(Stop::Reject(reason)) => self.reject_archive(&name, path, Some(&id), &reason, opts),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn archive_stages(
        &mut self,
        id: &str,
        name: &str,
        path: &Path,
        bytes: Vec<u8>,
        sha: &str,
        work: &Path,
        opts: Options,
    ) -> Result<Outcome, Stop> {
        let dry = opts.dry_run;
        let j = |s: &Store, stage: &str| -> Result<(), Stop> {
            if !dry {
                s.journal(id, None, None, stage, "in-progress", None)
                    .map_err(|e| Stop::Reject(format!("{e:#}")))?;
            }
            Ok(())
        };
        j(&self.store, "seen")?;
        let md5_path = md5_beside(path);
        let md5_text = match std::fs::read(&md5_path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Stop::Reject(format!(
                    "{name}: cannot read {}: {e}",
                    md5_path.display()
                )))
            }
        };
        // Taken before the work copy replaces the file (with `--approve`, `path` is in there).
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mtime = modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        if !dry {
            // The work copy is what a rerun after a crash (or `--approve`) uses.
            let tmp = self.cfg.work.join(format!(".{id}.copying"));
            let copy = || -> anyhow::Result<()> {
                if tmp.exists() {
                    std::fs::remove_dir_all(&tmp)?;
                }
                std::fs::create_dir_all(&tmp)?;
                std::fs::write(tmp.join(name), &bytes)?;
                if let Some(t) = modified {
                    // A `.rules` file's version may be its time: the work copy keeps it.
                    std::fs::File::options()
                        .write(true)
                        .open(tmp.join(name))?
                        .set_modified(t)?;
                }
                if let Some(t) = &md5_text {
                    std::fs::write(tmp.join(format!("{name}.md5")), t)?;
                }
                if work.exists() {
                    std::fs::remove_dir_all(work)?;
                }
                std::fs::rename(&tmp, work)?;
                Ok(())
            };
            copy().map_err(|e| {
                Stop::Reject(format!("{name}: cannot copy to {}: {e:#}", work.display()))
            })?;
        }
        j(&self.store, "copied")?;
        if self.stopping() {
            return Err(Stop::Abandon);
        }
        if let Some(t) = &md5_text {
            use md5::{Digest, Md5};
            let actual = hex::encode(Md5::digest(&bytes));
            let Some(expected) = crate::bare::md5_token(t) else {
                return Err(Stop::Reject(format!(
                    "{name}: {} holds no md5 (32 hex digits); the archive's md5 is {actual}",
                    md5_path.display()
                )));
            };
            if expected != actual {
                return Err(Stop::Reject(format!(
                    "{name}: md5 mismatch: the archive's md5 is {actual}, {} says {expected}; \
                     the copy is damaged or not the file the .md5 was made for",
                    md5_path.display()
                )));
            }
        }
        let lower = name.to_ascii_lowercase();
        let members = if lower.ends_with(".rules") {
            vec![crate::archive::Member {
                path: name.to_string(),
                data: bytes,
                mtime,
            }]
        } else {
            crate::archive::read_archive(name, &bytes, &self.cfg.archive_limits().to_archive())
                .map_err(|e| Stop::Reject(format!("{id} ({name}): archive {name}: {e}")))?
        };
        let who = crate::bare::attribute(name, &members, &self.cfg.archive_sources)
            .map_err(Stop::Reject)?;
        if !self.cfg.rulesets.contains(&who.ruleset) {
            return Err(Stop::Reject(format!(
                "{name}: ruleset {} ({}) is not imported here (rulesets: {}); add it to `rulesets` in the config to accept it",
                who.ruleset,
                who.how,
                self.cfg.rulesets.join(", ")
            )));
        }
        let Some(version) = crate::bare::archive_version(&members) else {
            return Err(Stop::Reject(format!(
                "{name}: cannot tell its version: no updated_at/created_at in its rules and no member times"
            )));
        };
        let basis = match version.basis {
            crate::bare::VersionBasis::RuleMetadata => "newest rule metadata date",
            crate::bare::VersionBasis::MemberMtime => "newest member time",
        };
        if let Some(last) = self.store.archive_import(&who.name)? {
            if last.sha256 == sha {
                // Same content under another id cannot happen (the id is the hash); say so anyway.
                eprintln!(
                    "{name}: the same content as {} ({}); nothing to do",
                    last.bundle, last.file
                );
                return Ok(Outcome::AlreadyDone);
            }
            if version.at < last.version_at {
                return Err(Stop::Reject(format!(
                    "{name}: older than the last archive accepted for source {}: version {} ({basis}) is before {} ({}, {}): a replay or rollback",
                    who.name,
                    version.at.format("%Y-%m-%d %H:%M:%S UTC"),
                    last.version_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    last.file,
                    last.bundle
                )));
            }
        }
        let existing = self.store.source(&who.name)?;
        eprintln!(
            "{name}: unsigned archive attributed to source {} by {}; version {} ({basis})",
            who.name,
            who.how,
            version.at.format("%Y-%m-%d")
        );
        let imp = Import {
            source: who.name.clone(),
            ruleset: who.ruleset.clone(),
            engine: who.engine.clone(),
            // The bundle sequence of a source also fed by signed bundles stays where it is.
            sequence: existing.as_ref().map_or(0, |s| s.last_sequence),
            created_at: version.at,
            lifetime: existing.as_ref().map_or(0, |s| s.lifetime_secs),
            origin: diff::ORIGIN_ARCHIVE,
            download: None,
            archive: Some(crate::store::ArchiveImport {
                version_at: version.at,
                sha256: sha.to_string(),
                bundle: id.to_string(),
                file: name.to_string(),
            }),
        };
        j(&self.store, "verified")?;
        let files = members.into_iter().map(|m| (m.path, m.data)).collect();
        self.import_payload(id, work, &imp, files, opts)
    }

    /// Reject a bare archive: `failed/<id or name>/` gets the file (moved out of the inbox, else
    /// copied) and `.reason.txt` says why.
    fn reject_archive(
        &mut self,
        name: &str,
        path: &Path,
        id: Option<&str>,
        reason: &str,
        opts: Options,
    ) -> anyhow::Result<Outcome> {
        if opts.dry_run {
            return Ok(Outcome::Rejected(reason.to_string()));
        }
        let key = id.unwrap_or(name);
        std::fs::create_dir_all(&self.cfg.failed)?;
        let dest = self.cfg.failed.join(key);
        if dest.exists() {
            std::fs::remove_dir_all(&dest)?;
        }
        let work = self.cfg.work.join(key);
        if id.is_some() && work.is_dir() {
            std::fs::rename(&work, &dest)?;
        } else {
            std::fs::create_dir_all(&dest)?;
            std::fs::copy(path, dest.join(name))
                .with_context(|| format!("cannot copy {} to {}", path.display(), dest.display()))?;
            let md5 = md5_beside(path);
            if md5.is_file() {
                std::fs::copy(&md5, dest.join(format!("{name}.md5")))?;
            }
        }
        if opts.remove_source {
            remove_file_and_md5(path);
        }
        crate::fsutil::atomic_write(
            &self.cfg.failed.join(format!("{key}.reason.txt")),
            format!("{reason}\n").as_bytes(),
        )?;
        if let Some(id) = id {
            self.store
                .journal(id, None, None, "rejected", "rejected", Some(reason))?;
        }
        Ok(Outcome::Rejected(reason.to_string()))
    }

    /// Verify signature, manifest and files; an unsigned bundle only when signatures are not
    /// required.
    fn verify(&self, dir: &Path) -> Result<VerifiedBundle, Stop> {
        let has_sig = dir.join(bundle::SIGNATURE).exists();
        if !has_sig && !self.cfg.require_signature {
            return verify_unsigned(dir).map_err(|e| Stop::Reject(format!("{e:#}")));
        }
        let mut opts = bundle::VerifyOptions::at(Utc::now());
        opts.max_total_size = self.cfg.limits.max_total_size.0;
        bundle::verify_with(dir, &self.keys, &opts).map_err(|e| {
            if !has_sig {
                Stop::Reject(format!(
                    "{e}; the bundle is unsigned and require_signature is true"
                ))
            } else {
                Stop::Reject(e.to_string())
            }
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
            std::fs::create_dir_all(&self.cfg.done)?;
            let dest = self.cfg.done.join(id);
            if dest.exists() {
                std::fs::remove_dir_all(&dest)?;
            }
            std::fs::rename(&work, &dest)
                .with_context(|| format!("cannot move {} to {}", work.display(), dest.display()))?;
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

    fn reject(
        &mut self,
        id: &str,
        src: &Path,
        work: &Path,
        reason: &str,
        opts: Options,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.cfg.failed)?;
        let dest = self.cfg.failed.join(id);
        if dest.exists() {
            std::fs::remove_dir_all(&dest)?;
        }
        if work.is_dir() {
            std::fs::rename(work, &dest)?;
        } else if opts.remove_source && src.is_dir() {
            std::fs::rename(src, &dest).or_else(|_| copy_bundle(src, &dest))?;
        } else if src.is_dir() {
            copy_bundle(src, &dest)?;
        }
        if opts.remove_source && src.exists() && src != work {
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

    /// Send every pending change to every sink; failed items stay pending. `Partial` when a sink
    /// failed.
    pub fn export_pending(&mut self) -> anyhow::Result<Exit> {
        let policy = self.cfg.export_policy();
        let mut exit = Exit::Ok;
        for sink in self.sinks.iter_mut() {
            let name = sink.name().to_string();
            let items = self.store.pending_exports(&name, &policy)?;
            if items.is_empty() {
                continue;
            }
            match sink.export(&items) {
                Ok(outcome) => {
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

fn remove_file_and_md5(p: &Path) {
    for f in [p.to_path_buf(), md5_beside(p)] {
        if f.exists() {
            if let Err(e) = std::fs::remove_file(&f) {
                tracing::warn!("cannot remove {} from the inbox: {e}", f.display());
            }
        }
    }
}

fn remove_dir(p: &Path) {
    if let Err(e) = std::fs::remove_dir_all(p) {
        tracing::warn!("cannot remove {} from the inbox: {e}", p.display());
    }
}

/// Copy a bundle directory (regular files only) into `dest`, through a temporary name so a
/// half-copied bundle is never taken for a whole one.
pub fn copy_bundle(src: &Path, dest: &Path) -> anyhow::Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.copying",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    for e in walkdir::WalkDir::new(src).follow_links(false) {
        let e = e.with_context(|| format!("cannot read {}", src.display()))?;
        let rel = e.path().strip_prefix(src)?;
        let to = tmp.join(rel);
        let ft = e.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&to)?;
        } else if ft.is_file() {
            std::fs::copy(e.path(), &to).with_context(|| {
                format!("cannot copy {} to {}", e.path().display(), to.display())
            })?;
        } else {
            anyhow::bail!(
                "{}: {} is not a regular file (links and devices are refused)",
                src.display(),
                rel.display()
            );
        }
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

/// An unsigned bundle (allowed only with `require_signature: false`): manifest and file checks.
fn verify_unsigned(dir: &Path) -> anyhow::Result<VerifiedBundle> {
    use sha2::{Digest, Sha256};
    let name = dir.display();
    let bytes = std::fs::read(dir.join(bundle::MANIFEST))
        .with_context(|| format!("{name}: cannot read {}", bundle::MANIFEST))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).with_context(|| format!("{name}: manifest is invalid"))?;
    if manifest.expires_at < Utc::now() {
        anyhow::bail!("{name}: expired at {}", manifest.expires_at);
    }
    let mut payload = Vec::new();
    for f in &manifest.files {
        if f.path.starts_with('/') || f.path.split('/').any(|p| p == ".." || p.is_empty()) {
            anyhow::bail!("{name}: file {}: path is not a safe relative path", f.path);
        }
        let data = std::fs::read(dir.join(&f.path))
            .with_context(|| format!("{name}: cannot read {}", f.path))?;
        if data.len() as u64 != f.size {
            anyhow::bail!(
                "{name}: file {}: size is {}, the manifest says {}",
                f.path,
                data.len(),
                f.size
            );
        }
        let sha = hex::encode(Sha256::digest(&data));
        if !sha.eq_ignore_ascii_case(&f.sha256) {
            anyhow::bail!(
                "{name}: file {}: sha256 is {sha}, the manifest says {}",
                f.path,
                f.sha256
            );
        }
        payload.push((f.clone(), data));
    }
    Ok(VerifiedBundle {
        dir: dir.to_path_buf(),
        manifest,
        key_id: String::new(),
        manifest_bytes: bytes,
        payload,
    })
}
