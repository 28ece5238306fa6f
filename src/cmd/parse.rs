//! `etferry parse`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rule dialect (auto-detected by default)
    #[arg(long, default_value = "auto")]
    pub dialect: String,
    /// Print one JSON object on stdout
    #[arg(long)]
    pub json: bool,
    /// List every rule error
    #[arg(long)]
    pub errors: bool,
    /// .rules files, directories, .tar.gz or .zip archives
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry parse` is not available in this build yet")
}
