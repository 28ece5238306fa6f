//! `etferry report`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundle id (default: the last one)
    pub bundle: Option<String>,
    /// The last ingested bundle
    #[arg(long)]
    pub last: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry report` is not available in this build yet")
}
