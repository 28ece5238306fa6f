//! `etferry rules`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this SID
    #[arg(long)]
    pub sid: Option<u32>,
    /// Rules whose text or msg contains TEXT
    #[arg(long)]
    pub grep: Option<String>,
    /// Rules with this status
    #[arg(long)]
    pub status: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry rules` is not available in this build yet")
}
