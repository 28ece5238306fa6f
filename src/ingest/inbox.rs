//! What a path given to `ingest` is: a bundle, a bare archive, or a folder holding them (the
//! inbox, or the folder `carry.sh` fills on a medium). Only a bundle or an archive is ever handed
//! to the pipeline, so a folder is never taken for a broken bundle and moved into `failed/`.

use std::path::{Path, PathBuf};

use super::pipeline::is_bare_archive;
use crate::bundle::{MANIFEST, SIGNATURE};

/// One path as `ingest` sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory with a manifest (or its signature): the pipeline verifies it.
    Bundle,
    /// A `.tar.gz` / `.tgz` / `.zip` / `.rules` file.
    Archive,
    /// A directory whose entries are bundles or archives, in the order to process them
    /// (possibly none: an empty inbox is nothing to do).
    Folder(Vec<PathBuf>),
    /// Nothing to hand to the pipeline; the reason names what is wrong.
    Refused(String),
    /// Does not exist: the pipeline knows held bundles by id (their copy is in `work/`).
    Missing,
}

/// Is `dir` a bundle (finished or not)? The manifest is written last, so a directory with only
/// the signature is a bundle whose manifest went missing, and the pipeline rejects it with that.
pub fn is_bundle_dir(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file() || dir.join(SIGNATURE).is_file()
}

/// A directory named like a bundle (`<source>-<8 digits>`), which may be a copy in progress.
fn looks_like_bundle_id(dir: &Path) -> bool {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rsplit_once('-') {
        Some((src, seq)) => {
            !src.is_empty() && seq.len() == 8 && seq.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Classify `path` without changing anything.
pub fn classify(path: &Path) -> Kind {
    // The path the operator named may be a link (an inbox on a mount); entries inside are not
    // followed (see `entries`).
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Kind::Missing,
    };
    if meta.is_file() {
        return if is_bare_archive(path) {
            Kind::Archive
        } else {
            Kind::Refused(format!(
                "{}: not a bundle (a directory with manifest.json), not a ruleset archive \
                 (.tar.gz, .tgz, .zip, .rules) and not a folder of them; nothing was moved",
                path.display()
            ))
        };
    }
    if !meta.is_dir() {
        return Kind::Refused(format!(
            "{}: not a regular file or directory; nothing was moved",
            path.display()
        ));
    }
    if is_bundle_dir(path) {
        return Kind::Bundle;
    }
    if looks_like_bundle_id(path) {
        return Kind::Refused(format!(
            "{}: not a bundle yet: {MANIFEST} is missing (still being copied?); nothing was moved",
            path.display()
        ));
    }
    let (entries, others) = match entries(path) {
        Ok(v) => v,
        Err(e) => {
            return Kind::Refused(format!("cannot read folder {}: {e}", path.display()));
        }
    };
    if entries.is_empty() && others > 0 {
        return Kind::Refused(format!(
            "{}: holds no bundle (directory with {MANIFEST}) and no ruleset archive \
             (.tar.gz, .tgz, .zip, .rules); nothing was moved",
            path.display()
        ));
    }
    Kind::Folder(entries)
}

/// The bundles and archives inside `dir`, sorted by name (bundle ids end in their sequence, so a
/// source's bundles come in order), and how many other visible entries it has. A folder of
/// bundles inside (the medium's `etferry/` copied into the inbox) is looked into, one level,
/// as `watch` does. Names starting with `.` are copies in progress and are skipped.
pub fn entries(dir: &Path) -> std::io::Result<(Vec<PathBuf>, usize)> {
    let (mut found, others) = direct(dir)?;
    let mut rest = 0;
    for sub in others {
        // Only bundles from a subfolder: loose archives there may be a half-copied bundle's
        // payload, and a bundle-named folder without a manifest is one.
        let inner: Vec<PathBuf> = if sub.is_dir() && !looks_like_bundle_id(&sub) {
            direct(&sub)
                .map(|(f, _)| f.into_iter().filter(|p| p.is_dir()).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        if inner.is_empty() {
            rest += 1;
        } else {
            found.extend(inner);
        }
    }
    found.sort();
    Ok((found, rest))
}

/// The bundles and archives directly inside `dir`, and its other visible entries.
fn direct(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut found = Vec::new();
    let mut others = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let p = e.path();
        let t = e.file_type()?;
        if (t.is_dir() && is_bundle_dir(&p)) || (t.is_file() && is_bare_archive(&p)) {
            found.push(p);
        } else if !(t.is_file() && is_checksum(&p)) {
            others.push(p);
        }
    }
    Ok((found, others))
}

/// The `.md5` beside a dropped archive travels with it; it is not an entry of its own.
fn is_checksum(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("md5"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_of_bundles_and_archives_lists_them_in_order() {
        let d = tempfile::tempdir().unwrap();
        for b in [
            "et-open-00000002",
            "et-open-00000001",
            ".carry-et-open-00000003",
        ] {
            std::fs::create_dir(d.path().join(b)).unwrap();
            std::fs::write(d.path().join(b).join(MANIFEST), "{}").unwrap();
        }
        std::fs::write(d.path().join("emerging.rules.tar.gz"), "x").unwrap();
        std::fs::write(d.path().join("emerging.rules.tar.gz.md5"), "x").unwrap();
        let Kind::Folder(v) = classify(d.path()) else {
            panic!("not a folder")
        };
        let names: Vec<String> = v
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "emerging.rules.tar.gz",
                "et-open-00000001",
                "et-open-00000002"
            ]
        );
    }

    #[test]
    fn half_copied_bundle_and_unrelated_things_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let half = d.path().join("et-open-00000004");
        std::fs::create_dir(&half).unwrap();
        std::fs::write(half.join("emerging.rules.tar.gz"), "x").unwrap();
        assert!(
            matches!(classify(&half), Kind::Refused(m) if m.contains("manifest.json is missing"))
        );
        let notes = d.path().join("notes");
        std::fs::create_dir(&notes).unwrap();
        std::fs::write(notes.join("README.txt"), "x").unwrap();
        assert!(matches!(classify(&notes), Kind::Refused(_)));
        assert!(matches!(
            classify(&notes.join("README.txt")),
            Kind::Refused(_)
        ));
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(classify(&empty), Kind::Folder(vec![]));
        // A folder of bundles one level down (the medium's etferry/ inside the inbox).
        let nested = d.path().join("inbox/etferry/et-open-00000005");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join(MANIFEST), "{}").unwrap();
        assert_eq!(
            classify(&d.path().join("inbox")),
            Kind::Folder(vec![nested])
        );
        assert_eq!(classify(&d.path().join("gone")), Kind::Missing);
    }
}
