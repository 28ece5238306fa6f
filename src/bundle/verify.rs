//! Bundle verification: trusted signature, manifest schema, trusted comment, expiry, and every
//! payload file's size and sha256. Payload bytes are returned from the same read that was hashed,
//! so nothing can change between the check and the use.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::keys::key_id;
use super::{safe_relative_path, trusted_comment, FileEntry, Manifest, PublicKey, FORMAT};
use super::{MANIFEST, SIGNATURE};

/// Why a bundle was refused. Every message names the bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{bundle}: not a bundle yet: {what} is missing")]
    Incomplete { bundle: String, what: String },
    #[error("{bundle}: signature file is malformed or truncated: {reason}")]
    BadSignatureFile { bundle: String, reason: String },
    #[error("{bundle}: signed by key {key_id}, which is not a trusted key (trusted: {trusted})")]
    UntrustedKey {
        bundle: String,
        key_id: String,
        trusted: String,
    },
    #[error("{bundle}: signature does not verify with trusted key {key_id}: the manifest was changed or the signature is corrupt")]
    BadSignature { bundle: String, key_id: String },
    #[error("{bundle}: manifest is invalid: {reason}")]
    BadManifest { bundle: String, reason: String },
    #[error("{bundle}: expired at {} (now {}); ask the DMZ side for a fresh bundle", crate::human::time(.expires_at), crate::human::time(.now))]
    Expired {
        bundle: String,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("{bundle}: file {path}: {reason}")]
    BadFile {
        bundle: String,
        path: String,
        reason: String,
    },
    #[error("{bundle}: cannot read {path}: {source}")]
    Io {
        bundle: String,
        path: String,
        source: std::io::Error,
    },
}

impl BundleError {
    /// True when the bundle may simply not have finished arriving (the watcher waits and retries).
    pub fn is_incomplete(&self) -> bool {
        matches!(self, BundleError::Incomplete { .. })
    }
}

/// Limits and the clock for [`verify_with`].
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub now: DateTime<Utc>,
    /// Upper bound on the payload held in memory.
    pub max_total_size: u64,
    /// Refuse bundles whose `expires_at` has passed.
    pub check_expiry: bool,
}

impl VerifyOptions {
    pub fn at(now: DateTime<Utc>) -> VerifyOptions {
        VerifyOptions {
            now,
            max_total_size: 1 << 30,
            check_expiry: true,
        }
    }
}

/// A bundle that passed every check, with its payload in memory.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Id of the trusted key that signed it.
    pub key_id: String,
    /// The exact manifest bytes that were verified (kept for audit copies).
    pub manifest_bytes: Vec<u8>,
    /// Payload files in manifest order, with their verified bytes.
    pub payload: Vec<(FileEntry, Vec<u8>)>,
}

/// Verify `dir` against `trusted` keys at time `now`.
pub fn verify(
    dir: &Path,
    trusted: &[PublicKey],
    now: DateTime<Utc>,
) -> Result<VerifiedBundle, BundleError> {
    verify_with(dir, trusted, &VerifyOptions::at(now))
}

/// Verify with explicit options.
pub fn verify_with(
    dir: &Path,
    trusted: &[PublicKey],
    opts: &VerifyOptions,
) -> Result<VerifiedBundle, BundleError> {
    let bundle = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let io_err = |path: &str, source: std::io::Error| BundleError::Io {
        bundle: bundle.clone(),
        path: path.to_string(),
        source,
    };

    let manifest_bytes = read_limited(&dir.join(MANIFEST), 16 << 20).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BundleError::Incomplete {
                bundle: bundle.clone(),
                what: MANIFEST.to_string(),
            }
        } else {
            io_err(MANIFEST, e)
        }
    })?;
    let sig_text = match fs::read_to_string(dir.join(SIGNATURE)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BundleError::Incomplete {
                bundle,
                what: SIGNATURE.to_string(),
            })
        }
        Err(e) => return Err(io_err(SIGNATURE, e)),
    };
    let sig = minisign::SignatureBox::from_string(&sig_text).map_err(|e| {
        BundleError::BadSignatureFile {
            bundle: bundle.clone(),
            reason: e.to_string(),
        }
    })?;
    let signer = key_id(sig.keynum());
    let Some(key) = trusted.iter().find(|k| k.keynum() == sig.keynum()) else {
        return Err(BundleError::UntrustedKey {
            bundle,
            key_id: signer,
            trusted: trusted
                .iter()
                .map(|k| k.id())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    // A signature without a trusted comment would not bind the bundle id and sequence.
    let comment = sig
        .trusted_comment()
        .map_err(|e| BundleError::BadSignatureFile {
            bundle: bundle.clone(),
            reason: format!("no trusted comment: {e}"),
        })?;
    minisign::verify(
        key.inner(),
        &sig,
        std::io::Cursor::new(&manifest_bytes),
        true,
        false,
        false,
    )
    .map_err(|_| BundleError::BadSignature {
        bundle: bundle.clone(),
        key_id: signer.clone(),
    })?;

    let bad = |reason: String| BundleError::BadManifest {
        bundle: bundle.clone(),
        reason,
    };
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| bad(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "format {:?} is not {FORMAT:?}",
            manifest.format
        )));
    }
    if manifest.bundle_id != super::bundle_id(&manifest.source.name, manifest.sequence) {
        return Err(bad(format!(
            "bundle_id {} does not match source {} and sequence {}",
            manifest.bundle_id, manifest.source.name, manifest.sequence
        )));
    }
    let expected_comment = trusted_comment(&manifest.bundle_id, manifest.sequence);
    if comment != expected_comment {
        return Err(bad(format!(
            "signed trusted comment {comment:?} does not match the manifest ({expected_comment:?})"
        )));
    }
    if manifest.is_heartbeat() != manifest.files.is_empty() {
        return Err(bad(
            "a heartbeat (unchanged_since) carries no files, and only a heartbeat may have none"
                .to_string(),
        ));
    }
    if opts.check_expiry && opts.now > manifest.expires_at {
        return Err(BundleError::Expired {
            bundle,
            expires_at: manifest.expires_at,
            now: opts.now,
        });
    }

    let declared: u64 = manifest.files.iter().map(|f| f.size).sum();
    if declared > opts.max_total_size {
        return Err(bad(format!(
            "payload of {declared} bytes is over the limit of {} bytes",
            opts.max_total_size
        )));
    }
    let mut payload = Vec::with_capacity(manifest.files.len());
    for entry in &manifest.files {
        let bad_file = |reason: String| BundleError::BadFile {
            bundle: bundle.clone(),
            path: entry.path.clone(),
            reason,
        };
        if !safe_relative_path(&entry.path) {
            return Err(bad_file("path is not a safe relative path".to_string()));
        }
        if payload
            .iter()
            .any(|(e, _): &(FileEntry, Vec<u8>)| e.path == entry.path)
        {
            return Err(bad_file("listed twice".to_string()));
        }
        let path = dir.join(&entry.path);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BundleError::Incomplete {
                    bundle: bundle.clone(),
                    what: entry.path.clone(),
                })
            }
            Err(e) => return Err(io_err(&entry.path, e)),
        };
        if !meta.file_type().is_file() {
            return Err(bad_file("is not a regular file".to_string()));
        }
        let data = read_limited(&path, entry.size.saturating_add(1))
            .map_err(|e| io_err(&entry.path, e))?;
        if data.len() as u64 != entry.size {
            return Err(bad_file(format!(
                "size is {} bytes, the manifest says {}",
                data.len(),
                entry.size
            )));
        }
        let sha = hex::encode(Sha256::digest(&data));
        if !sha.eq_ignore_ascii_case(&entry.sha256) {
            return Err(bad_file(format!(
                "sha256 is {sha}, the manifest says {}",
                entry.sha256
            )));
        }
        payload.push((entry.clone(), data));
    }
    Ok(VerifiedBundle {
        dir: dir.to_path_buf(),
        manifest,
        key_id: signer,
        manifest_bytes,
        payload,
    })
}

/// Read at most `limit` bytes (a file that is larger shows up as a size mismatch).
fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let f = fs::File::open(path)?;
    let mut data = Vec::new();
    f.take(limit).read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use crate::secret::Secret;

    fn source() -> SourceInfo {
        SourceInfo {
            name: "et-open-suricata-5.0".into(),
            ruleset: "et-open".into(),
            engine: Some("suricata-5.0".into()),
            url: "https://rules.emergingthreats.net/open/suricata-5.0/emerging.rules.tar.gz".into(),
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        spool: PathBuf,
        key: SigningKey,
        pk: PublicKey,
    }

    fn fixture(password: Option<&Secret>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let (skp, pkp) = keygen(&keys, password).unwrap();
        Fixture {
            spool: dir.path().join("outbox"),
            key: SigningKey::load(&skp, password).unwrap(),
            pk: PublicKey::load(&pkp).unwrap(),
            _dir: dir,
        }
    }

    fn publish_one(f: &Fixture, seq: u64) -> PathBuf {
        let m = Manifest::new(
            source(),
            seq,
            Utc::now(),
            std::time::Duration::from_secs(14 * 86400),
        );
        publish(
            &f.spool,
            m,
            &[
                ("emerging.rules.tar.gz".into(), b"archive bytes".to_vec()),
                ("extra/version.txt".into(), b"11249\n".to_vec()),
            ],
            &f.key,
        )
        .unwrap()
    }

    #[test]
    fn published_bundle_verifies_and_returns_payload() {
        let f = fixture(None);
        let dir = publish_one(&f, 7);
        assert!(dir.ends_with("et-open-suricata-5.0-00000007"));
        let v = verify(&dir, std::slice::from_ref(&f.pk), Utc::now()).unwrap();
        assert_eq!(v.manifest.sequence, 7);
        assert_eq!(v.payload.len(), 2);
        assert_eq!(v.payload[1].1, b"11249\n");
        assert_eq!(v.key_id, f.pk.id());
    }

    #[test]
    fn encrypted_key_signs_with_password_and_refuses_without() {
        let pw = Secret::new("correct horse");
        let f = fixture(Some(&pw));
        let dir = publish_one(&f, 1);
        verify(&dir, std::slice::from_ref(&f.pk), Utc::now()).unwrap();
        let skp = f.spool.parent().unwrap().join("keys/bundle.key");
        let err = SigningKey::load(&skp, None).unwrap_err().to_string();
        assert!(err.contains("signing_key_password_file"), "{err}");
        assert!(SigningKey::load(&skp, Some(&Secret::new("wrong"))).is_err());
    }

    #[test]
    fn tampering_is_detected() {
        let f = fixture(None);
        let keys = std::slice::from_ref(&f.pk);
        // One changed payload byte.
        let dir = publish_one(&f, 1);
        fs::write(dir.join("emerging.rules.tar.gz"), b"archive bytez").unwrap();
        let e = verify(&dir, keys, Utc::now()).unwrap_err();
        assert!(matches!(e, BundleError::BadFile { .. }), "{e}");
        assert!(e.to_string().contains("sha256"), "{e}");
        // A changed manifest.
        let dir = publish_one(&f, 2);
        let m = fs::read_to_string(dir.join(MANIFEST)).unwrap();
        fs::write(
            dir.join(MANIFEST),
            m.replace("\"sequence\": 2", "\"sequence\": 3"),
        )
        .unwrap();
        let e = verify(&dir, keys, Utc::now()).unwrap_err();
        assert!(matches!(e, BundleError::BadSignature { .. }), "{e}");
        // A truncated signature.
        let dir = publish_one(&f, 3);
        let s = fs::read_to_string(dir.join(SIGNATURE)).unwrap();
        fs::write(dir.join(SIGNATURE), &s[..s.len() / 2]).unwrap();
        let e = verify(&dir, keys, Utc::now()).unwrap_err();
        assert!(
            matches!(
                e,
                BundleError::BadSignatureFile { .. } | BundleError::BadSignature { .. }
            ),
            "{e}"
        );
        // A payload file that grew.
        let dir = publish_one(&f, 4);
        fs::write(dir.join("extra/version.txt"), b"11249\nmore").unwrap();
        let e = verify(&dir, keys, Utc::now()).unwrap_err();
        assert!(e.to_string().contains("size"), "{e}");
    }

    #[test]
    fn wrong_key_and_expiry_are_refused() {
        let f = fixture(None);
        let other = fixture(None);
        let dir = publish_one(&f, 1);
        let e = verify(&dir, std::slice::from_ref(&other.pk), Utc::now()).unwrap_err();
        assert!(matches!(e, BundleError::UntrustedKey { .. }), "{e}");
        assert!(e.to_string().contains(&f.pk.id()), "{e}");
        let later = Utc::now() + chrono::Duration::days(15);
        let e = verify(&dir, std::slice::from_ref(&f.pk), later).unwrap_err();
        assert!(matches!(e, BundleError::Expired { .. }), "{e}");
    }

    #[test]
    fn missing_manifest_is_incomplete_not_rejected() {
        let f = fixture(None);
        let dir = publish_one(&f, 1);
        fs::remove_file(dir.join(MANIFEST)).unwrap();
        let e = verify(&dir, std::slice::from_ref(&f.pk), Utc::now()).unwrap_err();
        assert!(e.is_incomplete(), "{e}");
    }

    #[test]
    fn prune_keeps_newest_and_removes_crash_leftovers() {
        let f = fixture(None);
        for seq in 1..=4 {
            publish_one(&f, seq);
        }
        fs::create_dir_all(f.spool.join(".tmp-et-open-suricata-5.0-00000005-abc")).unwrap();
        prune(&f.spool, "et-open-suricata-5.0", 2).unwrap();
        let left: Vec<u64> = list_bundles(&f.spool, "et-open-suricata-5.0")
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(left, vec![3, 4]);
        assert!(!f
            .spool
            .join(".tmp-et-open-suricata-5.0-00000005-abc")
            .exists());
    }

    #[test]
    fn republishing_a_sequence_is_refused() {
        let f = fixture(None);
        publish_one(&f, 1);
        let m = Manifest::new(source(), 1, Utc::now(), std::time::Duration::from_secs(60));
        let err = publish(&f.spool, m, &[("a".into(), b"x".to_vec())], &f.key).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }
}

#[cfg(test)]
mod interop {
    use super::super::*;
    use chrono::Utc;

    /// The reference `minisign` tool must accept our signatures (operators may check bundles with it).
    #[test]
    fn minisign_cli_verifies_our_manifest() {
        if std::process::Command::new("minisign")
            .arg("-v")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "minisign must be installed in CI (.ci/run installs it)"
            );
            eprintln!("skipping: minisign is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (skp, pkp) = keygen(&dir.path().join("keys"), None).unwrap();
        let key = SigningKey::load(&skp, None).unwrap();
        let m = Manifest::new(
            SourceInfo {
                name: "custom-x".into(),
                ruleset: "custom".into(),
                engine: None,
                url: "https://example.org/x.rules".into(),
            },
            3,
            Utc::now(),
            std::time::Duration::from_secs(3600),
        );
        let b = publish(
            &dir.path().join("out"),
            m,
            &[("x.rules".into(), b"y".to_vec())],
            &key,
        )
        .unwrap();
        let out = std::process::Command::new("minisign")
            .arg("-Vm")
            .arg(b.join(MANIFEST))
            .arg("-p")
            .arg(&pkp)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("bundle:custom-x-00000003 sequence:3"),
            "{stdout}"
        );
    }
}
