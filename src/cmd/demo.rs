//! `etferry demo`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Work directory (default: the repository spool/)
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry demo` is not available in this build yet")
}
