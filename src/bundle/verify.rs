//! Bundle verification: trusted signature, manifest schema, trusted comment, expiry, and every
//! payload file's size and sha256. Payload bytes are returned from the same read that was hashed,
//! so nothing can change between the check and the use.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::keys::key_id;
use super::{safe_relative_path, trusted_comment, FileEntry, Manifest, PublicKey, FORMAT};
use super::{MANIFEST, SIGNATURE};
use crate::fsutil::{check_no_symlinks, read_medium, MediumError};

/// A manifest larger than this is refused before it is parsed (a full ruleset lists a few files).
pub const MANIFEST_CAP: u64 = 16 << 20;
/// A minisign signature file is a few hundred bytes; more is not a signature.
pub const SIGNATURE_CAP: u64 = 4096;

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
    #[error("{bundle}: expired at {expires_at} (now {now}); ask the DMZ side for a fresh bundle")]
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
    /// Something on the medium that is never read: a symbolic link, a device, a FIFO.
    #[error("{bundle}: {reason}")]
    Refused { bundle: String, reason: String },
    #[error("{bundle}: created_at {created_at} {why}")]
    BadDate {
        bundle: String,
        created_at: DateTime<Utc>,
        why: String,
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
    /// Accept a bundle without a signature file (`require_signature: false`); it is checked in
    /// every other way, and its `key_id` is empty.
    pub allow_unsigned: bool,
}

impl VerifyOptions {
    pub fn at(now: DateTime<Utc>) -> VerifyOptions {
        VerifyOptions {
            now,
            max_total_size: 1 << 30,
            check_expiry: true,
            allow_unsigned: false,
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

    // A link anywhere on the medium is refused, never followed: the bundle directory itself,
    // the manifest, the signature, and every directory above a payload file.
    let dir = &crate::fsutil::strip_trailing(dir);
    let medium = |what: &str, e: MediumError| -> BundleError {
        match e {
            MediumError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                BundleError::Incomplete {
                    bundle: bundle.clone(),
                    what: what.to_string(),
                }
            }
            MediumError::Io { source, .. } => io_err(what, source),
            MediumError::TooLarge { cap, .. } if what == MANIFEST => BundleError::BadManifest {
                bundle: bundle.clone(),
                reason: format!("{MANIFEST} is larger than its cap of {cap} bytes"),
            },
            MediumError::TooLarge { cap, .. } => BundleError::BadSignatureFile {
                bundle: bundle.clone(),
                reason: format!(
                    "{what} is larger than its cap of {cap} bytes (a minisign signature is a few hundred bytes)"
                ),
            },
            refused => BundleError::Refused {
                bundle: bundle.clone(),
                reason: crate::safe_name::escape(&refused.to_string()).into_owned(),
            },
        }
    };
    check_no_symlinks(dir, "").map_err(|e| medium(".", e))?;
    let manifest_bytes =
        read_medium(dir, MANIFEST, MANIFEST_CAP).map_err(|e| medium(MANIFEST, e))?;
    let sig_bytes = match read_medium(dir, SIGNATURE, SIGNATURE_CAP) {
        Err(e) if e.is_not_found() && opts.allow_unsigned => None,
        r => Some(r.map_err(|e| medium(SIGNATURE, e))?),
    };
    let (signer, comment) = match sig_bytes {
        Some(b) => {
            let (signer, comment) = check_signature(&bundle, &b, &manifest_bytes, trusted)?;
            (signer, Some(comment))
        }
        None => (String::new(), None),
    };

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
    if let Some(comment) = comment.filter(|c| *c != expected_comment) {
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
    check_created_at(&manifest, opts.now).map_err(|why| BundleError::BadDate {
        bundle: bundle.clone(),
        created_at: manifest.created_at,
        why,
    })?;
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
        // One byte over the declared size is enough to see a mismatch; nothing more is read.
        let data = match read_medium(dir, &entry.path, entry.size) {
            Ok(d) => d,
            Err(MediumError::TooLarge { .. }) => {
                return Err(bad_file(format!(
                    "size is larger than the {} bytes the manifest says",
                    entry.size
                )))
            }
            Err(MediumError::NotRegular(_)) => {
                return Err(bad_file("is not a regular file".to_string()))
            }
            Err(e) => return Err(medium(&entry.path, e)),
        };
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

/// Check the signature file against the manifest bytes with a trusted key; returns the signer's
/// key id and the trusted comment.
fn check_signature(
    bundle: &str,
    sig_bytes: &[u8],
    manifest_bytes: &[u8],
    trusted: &[PublicKey],
) -> Result<(String, String), BundleError> {
    let sig_text =
        String::from_utf8(sig_bytes.to_vec()).map_err(|_| BundleError::BadSignatureFile {
            bundle: bundle.to_string(),
            reason: "not UTF-8 text".to_string(),
        })?;
    // minisign reads the first four lines and ignores the rest: refuse anything after them,
    // so nothing unsigned rides along in the signature file.
    if let Some((n, _)) = sig_text
        .lines()
        .enumerate()
        .skip(4)
        .find(|(_, l)| !l.trim().is_empty())
    {
        return Err(BundleError::BadSignatureFile {
            bundle: bundle.to_string(),
            reason: format!(
                "trailing data after the signature (line {}); a signature file has four lines",
                n + 1
            ),
        });
    }
    // minisign does not check the global signature's length and panics on a short one (found by
    // the property tests): it must be 64 bytes, 88 base64 characters ending in `==`.
    let global = sig_text.lines().nth(3).map(str::trim).unwrap_or_default();
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    if global.len() != 88 || !global.ends_with("==") || !global[..86].chars().all(b64) {
        return Err(BundleError::BadSignatureFile {
            bundle: bundle.to_string(),
            reason: "the global signature (line 4) is not 64 bytes of base64".to_string(),
        });
    }
    let sig = minisign::SignatureBox::from_string(&sig_text).map_err(|e| {
        BundleError::BadSignatureFile {
            bundle: bundle.to_string(),
            reason: e.to_string(),
        }
    })?;
    let signer = key_id(sig.keynum());
    let Some(key) = trusted.iter().find(|k| k.keynum() == sig.keynum()) else {
        return Err(BundleError::UntrustedKey {
            bundle: bundle.to_string(),
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
            bundle: bundle.to_string(),
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
        bundle: bundle.to_string(),
        key_id: signer.clone(),
    })?;
    Ok((signer, comment))
}

/// A bundle's `created_at` may be up to a day ahead of this clock (skew between the DMZ and the
/// air-gapped host), and not before 2000 (no etferry bundle is that old; a zeroed or forged date).
pub fn check_created_at(m: &Manifest, now: DateTime<Utc>) -> Result<(), String> {
    if m.created_at > now + chrono::Duration::days(1) {
        return Err(format!(
            "is more than a day in the future (now {}): the producer's clock is wrong or the bundle is forged",
            now.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    if chrono::Datelike::year(&m.created_at) < 2000 {
        return Err("is before 2000: not a date an etferry bundle can have".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use crate::secret::Secret;
    use std::fs;

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
