//! `etferry ingest`: process bundles once (for cron), or release held ones with `--approve`.

use crate::cli::Global;
use crate::exit::Exit;
use crate::ingest::{Ingestor, Options, Outcome, WatchConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release bundles held by the sanity gate
    #[arg(long)]
    pub approve: bool,
    /// Show what would change and be sent, without storing or sending
    #[arg(long)]
    pub dry_run: bool,
    /// Bundle directories, or bare archive files (with `accept_unsigned_archives: true`)
    #[arg(required = true)]
    pub bundles: Vec<std::path::PathBuf>,
}

/// Run every bundle through the pipeline and exit with the worst outcome.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    let path = crate::config::locate(g.config.as_deref(), "watch.yaml")?;
    let cfg = WatchConfig::load(&path)?;
    let inbox = std::fs::canonicalize(&cfg.inbox).ok();
    let threatq = cfg.sinks.threatq.clone();
    let policy = cfg.export_policy();
    let mut ing = Ingestor::open(cfg)?;
    let mut exit = Exit::Ok;
    for b in &args.bundles {
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
