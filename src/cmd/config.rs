//! `etferry config`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// check
    pub action: String,
    /// Config file
    pub file: Option<std::path::PathBuf>,
    /// Also test connections
    #[arg(long)]
    pub online: bool,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry config` is not available in this build yet")
}
