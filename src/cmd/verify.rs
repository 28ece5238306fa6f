//! `etferry verify`: check bundles (signature, manifest, sizes, sha256, expiry); one line each.

use crate::cli::Global;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trusted public key (minisign format); repeatable
    #[arg(long = "key", required = true)]
    pub keys: Vec<std::path::PathBuf>,
    /// Bundle directories, or files signed with `etferry sign` (FILE.minisig beside each)
    #[arg(required = true)]
    pub bundles: Vec<std::path::PathBuf>,
}

/// The same checks `ingest` applies (links never followed, caps, dates), one line per bundle.
pub fn run(args: Args, _g: &Global) -> anyhow::Result<Exit> {
    let keys = args
        .keys
        .iter()
        .map(|k| crate::bundle::PublicKey::load(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let now = chrono::Utc::now();
    let mut exit = Exit::Ok;
    for dir in &args.bundles {
        // A plain file is a detached signature check (release SHA256SUMS); a bundle is a folder.
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_file()) {
            match crate::bundle::verify_file(dir, &keys) {
                Ok((key, comment)) => {
                    println!("OK   {}: signed by key {key} ({comment})", dir.display())
                }
                Err(e) => {
                    println!("FAIL {}: {e:#}", dir.display());
                    exit = Exit::Rejected;
                }
            }
            continue;
        }
        match crate::bundle::verify(dir, &keys, now) {
            Ok(v) => {
                let m = &v.manifest;
                let what = if m.is_heartbeat() {
                    "heartbeat".to_string()
                } else {
                    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
                    format!("{} files, {bytes} bytes", m.files.len())
                };
                println!(
                    "OK   {}: {} sequence {}, {what}, key {}, expires {}",
                    crate::safe_name::path(dir),
                    m.source.name,
                    m.sequence,
                    v.key_id,
                    m.expires_at.to_rfc3339()
                );
            }
            Err(e) => {
                println!(
                    "FAIL {}: {}",
                    crate::safe_name::path(dir),
                    crate::safe_name::escape(&e.to_string())
                );
                exit = Exit::Rejected;
            }
        }
    }
    Ok(exit)
}
