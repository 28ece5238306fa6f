//! `etferry ingest`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Release bundles held by the sanity gate
    #[arg(long)]
    pub approve: bool,
    /// Show what would change and be sent, without storing or sending
    #[arg(long)]
    pub dry_run: bool,
    /// Bundle directories (or archives)
    #[arg(required = true)]
    pub bundles: Vec<std::path::PathBuf>,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry ingest` is not available in this build yet")
}
