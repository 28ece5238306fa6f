//! `etferry verify`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trusted public key (minisign format); repeatable
    #[arg(long = "key", required = true)]
    pub keys: Vec<std::path::PathBuf>,
    /// Bundle directories
    #[arg(required = true)]
    pub bundles: Vec<std::path::PathBuf>,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry verify` is not available in this build yet")
}
