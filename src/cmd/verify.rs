//! `etferry verify`: check bundles (signature, manifest, sizes, sha256, expiry); one line each.

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

pub fn run(args: Args, _g: &Global) -> anyhow::Result<Exit> {
    let keys = args
        .keys
        .iter()
        .map(|k| crate::bundle::PublicKey::load(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let now = chrono::Utc::now();
    let mut exit = Exit::Ok;
    for dir in &args.bundles {
        match crate::bundle::verify(dir, &keys, now) {
            Ok(v) => {
                let m = &v.manifest;
                let what = if m.is_heartbeat() {
                    "heartbeat".to_string()
                } else {
                    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
                    format!(
                        "{}, {}",
                        crate::human::count(m.files.len() as u64, "file"),
                        crate::human::count(bytes, "byte")
                    )
                };
                println!(
                    "OK   {}: {} sequence {}, {what}, key {}, expires {}",
                    dir.display(),
                    m.source.name,
                    m.sequence,
                    v.key_id,
                    crate::human::time(&m.expires_at)
                );
            }
            Err(e) => {
                println!("FAIL {}: {e}", dir.display());
                exit = Exit::Rejected;
            }
        }
    }
    Ok(exit)
}
