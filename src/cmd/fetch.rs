//! `etferry fetch`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Ignore min_interval and check every source now
    #[arg(long)]
    pub now: bool,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry fetch` is not available in this build yet")
}
