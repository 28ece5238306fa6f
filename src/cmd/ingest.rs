//! `etferry ingest`: process bundles once (for cron), or release held ones with `--approve`.
//! A folder (the inbox, the folder `carry.sh` fills) is taken entry by entry; with no path the
//! configured inbox is processed once.

use std::path::PathBuf;

use crate::cli::Global;
use crate::exit::{usage, Exit};
use crate::ingest::inbox::{self, Kind};
use crate::ingest::{Ingestor, Options, Outcome, WatchConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release bundles held by the sanity gate
    #[arg(long)]
    pub approve: bool,
    /// Show what would change and be sent, without storing or sending
    #[arg(long)]
    pub dry_run: bool,
    /// Bundle directories, bare archive files (with `accept_unsigned_archives: true`), or folders
    /// holding them; none: the configured inbox, once (the cron form)
    pub bundles: Vec<PathBuf>,
}

/// The bundles and archives to process, in order. Every path is checked before anything is
/// processed: one that is neither a bundle, an archive nor a folder of them stops the run with
/// exit 2 and nothing moved.
fn expand(args: &Args, cfg: &WatchConfig) -> anyhow::Result<Vec<PathBuf>> {
    if args.bundles.is_empty() {
        if args.approve {
            return Err(usage(
                "--approve needs the held bundles: etferry ingest --approve BUNDLE_ID…",
            ));
        }
        if !cfg.inbox.exists() {
            return Ok(Vec::new());
        }
        // The inbox itself (cron): take what is ready, never refuse the run for what is not
        // (a copy still in progress, a stray folder); say what was left.
        let (entries, others) = inbox::entries(&cfg.inbox)
            .map_err(|e| anyhow::anyhow!("cannot read inbox {}: {e}", cfg.inbox.display()))?;
        if others > 0 {
            eprintln!(
                "{}: left {others} entr{} that {} no bundle or archive (yet)",
                cfg.inbox.display(),
                if others == 1 { "y" } else { "ies" },
                if others == 1 { "is" } else { "are" }
            );
        }
        return Ok(entries);
    }
    let mut out = Vec::new();
    for t in &args.bundles {
        match inbox::classify(t) {
            Kind::Bundle | Kind::Archive | Kind::Missing => out.push(t.clone()),
            Kind::Folder(entries) => {
                tracing::info!("{}: {} bundle(s) or archive(s)", t.display(), entries.len());
                out.extend(entries);
            }
            Kind::Refused(why) => return Err(usage(why)),
        }
    }
    Ok(out)
}

/// Run every bundle through the pipeline and exit with the worst outcome.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    let path = crate::config::locate(g.config.as_deref(), "watch.yaml")?;
    let cfg = WatchConfig::load(&path)?;
    // A broken key or password file fails every run, also one with nothing to do (cron).
    cfg.check_files()?;
    let todo = expand(&args, &cfg)?;
    if todo.is_empty() {
        let what = match &args.bundles[..] {
            [] => cfg.inbox.display().to_string(),
            paths => paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        println!("nothing to do: no bundles or archives in {what}");
        return Ok(Exit::Ok);
    }
    let inbox = std::fs::canonicalize(&cfg.inbox).ok();
    let cfg_inbox = cfg.inbox.clone();
    let threatq = cfg.sinks.threatq.clone();
    let policy = cfg.export_policy();
    let mut ing = Ingestor::open(cfg)?;
    let mut exit = Exit::Ok;
    for b in &todo {
        // Bundles taken from the inbox leave it; bundles elsewhere are left where they are.
        let in_inbox = match (&inbox, std::fs::canonicalize(b)) {
            (Some(i), Ok(p)) => p.starts_with(i),
            _ => false,
        };
        let opts = Options {
            approve: args.approve,
            dry_run: args.dry_run,
            remove_source: in_inbox,
        };
        let outcome = ing.process(b, opts)?;
        print_outcome(&outcome);
        if let (Outcome::DryRun(r), Some(tq)) = (&outcome, &threatq) {
            crate::cmd::export::print_dry_run_bundle(tq, &policy, r);
        }
        exit = exit.worst(outcome.exit());
        // A folder of bundles inside the inbox goes once it is empty (remove_dir refuses
        // anything else), as `watch` does.
        if in_inbox {
            if let (Some(parent), Ok(inbox)) = (b.parent(), std::fs::canonicalize(&cfg_inbox)) {
                if std::fs::canonicalize(parent).is_ok_and(|p| p != inbox && p.starts_with(&inbox))
                {
                    let _ = std::fs::remove_dir(parent);
                }
            }
        }
    }
    Ok(exit.worst(ing.export_exit))
}

/// The short human summary of one bundle (JSON reports are in the store: `etferry report`).
/// Names in it come from the medium: every line is printed with control characters escaped.
pub fn print_outcome(o: &Outcome) {
    let say = |line: String| println!("{}", crate::safe_name::escape(&line));
    match o {
        Outcome::Done(r) | Outcome::DryRun(r) => {
            say(r.summary());
            if let Some(h) = &r.held_reason {
                say(format!("  would be held: {h}"));
            }
            for e in r.errors.iter().take(20) {
                say(format!("  error: {e}"));
            }
            if r.errors.len() > 20 {
                say(format!(
                    "  … {} more errors (etferry report --json)",
                    r.errors.len() - 20
                ));
            }
            for d in r.duplicates.iter().take(20) {
                say(format!(
                    "  duplicate {}:{}:{} at {} dropped (a higher rev is kept)",
                    d.gid, d.sid, d.rev, d.file
                ));
            }
        }
        Outcome::Heartbeat { source } => {
            say(format!("heartbeat from {source}: no upstream change"))
        }
        Outcome::AlreadyDone => {}
        Outcome::Rejected(r) => say(format!("REJECTED: {r}")),
        Outcome::Held(r) => say(format!("HELD: {r}")),
        Outcome::Abandoned => say("stopped; the bundle will be redone on the next run".to_string()),
    }
}
