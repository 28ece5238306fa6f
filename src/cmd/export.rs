//! `etferry export`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sink name (threatq)
    pub sink: String,
    /// Send everything again (a new ThreatQ instance)
    #[arg(long)]
    pub resend_all: bool,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry export` is not available in this build yet")
}
