//! `etferry keygen`: a minisign key pair for signing bundles.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::Global;
use crate::exit::{usage, Exit};
use crate::secret::Secret;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for bundle.key and bundle.pub (default: the -c directory: $ETFERRY_CONFIG,
    /// ./config if it exists, else /etc/etferry)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// File holding the password that encrypts the secret key. Without FILE (on a terminal):
    /// ask for the password twice and write it to OUT/bundle.key.pass (mode 0600)
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "",
          conflicts_with_all = ["unencrypted", "password_env"])]
    pub password_file: Option<String>,
    /// Environment variable holding the password that encrypts the secret key
    #[arg(long, conflicts_with = "unencrypted")]
    pub password_env: Option<String>,
    /// Store the secret key unencrypted (unattended hosts; see docs/deployment.md)
    #[arg(long)]
    pub unencrypted: bool,
    /// As root: give the written files to USER (default: etferry, when that user exists)
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
}

/// `--password-file` without a file: ask on the terminal (twice) and keep the answer beside the
/// key, where fetch.yaml's `signing_key_password_file` will point.
fn ask_password(out: &std::path::Path) -> anyhow::Result<(Secret, PathBuf)> {
    let file = out.join("bundle.key.pass");
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "--password-file without FILE asks for the password, but standard input is not a \
             terminal; write the password to a file (mode 0600) and give it: \
             --password-file {}",
            file.display()
        )));
    }
    if file.exists() {
        return Err(usage(format!(
            "{} already exists; give it as --password-file {}",
            file.display(),
            file.display()
        )));
    }
    loop {
        let a = rpassword::prompt_password("Signing key password: ")?;
        if a.is_empty() {
            eprintln!("  an answer is required");
            continue;
        }
        let b = rpassword::prompt_password("Signing key password (again): ")?;
        if a == b {
            return Ok((Secret::new(a), file));
        }
        eprintln!("  the two answers differ; once more");
    }
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::config::config_dir(g.config.as_deref()));
    let mut asked: Option<PathBuf> = None;
    let password = match (&args.password_file, &args.password_env, args.unencrypted) {
        (Some(f), _, _) if f.is_empty() => {
            let (pw, file) = ask_password(&out)?;
            asked = Some(file);
            Some(pw)
        }
        (Some(f), _, _) => Some(crate::config::read_secret_file(std::path::Path::new(f))?),
        (None, Some(v), _) => Some(crate::config::read_secret_env(v)?),
        (None, None, true) => None,
        (None, None, false) => {
            return Err(usage(
                "give --password-file [FILE] or --password-env VAR to encrypt the secret key, \
                 or --unencrypted for an unattended host (see docs/deployment.md)",
            ))
        }
    };
    let (sk, pk) = crate::bundle::keygen(&out, password.as_ref())?;
    let mut files = vec![sk.clone(), pk.clone()];
    if let (Some(file), Some(pw)) = (&asked, &password) {
        crate::fsutil::atomic_write(file, format!("{}\n", pw.expose()).as_bytes())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
        files.push(file.clone());
    }
    let notes = crate::owner::hand_over(&files, args.owner.as_deref())?;
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
    if let Some(file) = &asked {
        println!(
            "password written to {} (mode 0600): set signing_key_password_file: {} in fetch.yaml",
            file.display(),
            file.display()
        );
    }
    for n in notes {
        println!("{n}");
    }
    println!(
        "copy {} to the air-gapped side's trusted keys",
        pk.display()
    );
    Ok(Exit::Ok)
}
