//! `etferry sync`: the connected ThreatQ host's whole job in one process. Per due source the fetch
//! stages (cool-down, `min_interval`, change detection, download, verification gate; `fetch/`),
//! a pending download in the state dir (`pending`), optionally a signed bundle of it
//! (`publish:`), then the ingest stages (parse, diff, sanity gate, store in one transaction,
//! journal, export over the sinks; `ingest::Ingestor::import_download`). No key, spool or inbox
//! is needed: the download never leaves the host, and the fetch gate is its integrity check.

pub mod config;
pub mod pending;
pub mod report;

use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use crate::bundle::{self, SigningKey};
use crate::catalog::Plan;
use crate::exit::{usage, Exit};
use crate::fetch::config::Source;
use crate::fetch::http::Http;
use crate::fetch::state::StateDir;
use crate::fetch::{Ctx, Fail, Fetched, RunOptions, SourceReport, Status};
use crate::fsutil::RunLock;
use crate::ingest::pipeline::crash_point;
use crate::ingest::{Download, Ingestor, Outcome};
use crate::secret::{redact, Secret};
use crate::store::Provenance;
pub use config::SyncConfig;
use pending::Pending;
pub use report::{Line, SyncReport};

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Ignore `min_interval`.
    pub now: bool,
    /// Download and show what would change, without storing, sending or moving the fetch state.
    pub dry_run: bool,
    /// Sources whose download held by the sanity gate is released.
    pub approve: Vec<String>,
}

/// Everything one run needs.
struct Run<'a> {
    cfg: &'a SyncConfig,
    ctx: Ctx<'a>,
    ing: Ingestor,
    secrets: Vec<Secret>,
    opts: &'a Options,
}

/// Run every due source once; see the module doc. Takes the fetch lock in the state dir and the
/// store's lock (exit 75 when either is held).
pub fn run(cfg: &SyncConfig, opts: &Options) -> anyhow::Result<SyncReport> {
    for a in &opts.approve {
        if !cfg.fetch.sources.iter().any(|s| s.name == *a) {
            return Err(usage(format!(
                "--approve {a}: no such source in {}; sources: {}",
                cfg.path.display(),
                cfg.fetch
                    .sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let state = StateDir::new(&cfg.fetch.state);
    let _lock = RunLock::acquire(&state.lock_path())?;
    let key = if cfg.publish {
        Some(SigningKey::load(
            &cfg.fetch.signing_key,
            cfg.fetch.signing_key_password.as_ref(),
        )?)
    } else {
        None
    };
    let secrets: Vec<Secret> = cfg.fetch.all_secrets().into_iter().cloned().collect();
    let http = Http::new(&cfg.fetch.http, secrets.clone())?;
    let ing = Ingestor::open(cfg.watch.clone())?;
    let started_at = Utc::now();
    let mut run = Run {
        cfg,
        ctx: Ctx {
            cfg: &cfg.fetch,
            http: &http,
            key: key.as_ref(),
            state: &state,
            now: started_at,
            opts: RunOptions { now: opts.now },
        },
        ing,
        secrets,
        opts,
    };
    let mut lines = Vec::new();
    let mut dry_run_reports = Vec::new();
    if !opts.dry_run {
        // Downloads of earlier runs first: killed before they were stored, or held.
        for dir in pending::list(&cfg.work)? {
            lines.push(run.resume(&dir));
        }
    }
    for src in &cfg.fetch.sources {
        let (line, dry) = run.source(src);
        tracing::info!(
            "{}: download {}, {} archive bytes, {}",
            line.source,
            line.download,
            line.archive_bytes,
            line.outcome.as_deref().unwrap_or("nothing to store")
        );
        lines.push(line);
        dry_run_reports.extend(dry);
    }
    // A held download that a newer one replaced in this run is no longer held.
    for l in lines.iter_mut() {
        let gone = l.id.as_ref().is_some_and(|id| !cfg.work.join(id).exists());
        if l.download == "pending" && l.outcome.as_deref() == Some("held") && gone {
            l.outcome = Some("superseded".into());
            l.reason = Some("replaced by a newer download".into());
        }
    }
    let mut pending_exports = 0;
    if !opts.dry_run {
        // Changes a sink did not confirm in an earlier run go out even when nothing is new.
        run.ing.export_pending()?;
        let policy = cfg.watch.export_policy();
        for sink in cfg.watch.sinks.names() {
            pending_exports += run.ing.store.pending_exports(&sink, &policy)?.len();
        }
        // Block-list indicators ThreatQ has not confirmed are pending work too.
        if cfg
            .watch
            .sinks
            .threatq
            .as_ref()
            .is_some_and(|t| t.indicators)
        {
            pending_exports += run
                .ing
                .store
                .pending_indicators("threatq", &cfg.watch.indicator_policy())?
                .len();
        }
    }
    let mut exit = run.ing.export_exit;
    for l in &lines {
        if l.failed {
            exit = exit.worst(Exit::Error);
        } else if l.outcome.as_deref() == Some("held") {
            exit = exit.worst(Exit::Held);
        }
    }
    let report = SyncReport {
        started_at,
        finished_at: Utc::now(),
        config: cfg.path.display().to_string(),
        downloaded_bytes: lines.iter().map(|l| l.downloaded_bytes).sum(),
        archive_bytes: lines.iter().map(|l| l.archive_bytes).sum(),
        exported: run.ing.exported,
        pending_exports,
        exit: exit.code(),
        exit_status: exit,
        lines,
        dry_run_reports,
    };
    if !opts.dry_run {
        report.write(&cfg.fetch.state)?;
    }
    Ok(report)
}

impl Run<'_> {
    fn redact(&self, s: &str) -> String {
        let refs: Vec<&Secret> = self.secrets.iter().collect();
        redact(s, &refs)
    }

    /// One configured source: fetch, then store what is new.
    fn source(&mut self, src: &Source) -> (Line, Option<crate::ingest::diff::Report>) {
        let http = self.ctx.http;
        let before = (http.downloaded(), http.archive_downloaded());
        let mut rep = SourceReport::new(&src.name);
        let fetched = self.ctx.download(src, &mut rep);
        let bytes = |mut l: Line| {
            l.downloaded_bytes = http.downloaded() - before.0;
            l.archive_bytes = http.archive_downloaded() - before.1;
            l
        };
        let line = match fetched {
            None => {
                let line = Line::new(&src.name, status_name(rep.status));
                let reason = rep.reason.as_deref().map(|r| self.redact(r));
                match rep.status {
                    Status::Failed => {
                        let r = reason.unwrap_or_else(|| "failed".into());
                        tracing::error!("{}: {r}", src.name);
                        line.fail(r)
                    }
                    _ => Line { reason, ..line },
                }
            }
            Some(Fetched::Unchanged { st }) => {
                let mut line = Line::new(&src.name, "unchanged");
                if !self.opts.dry_run {
                    match self.ctx.publish(src, Fetched::Unchanged { st }, &mut rep) {
                        Ok(()) => {
                            line.download = status_name(rep.status).to_string();
                            line.published = rep.bundle.clone();
                        }
                        Err(Fail(m)) => line = line.fail(self.redact(&m)),
                    }
                }
                line
            }
            Some(Fetched::New {
                st,
                payload,
                upstream,
            }) => match self.new_download(src, st, payload, upstream) {
                Ok((line, dry)) => return (bytes(line), dry),
                Err(e) => Line::new(&src.name, "new").fail(self.redact(&format!("{e:#}"))),
            },
        };
        (bytes(line), None)
    }

    /// A download that passed the gate: written as a pending download, published when asked,
    /// announced to the fetch state, then stored.
    fn new_download(
        &mut self,
        src: &Source,
        st: crate::fetch::state::SourceState,
        payload: Vec<(String, Vec<u8>)>,
        upstream: crate::bundle::Upstream,
    ) -> anyhow::Result<(Line, Option<crate::ingest::diff::Report>)> {
        let seq = self
            .ctx
            .next_sequence(src, &st)
            .map_err(|Fail(m)| anyhow::anyhow!(m))?;
        let id = bundle::bundle_id(&src.name, seq);
        let previous = self.ctx.state.load(&src.name)?;
        let mut state = st;
        state.last_sequence = seq;
        state.last_check = Some(self.ctx.now);
        state.last_changed = Some(self.ctx.now);
        state.cool_down_until = None;
        state.cool_down_reason = None;
        let md5 = match &src.plan {
            Plan::Archive { .. } => state.md5.clone(),
            Plan::Files(_) => None,
        };
        let p = Pending {
            id: id.clone(),
            source: src.name.clone(),
            ruleset: src.ruleset.clone(),
            engine: src.engine.clone(),
            sequence: seq,
            provenance: Provenance {
                url: crate::fetch::shown_url(src),
                md5,
                downloaded_at: self.ctx.now,
            },
            upstream,
            files: pending::file_list(&payload),
            state,
            previous,
            published: false,
        };
        let mut line = Line::new(&src.name, "new");
        line.id = Some(id.clone());
        if self.opts.dry_run {
            let dir = self.cfg.work.join(&id);
            let out = self.ing.import_download(
                &id,
                &dir,
                &download_of(&p),
                payload,
                crate::ingest::Options {
                    dry_run: true,
                    ..Default::default()
                },
            )?;
            return Ok(match out {
                Outcome::DryRun(r) => {
                    line.outcome = Some("dry-run".into());
                    line.summary = Some(r.summary());
                    line.reason = r.held_reason.clone().map(|h| format!("would be held: {h}"));
                    (line, Some(*r))
                }
                Outcome::Rejected(r) => (line.fail(r), None),
                _ => (line, None),
            });
        }
        // The newest download of a source replaces one still held from an earlier run.
        self.supersede_held(&src.name, seq)?;
        crash_point("downloaded");
        let dir = p.write(&self.cfg.work, &payload)?;
        crash_point("pending-written");
        Ok((self.finish(p, &dir, Some(payload), line), None))
    }

    /// A pending download of an earlier run: finish it (or report it still held).
    fn resume(&mut self, dir: &Path) -> Line {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let p = match Pending::load(dir) {
            Ok(p) => p,
            Err(e) => {
                return Line::new(&name, "pending")
                    .fail(format!("{e:#}; move the directory aside to go on"))
            }
        };
        let mut line = Line::new(&p.source, "pending");
        line.id = Some(p.id.clone());
        if let Ok(Some(row)) = self.ing.store.bundle(&p.id) {
            if row.status == "superseded" {
                // Killed between the journal and the removal: finish the removal.
                if let Err(e) = std::fs::remove_dir_all(dir) {
                    tracing::warn!("cannot remove {}: {e}", dir.display());
                }
                line.outcome = Some("superseded".into());
                line.reason = row.reason;
                return line;
            }
        }
        let approve = self.opts.approve.contains(&p.source);
        if !approve {
            // A held download is not read again until it is approved or superseded.
            if let Ok(Some(row)) = self.ing.store.bundle(&p.id) {
                if row.status == "held" {
                    line.outcome = Some("held".into());
                    line.reason = row.reason;
                    return line;
                }
            }
        }
        self.finish(p, dir, None, line)
    }

    /// Publish (when asked and not done yet), save the fetch state, store and export.
    fn finish(
        &mut self,
        mut p: Pending,
        dir: &Path,
        payload: Option<Vec<(String, Vec<u8>)>>,
        mut line: Line,
    ) -> Line {
        let payload = match payload {
            Some(pl) => pl,
            None => match p.read_payload(dir) {
                Ok(pl) => pl,
                Err(e) => return self.reject(&p, dir, format!("{e:#}"), line),
            },
        };
        let src = self.cfg.fetch.sources.iter().find(|s| s.name == p.source);
        if self.cfg.publish && !p.published {
            match src {
                Some(src) => {
                    let published = if self.cfg.fetch.spool.join(&p.id).is_dir() {
                        Ok(())
                    } else {
                        self.ctx
                            .sign_and_publish(src, p.sequence, p.upstream.clone(), None, &payload)
                            .map(|_| ())
                    };
                    match published {
                        Ok(()) => {
                            p.published = true;
                            line.published = Some(p.id.clone());
                            if let Err(e) = p.save_meta(dir) {
                                tracing::warn!("{}: {e:#}", p.id);
                            }
                        }
                        // Stored here all the same; the source is reported as failed.
                        Err(Fail(m)) => {
                            line.failed = true;
                            line.reason = Some(self.redact(&m));
                        }
                    }
                }
                None => tracing::warn!(
                    "{}: source {} is no longer configured; not published",
                    p.id,
                    p.source
                ),
            }
        }
        if let Err(e) = self.announce(&p) {
            return line.fail(format!("{e:#}"));
        }
        crash_point("announced");
        let opts = crate::ingest::Options {
            approve: self.opts.approve.contains(&p.source),
            ..Default::default()
        };
        let out = match self
            .ing
            .import_download(&p.id, dir, &download_of(&p), payload, opts)
        {
            Ok(o) => o,
            Err(e) => return line.fail(format!("{}: {e:#}", p.id)),
        };
        match out {
            Outcome::Done(r) => {
                line.outcome = Some("stored".into());
                line.summary = Some(r.summary());
                self.remove_done(&p.id, dir);
            }
            Outcome::AlreadyDone | Outcome::Heartbeat { .. } => {
                line.outcome = Some("already stored".into());
                self.remove_done(&p.id, dir);
            }
            Outcome::Held(r) => {
                line.outcome = Some("held".into());
                line.reason = Some(r);
            }
            Outcome::Rejected(r) => return self.reject(&p, dir, r, line),
            Outcome::Abandoned => line.outcome = Some("stopped".into()),
            Outcome::DryRun(_) => {}
        }
        line
    }

    /// The fetch state takes the pending download's state unless a later one is recorded.
    fn announce(&self, p: &Pending) -> anyhow::Result<()> {
        let cur = self.ctx.state.load(&p.source)?;
        if cur.last_sequence < p.sequence {
            self.ctx.state.save(&p.source, &p.state)?;
        }
        Ok(())
    }

    /// A download the ingest stages refused (over the limits, unreadable): it goes to
    /// `<state>/failed/<id>/` with a reason, and the fetch state goes back to the version before
    /// (keeping the sequence), so the next run tries again and fails loudly rather than calling
    /// the bad version "unchanged".
    fn reject(&mut self, p: &Pending, dir: &Path, reason: String, line: Line) -> Line {
        let failed = &self.cfg.watch.failed;
        let res = (|| -> anyhow::Result<()> {
            std::fs::create_dir_all(failed)
                .with_context(|| format!("cannot create {}", failed.display()))?;
            let dest = failed.join(&p.id);
            if dest.exists() {
                std::fs::remove_dir_all(&dest)?;
            }
            if dir.exists() {
                std::fs::rename(dir, &dest).with_context(|| {
                    format!("cannot move {} to {}", dir.display(), dest.display())
                })?;
            }
            crate::fsutil::atomic_write(
                &failed.join(format!("{}.reason.txt", p.id)),
                format!("{reason}\n").as_bytes(),
            )?;
            let cur = self.ctx.state.load(&p.source)?;
            let mut back = p.previous.clone();
            back.last_sequence = cur.last_sequence.max(p.sequence);
            self.ctx.state.save(&p.source, &back)
        })();
        let mut line = line.fail(self.redact(&reason));
        line.outcome = Some("rejected".into());
        if let Err(e) = res {
            line.reason = Some(format!(
                "{}; and: {e:#}",
                line.reason.clone().unwrap_or_default()
            ));
        }
        line
    }

    /// Held downloads of `source` older than `seq` are replaced by the new one.
    fn supersede_held(&mut self, source: &str, seq: u64) -> anyhow::Result<()> {
        for dir in pending::list(&self.cfg.work)? {
            let Ok(p) = Pending::load(&dir) else { continue };
            if p.source != source || p.sequence >= seq {
                continue;
            }
            let held = matches!(self.ing.store.bundle(&p.id)?, Some(row) if row.status == "held");
            if held {
                let why = format!("superseded by {}", bundle::bundle_id(source, seq));
                self.ing.store.journal(
                    &p.id,
                    None,
                    None,
                    "superseded",
                    "superseded",
                    Some(&why),
                )?;
                crash_point("superseded");
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
                eprintln!("{}: {why}", p.id);
            }
        }
        Ok(())
    }

    /// The store holds the payload: the download's directory is not needed any more.
    fn remove_done(&self, id: &str, dir: &Path) {
        for d in [dir.to_path_buf(), self.cfg.watch.done.join(id)] {
            if d.exists() {
                if let Err(e) = std::fs::remove_dir_all(&d) {
                    tracing::warn!("cannot remove {}: {e}", d.display());
                }
            }
        }
    }
}

fn download_of(p: &Pending) -> Download {
    Download {
        source: p.source.clone(),
        ruleset: p.ruleset.clone(),
        engine: p.engine.clone(),
        sequence: p.sequence,
        provenance: p.provenance.clone(),
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::New => "new",
        Status::Heartbeat => "heartbeat",
        Status::Unchanged => "unchanged",
        Status::Skipped => "skipped",
        Status::CoolingDown => "cooling_down",
        Status::Failed => "failed",
    }
}
