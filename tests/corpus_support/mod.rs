//! The real ET corpus of `tests/corpus/` (see its SOURCES.md), unpacked on first use into the
//! target directory so tests can read plain files: `<set>/rules/…` from each set's
//! `emerging.rules.tar.gz`, `*.gz` files to their plain name, everything else copied. Each set's
//! `MANIFEST.md5` is checked after unpacking, so a damaged checkout fails loudly instead of giving
//! wrong counts. The tree is keyed by a hash of the packed corpus: a changed corpus unpacks anew.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The packed corpus in the repository.
pub const PACKED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

/// The unpacked corpus: the same layout as the packed one, with archives and `.gz` files opened.
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| unpack(Path::new(PACKED), Path::new(env!("CARGO_TARGET_TMPDIR"))))
}

fn packed_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk tests/corpus"))
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    files.sort();
    files
}

fn unpack(packed: &Path, tmp: &Path) -> PathBuf {
    let files = packed_files(packed);
    let mut h = Sha256::new();
    for f in &files {
        h.update(f.strip_prefix(packed).unwrap().to_string_lossy().as_bytes());
        h.update(std::fs::read(f).expect("read tests/corpus"));
    }
    let key = hex::encode(&h.finalize()[..8]);
    let dest = tmp.join(format!("corpus-{key}"));
    if dest.is_dir() {
        return dest;
    }
    // Unpack beside the destination and rename: test binaries running at the same time never see a
    // half-unpacked tree; the loser of a race drops its copy.
    std::fs::create_dir_all(tmp).unwrap();
    let work = tempfile::Builder::new()
        .prefix("corpus-unpacking-")
        .tempdir_in(tmp)
        .unwrap();
    for f in &files {
        let rel = f.strip_prefix(packed).unwrap();
        let out = work.path().join(rel);
        let dir = out.parent().unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let name = rel.file_name().unwrap().to_string_lossy();
        if name == "emerging.rules.tar.gz" {
            std::fs::copy(f, &out).unwrap();
            let gz = flate2::read::GzDecoder::new(std::fs::File::open(f).unwrap());
            tar::Archive::new(gz).unpack(dir).unwrap();
        } else if let Some(plain) = name.strip_suffix(".gz") {
            let mut bytes = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(f).unwrap())
                .read_to_end(&mut bytes)
                .unwrap();
            std::fs::write(dir.join(plain), bytes).unwrap();
        } else {
            std::fs::copy(f, &out).unwrap();
        }
    }
    check_manifests(work.path());
    let staged = work.keep();
    if std::fs::rename(&staged, &dest).is_err() {
        assert!(
            dest.is_dir(),
            "cannot move the unpacked corpus to {}",
            dest.display()
        );
        let _ = std::fs::remove_dir_all(&staged);
    }
    dest
}

/// Every `MANIFEST.md5` line (`<md5>  <path>`) must match the unpacked file.
fn check_manifests(root: &Path) {
    for m in packed_files(root)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "MANIFEST.md5"))
    {
        let base = m.parent().unwrap();
        for line in std::fs::read_to_string(&m).unwrap().lines() {
            let (want, rel) = line.split_once("  ").expect("MANIFEST.md5 line");
            let bytes = std::fs::read(base.join(rel))
                .unwrap_or_else(|e| panic!("corpus file {rel} of {}: {e}", m.display()));
            let got = format!("{:x}", md5::Md5::digest(&bytes));
            assert_eq!(got, want, "corpus file {rel} differs from {}", m.display());
        }
    }
}
