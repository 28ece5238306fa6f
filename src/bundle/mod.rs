//! Bundles: what crosses the air gap. The only module that reads or writes a manifest.
//!
//! A bundle is a directory `<source>-<sequence:08>/` holding the payload files exactly as
//! downloaded, `manifest.json` (written last) and `manifest.json.minisig`, a minisign (Ed25519,
//! prehashed) signature over the manifest bytes whose trusted comment repeats the bundle id and
//! sequence. Keys use minisign's own file formats, so `minisign -Vm manifest.json -p bundle.pub`
//! checks a bundle too.

mod detached;
mod keys;
mod manifest;
mod publish;
mod verify;

pub use detached::{sign_file, signature_path, verify_file};
pub use keys::{keygen, PublicKey, SigningKey};
pub use manifest::{bundle_id, listed_files, FileEntry, Manifest, SourceInfo, Upstream, FORMAT};
pub use publish::{list_bundles, prune, publish};
pub use verify::{
    check_created_at, verify, verify_with, BundleError, VerifiedBundle, VerifyOptions,
    MANIFEST_CAP, SIGNATURE_CAP,
};

/// File name of the manifest inside a bundle.
pub const MANIFEST: &str = "manifest.json";
/// File name of the manifest's detached signature.
pub const SIGNATURE: &str = "manifest.json.minisig";

/// The trusted comment that binds a signature to one bundle id and sequence.
pub fn trusted_comment(bundle_id: &str, sequence: u64) -> String {
    format!("etferry-bundle/1 bundle:{bundle_id} sequence:{sequence}")
}

/// Is `rel` a safe relative path for a payload file (no absolute path, no `..`, no empty parts)?
pub fn safe_relative_path(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with('/')
        && !rel.contains('\\')
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && rel != MANIFEST
        && rel != SIGNATURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_paths_must_stay_inside_the_bundle() {
        assert!(safe_relative_path("emerging.rules.tar.gz"));
        assert!(safe_relative_path("blockrules/emerging-botcc.rules"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            MANIFEST,
            SIGNATURE,
        ] {
            assert!(!safe_relative_path(bad), "{bad:?} accepted");
        }
    }
}
