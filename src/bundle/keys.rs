//! Key handling in minisign's own file formats.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit::usage;
use crate::secret::Secret;

/// A secret key ready to sign (decrypted in memory).
pub struct SigningKey {
    sk: minisign::SecretKey,
    pk: Option<minisign::PublicKey>,
    path: PathBuf,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.path.display())
    }
}

impl SigningKey {
    /// Load `path`. An encrypted key needs `password`; we never prompt (fetch runs unattended).
    /// The public key beside it (`*.pub`), if present, is used to self-check every signature.
    pub fn load(path: &Path, password: Option<&Secret>) -> anyhow::Result<SigningKey> {
        crate::config::warn_if_world_readable(path);
        // A missing or unreadable key is a setup problem (exit 2), not a failed run.
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read signing key {}: {e}", path.display())))?;
        let sk = match password {
            None => minisign::SecretKey::from_unencrypted_box(text.into()).map_err(|e| {
                usage(format!(
                    "signing key {}: {e}; an encrypted key needs signing_key_password_file",
                    path.display()
                ))
            })?,
            Some(pw) => {
                let sk_box = minisign::SecretKeyBox::from_string(&text)
                    .map_err(|e| usage(format!("signing key {}: {e}", path.display())))?;
                match minisign::SecretKey::from_box(sk_box, Some(pw.expose().to_string())) {
                    Ok(sk) => sk,
                    Err(e) if e.to_string().contains("not encrypted") => {
                        minisign::SecretKey::from_unencrypted_box(text.into())
                            .map_err(|e| usage(format!("signing key {}: {e}", path.display())))?
                    }
                    Err(e) => return Err(usage(format!("signing key {}: {e}", path.display()))),
                }
            }
        };
        let pub_path = path.with_extension("pub");
        let pk = if pub_path.exists() {
            Some(PublicKey::load(&pub_path)?.pk)
        } else {
            None
        };
        Ok(SigningKey {
            sk,
            pk,
            path: path.to_path_buf(),
        })
    }

    /// Sign `data`; the trusted comment is covered by the signature.
    pub(crate) fn sign(&self, data: &[u8], trusted_comment: &str) -> anyhow::Result<String> {
        let sig = minisign::sign(
            self.pk.as_ref(),
            &self.sk,
            std::io::Cursor::new(data),
            Some(trusted_comment),
            Some("signature from etferry secret key"),
        )
        .map_err(|e| anyhow::anyhow!("signing with {} failed: {e}", self.path.display()))?;
        Ok(sig.into_string())
    }
}

/// A trusted public key.
#[derive(Clone)]
pub struct PublicKey {
    pk: minisign::PublicKey,
    path: PathBuf,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.id(), self.path.display())
    }
}

impl PublicKey {
    /// Load a minisign public key file (`untrusted comment:` line + base64), or a bare base64 key.
    pub fn load(path: &Path) -> anyhow::Result<PublicKey> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read public key {}: {e}", path.display())))?;
        let trimmed = text.trim();
        let pk = if trimmed.starts_with("untrusted comment:") {
            minisign::PublicKeyBox::from_string(trimmed).and_then(|b| b.into_public_key())
        } else {
            minisign::PublicKey::from_base64(trimmed)
        }
        .map_err(|e| usage(format!("public key {}: {e}", path.display())))?;
        Ok(PublicKey {
            pk,
            path: path.to_path_buf(),
        })
    }

    /// The key id as minisign prints it (16 hex digits).
    pub fn id(&self) -> String {
        key_id(self.pk.keynum())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn inner(&self) -> &minisign::PublicKey {
        &self.pk
    }

    pub(crate) fn keynum(&self) -> &[u8] {
        self.pk.keynum()
    }
}

/// minisign prints key ids as the little-endian u64 in upper-case hex.
pub(crate) fn key_id(keynum: &[u8]) -> String {
    let mut b = [0u8; 8];
    let n = keynum.len().min(8);
    b[..n].copy_from_slice(&keynum[..n]);
    format!("{:016X}", u64::from_le_bytes(b))
}

/// Write a new key pair to `out_dir/bundle.key` (mode 0600) and `out_dir/bundle.pub`.
/// Refuses to overwrite an existing key. Returns the two paths.
pub fn keygen(out_dir: &Path, password: Option<&Secret>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let sk_path = out_dir.join("bundle.key");
    let pk_path = out_dir.join("bundle.pub");
    for p in [&sk_path, &pk_path] {
        if p.exists() {
            return Err(usage(format!(
                "{} already exists; move it away first (etferry never overwrites a key)",
                p.display()
            )));
        }
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let kp = match password {
        Some(pw) => minisign::KeyPair::generate_encrypted_keypair(Some(pw.expose().to_string())),
        None => minisign::KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|e| anyhow::anyhow!("key generation failed: {e}"))?;
    let id = key_id(kp.pk.keynum());
    let sk_text = kp
        .sk
        .to_box(Some(&format!("etferry secret key {id}")))
        .map_err(|e| anyhow::anyhow!("cannot encode secret key: {e}"))?
        .into_string();
    let pk_text = kp
        .pk
        .to_box()
        .map_err(|e| anyhow::anyhow!("cannot encode public key: {e}"))?
        .into_string();
    write_private(&sk_path, sk_text.as_bytes())?;
    crate::fsutil::atomic_write(&pk_path, pk_text.as_bytes())?;
    Ok((sk_path, pk_path))
}

/// Create a file readable only by its owner.
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
