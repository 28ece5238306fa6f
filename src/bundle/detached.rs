//! Detached minisign signatures of single files (release `SHA256SUMS`): `FILE.minisig` beside
//! `FILE`, in the format `minisign -V` checks, made with the same key that signs bundles so the
//! air-gapped side checks what was carried with the key it already trusts.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::keys::key_id;
use super::{PublicKey, SigningKey};

/// A signature file is a few hundred bytes; anything much larger is not one.
const MAX_SIG_BYTES: u64 = 4096;
/// What `etferry sign` will hash: release checksum lists and archives, not disks.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// The signature path for `file`: `FILE.minisig`.
pub fn signature_path(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".minisig");
    PathBuf::from(p)
}

fn read_capped(path: &Path, cap: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if !meta.file_type().is_file() {
        anyhow::bail!("{what} {} is not a regular file", path.display());
    }
    if meta.len() > cap {
        anyhow::bail!(
            "{what} {} is {} bytes, more than the {cap} allowed",
            path.display(),
            meta.len()
        );
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(cap + 1).read_to_end(&mut data))
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if data.len() as u64 > cap {
        anyhow::bail!("{what} {} grew past {cap} bytes while read", path.display());
    }
    Ok(data)
}

/// Sign `file` with `key`; writes `FILE.minisig` atomically and returns its path.
pub fn sign_file(key: &SigningKey, file: &Path) -> anyhow::Result<PathBuf> {
    let data = read_capped(file, MAX_FILE_BYTES, "file")?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let comment = format!(
        "etferry detached signature of {name}, {}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    );
    let sig = key.sign(&data, &comment)?;
    let out = signature_path(file);
    crate::fsutil::atomic_write(&out, sig.as_bytes())?;
    Ok(out)
}

/// Check `FILE.minisig` against `keys`; returns the signer's key id and the trusted comment.
pub fn verify_file(file: &Path, keys: &[PublicKey]) -> anyhow::Result<(String, String)> {
    let sig_path = signature_path(file);
    let sig_bytes = read_capped(&sig_path, MAX_SIG_BYTES, "signature")?;
    let sig_text = String::from_utf8(sig_bytes)
        .map_err(|_| anyhow::anyhow!("signature {} is not text", sig_path.display()))?;
    let sig = minisign::SignatureBox::from_string(&sig_text)
        .map_err(|e| anyhow::anyhow!("signature {}: {e}", sig_path.display()))?;
    let signer = key_id(sig.keynum());
    let key = keys
        .iter()
        .find(|k| k.keynum() == sig.keynum())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} is signed by key {signer}, which is not among the trusted keys",
                file.display()
            )
        })?;
    let data = read_capped(file, MAX_FILE_BYTES, "file")?;
    minisign::verify(
        key.inner(),
        &sig,
        std::io::Cursor::new(&data),
        true,
        false,
        false,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{}: signature does not verify with key {signer}: {e}",
            file.display()
        )
    })?;
    let comment = sig.trusted_comment().unwrap_or_default();
    Ok((signer, comment))
}
