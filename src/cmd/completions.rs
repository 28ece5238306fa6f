//! `etferry completions SHELL` and `etferry man`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell
    pub shell: String,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry completions` is not available in this build yet")
}

pub fn run_man(_args: ManArgs, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry man` is not available in this build yet")
}
