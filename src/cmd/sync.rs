//! `etferry sync`: download, gate, parse, diff, store and export in one process, from one
//! etferry.yaml (the connected ThreatQ host; the original connector's cron job).

use crate::cli::Global;
use crate::exit::Exit;
use crate::sync::{self, config::FILE_NAME, SyncConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Ignore min_interval and check every source now
    #[arg(long)]
    pub now: bool,
    /// Download and show what would change and be sent, without storing or sending anything
    #[arg(long)]
    pub dry_run: bool,
    /// Release the download of SOURCE held by the sanity gate (repeatable)
    #[arg(long, value_name = "SOURCE")]
    pub approve: Vec<String>,
}

/// Exit 0 done, 1 a source failed, 3 a sink failed (changes pending), 5 a download held.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    let path = crate::config::locate(g.config.as_deref(), FILE_NAME)?;
    let cfg = SyncConfig::load(&path)?;
    let opts = sync::Options {
        now: args.now,
        dry_run: args.dry_run,
        approve: args.approve,
    };
    let report = sync::run(&cfg, &opts)?;
    print!("{}", report.summary());
    if let Some(tq) = &cfg.watch.sinks.threatq {
        let policy = cfg.watch.export_policy();
        for r in &report.dry_run_reports {
            crate::cmd::export::print_dry_run_bundle(tq, &policy, r);
        }
    }
    Ok(report.exit_status)
}
