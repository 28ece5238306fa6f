//! `etferry keygen`: a minisign key pair for signing bundles.

use crate::cli::Global;
use crate::exit::{usage, Exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for bundle.key and bundle.pub
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// File holding the password that encrypts the secret key
    #[arg(long, conflicts_with_all = ["unencrypted", "password_env"])]
    pub password_file: Option<std::path::PathBuf>,
    /// Environment variable holding the password that encrypts the secret key
    #[arg(long, conflicts_with = "unencrypted")]
    pub password_env: Option<String>,
    /// Store the secret key unencrypted (unattended hosts; see docs/dmz-side.md)
    #[arg(long)]
    pub unencrypted: bool,
}

pub fn run(args: Args, _g: &Global) -> anyhow::Result<Exit> {
    let password = match (&args.password_file, &args.password_env, args.unencrypted) {
        (Some(f), _, _) => Some(crate::config::read_secret_file(f)?),
        (None, Some(v), _) => Some(crate::config::read_secret_env(v)?),
        (None, None, true) => None,
        (None, None, false) => {
            return Err(usage(
                "give --password-file FILE or --password-env VAR to encrypt the secret key, \
                 or --unencrypted for an unattended host (see docs/dmz-side.md)",
            ))
        }
    };
    let (sk, pk) = crate::bundle::keygen(&args.out, password.as_ref())?;
    let id = crate::bundle::PublicKey::load(&pk)?.id();
    println!(
        "secret key {} ({}), public key {} (key id {id})",
        sk.display(),
        if password.is_some() {
            "encrypted"
        } else {
            "UNENCRYPTED: protect the file"
        },
        pk.display()
    );
    println!(
        "copy {} to the air-gapped side's trusted keys",
        pk.display()
    );
    Ok(Exit::Ok)
}
