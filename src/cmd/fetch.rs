//! `etferry fetch`: mirror the configured ET rulesets into signed bundles (DMZ side).

use crate::cli::Global;
use crate::exit::Exit;
use crate::fetch::{self, RunOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Ignore min_interval and check every source now
    #[arg(long)]
    pub now: bool,
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    let path = crate::config::locate(g.config.as_deref(), "fetch.yaml")?;
    let report = fetch::run_config(&path, RunOptions { now: args.now })?;
    print!("{}", report.summary());
    // A source in cool-down was not fetched: the operator must see it (exit 1, with the time).
    Ok(if report.failed > 0 || report.cooling_down > 0 {
        Exit::Error
    } else {
        Exit::Ok
    })
}
