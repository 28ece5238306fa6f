//! `etferry sign`: a detached minisign signature (`FILE.minisig`) with the bundle key, for release
//! checksum lists and anything else carried with the bundles; `etferry verify --key PUB FILE` and
//! `minisign -V -p bundle.pub -m FILE` check it.

use crate::cli::Global;
use crate::exit::{usage, Exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Secret key (etferry keygen's bundle.key)
    #[arg(long)]
    pub key: std::path::PathBuf,
    /// File holding the key's password (an encrypted key)
    #[arg(long)]
    pub password_file: Option<std::path::PathBuf>,
    /// Files to sign; each gets FILE.minisig beside it
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
}

pub fn run(args: Args, _g: &Global) -> anyhow::Result<Exit> {
    let password = match &args.password_file {
        Some(f) => Some(crate::config::read_secret_file(f)?),
        None => None,
    };
    let key = crate::bundle::SigningKey::load(&args.key, password.as_ref())?;
    for f in &args.files {
        if f.is_dir() {
            return Err(usage(format!(
                "{} is a directory; sign files (bundles are signed by fetch)",
                f.display()
            )));
        }
        let sig = crate::bundle::sign_file(&key, f)?;
        println!("signed {} -> {}", f.display(), sig.display());
    }
    Ok(Exit::Ok)
}
