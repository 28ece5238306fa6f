//! `etferry init`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the written config files
    #[arg(long, default_value = "config")]
    pub out: std::path::PathBuf,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry init` is not available in this build yet")
}
