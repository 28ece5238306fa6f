//! `etferry keygen`: not built yet (see its issue).

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for bundle.key and bundle.pub
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// File holding the password that encrypts the secret key
    #[arg(long, conflicts_with = "unencrypted")]
    pub password_file: Option<std::path::PathBuf>,
    /// Store the secret key unencrypted (unattended hosts; see README)
    #[arg(long)]
    pub unencrypted: bool,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<Exit> {
    anyhow::bail!("`etferry keygen` is not available in this build yet")
}
