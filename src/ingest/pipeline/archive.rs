//! Bare archives dropped by hand (`.tar.gz`, `.tgz`, `.zip`, `.rules`, with an optional `.md5`):
//! read from the medium without following links and within `limits.max_total_size`, `.md5`
//! first, then attribution, version (no dates from the future), replay check, and the shared
//! stages of [`Ingestor::import_payload`].

use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use super::{diff, md5_beside, say, sha256_hex, Import, Ingestor, Options, Outcome, Stop, Store};
use crate::fsutil::{self, MediumError};
use crate::safe_name::escape;

/// A dropped `.md5` is one line; more is not an md5 file.
const MD5_CAP: u64 = 4096;

impl Ingestor {
    /// A bare archive dropped by hand: its id is `archive-<sha256 prefix>`, so the same content
    /// twice is the same import. Work, done and failed hold a directory of that id with the file.
    pub(super) fn process_archive(
        &mut self,
        path: &Path,
        opts: Options,
    ) -> anyhow::Result<Outcome> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let limit = self.cfg.limits.max_total_size.0;
        // Never through a link, never more than the limit: refused before anything is copied.
        let read = fsutil::open_nofollow(path).and_then(|f| {
            let size = f.metadata().map_or(0, |m| m.len());
            if size > limit {
                return Err(MediumError::TooLarge {
                    what: format!("{name} ({size} bytes)"),
                    cap: limit,
                });
            }
            fsutil::read_capped(f, &name, limit)
        });
        let bytes = match read {
            Ok(b) => b,
            Err(MediumError::TooLarge { what, cap }) => {
                let reason = format!(
                    "{what}: larger than limits.max_total_size ({cap} bytes); refused before it was copied"
                );
                return self.reject_archive(&name, path, None, &reason, opts, false);
            }
            Err(e) if e.is_refusal() => {
                let reason = format!("{e}; nothing was copied");
                return self.reject_archive(&name, path, None, &reason, opts, false);
            }
            Err(e) => return Err(anyhow::Error::new(e)),
        };
        let sha = sha256_hex(&bytes);
        let id = format!("archive-{}", &sha[..16]);
        if !self.cfg.accept_unsigned_archives {
            let reason = format!(
                "{name}: a bare archive, not a signed bundle, and this site does not accept unsigned archives. \
                 To accept it, set `accept_unsigned_archives: true` in watch.yaml and, if its source cannot be \
                 told from the archive, add an `archive_sources` entry (match: \"{name}\", ruleset: et-open, engine: …)"
            );
            return self.reject_archive(&name, path, Some(&id), &reason, opts, true);
        }
        // The `.md5` is checked first: a wrong one is exit 4 even for content imported before.
        let md5_text = match check_md5(&name, path, &bytes)? {
            Ok(t) => t,
            Err(reason) => {
                // A linked `.md5` is not followed, so nothing is copied either.
                let link = std::fs::symlink_metadata(md5_beside(path))
                    .is_ok_and(|m| m.file_type().is_symlink());
                return self.reject_archive(&name, path, Some(&id), &reason, opts, !link);
            }
        };
        let work = self.cfg.work.join(&id);
        if !opts.dry_run {
            if let Some(row) = self.store.bundle(&id)? {
                if row.status == "done" {
                    say(&format!(
                        "{name}: the same content (sha256 {sha}) was imported before as {id}; nothing to do"
                    ));
                    if opts.remove_source {
                        remove_file_and_md5(path);
                    }
                    return Ok(Outcome::AlreadyDone);
                }
                if row.stage == "stored" || row.stage == "exported" {
                    let out = self.finish(&id, &work, row.source.as_deref(), None, opts)?;
                    if opts.remove_source {
                        remove_file_and_md5(path);
                    }
                    return Ok(out);
                }
                if row.status == "held" && !opts.approve {
                    if opts.remove_source && work.is_dir() {
                        remove_file_and_md5(path);
                    }
                    let why = row.reason.clone().unwrap_or_default();
                    return Ok(Outcome::Held(format!("{id} ({name}) is still held: {why}")));
                }
            }
        }
        let got = ArchiveInput {
            id: &id,
            name: &name,
            path,
            sha: &sha,
            md5_text,
        };
        match self.archive_stages(&got, bytes, &work, opts) {
            Ok(o) => {
                if opts.remove_source && !opts.dry_run {
                    remove_file_and_md5(path);
                }
                Ok(o)
            }
            Err(Stop::Fault(e)) => Err(self.fault(&id, e, opts)),
            Err(Stop::Abandon) => Ok(Outcome::Abandoned),
            Err(Stop::Hold(reason)) => {
                if opts.remove_source && work.is_dir() {
                    remove_file_and_md5(path);
                }
                Ok(Outcome::Held(reason))
            }
            Err(Stop::Reject(reason)) => {
                self.reject_archive(&name, path, Some(&id), &reason, opts, true)
            }
        }
    }

    fn archive_stages(
        &mut self,
        a: &ArchiveInput<'_>,
        bytes: Vec<u8>,
        work: &Path,
        opts: Options,
    ) -> Result<Outcome, Stop> {
        let (id, name) = (a.id, a.name);
        let dry = opts.dry_run;
        let j = |s: &Store, stage: &str| -> Result<(), Stop> {
            if !dry {
                s.journal(id, None, None, stage, "in-progress", None)?;
            }
            Ok(())
        };
        j(&self.store, "seen")?;
        // Taken before the work copy replaces the file (with `--approve`, `path` is in there).
        let modified = std::fs::symlink_metadata(a.path)
            .and_then(|m| m.modified())
            .ok();
        let mtime = modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        if !dry {
            // The work copy is what a rerun after a crash (or `--approve`) uses.
            let tmp = self.cfg.work.join(format!(".{id}.copying"));
            let copy = || -> anyhow::Result<()> {
                if tmp.exists() {
                    std::fs::remove_dir_all(&tmp)?;
                }
                fsutil::create_private_dir(&tmp)?;
                fsutil::write_private(&tmp.join(name), &bytes)?;
                if let Some(t) = modified {
                    // A `.rules` file's version may be its time: the work copy keeps it.
                    std::fs::File::options()
                        .write(true)
                        .open(tmp.join(name))?
                        .set_modified(t)?;
                }
                if let Some(t) = &a.md5_text {
                    fsutil::write_private(&tmp.join(format!("{name}.md5")), t)?;
                }
                if work.exists() {
                    std::fs::remove_dir_all(work)?;
                }
                std::fs::rename(&tmp, work)?;
                Ok(())
            };
            copy().map_err(|e| {
                Stop::Fault(e.context(format!("{name}: cannot copy to {}", work.display())))
            })?;
        }
        j(&self.store, "copied")?;
        if self.stopping() {
            return Err(Stop::Abandon);
        }
        let lower = name.to_ascii_lowercase();
        let members = if lower.ends_with(".rules") {
            vec![crate::archive::Member {
                path: name.to_string(),
                data: bytes,
                mtime,
            }]
        } else {
            crate::archive::read_archive(name, &bytes, &self.cfg.archive_limits().to_archive())
                .map_err(|e| Stop::Reject(format!("{id} ({name}): archive {name}: {e}")))?
        };
        let who = crate::bare::attribute(name, &members, &self.cfg.archive_sources)
            .map_err(Stop::Reject)?;
        if !self.cfg.rulesets.contains(&who.ruleset) {
            return Err(Stop::Reject(format!(
                "{name}: ruleset {} ({}) is not imported here (rulesets: {}); add it to `rulesets` in the config to accept it",
                who.ruleset,
                who.how,
                self.cfg.rulesets.join(", ")
            )));
        }
        let Some(version) = crate::bare::archive_version(&members) else {
            return Err(Stop::Reject(format!(
                "{name}: cannot tell its version: no updated_at/created_at in its rules and no member times"
            )));
        };
        let basis = match version.basis {
            crate::bare::VersionBasis::RuleMetadata => "newest rule metadata date",
            crate::bare::VersionBasis::MemberMtime => "newest member time",
        };
        // One date from the future would make every real archive "older" until that date.
        let now = Utc::now();
        if version.at > now + chrono::Duration::days(1) {
            return Err(Stop::Reject(format!(
                "{name}: {} dates it {} ({basis}), more than a day after now ({}): a wrong or forged date \
                 would lock this source until then",
                version.found_in,
                version.at.format("%Y-%m-%d"),
                now.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        if let Some(last) = self.store.archive_import(&who.name)? {
            if last.sha256 == a.sha {
                // Same content under another id cannot happen (the id is the hash); say so anyway.
                say(&format!(
                    "{name}: the same content as {} ({}); nothing to do",
                    last.bundle, last.file
                ));
                return Ok(Outcome::AlreadyDone);
            }
            if version.at < last.version_at {
                return Err(Stop::Reject(format!(
                    "{name}: older than the last archive accepted for source {}: version {} ({basis}) is before {} ({}, {}): a replay or rollback",
                    who.name,
                    version.at.format("%Y-%m-%d %H:%M:%S UTC"),
                    last.version_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    last.file,
                    last.bundle
                )));
            }
        }
        let existing = self.store.source(&who.name)?;
        say(&format!(
            "{name}: unsigned archive attributed to source {} by {}; version {} ({basis})",
            who.name,
            who.how,
            version.at.format("%Y-%m-%d")
        ));
        let imp = Import {
            source: who.name.clone(),
            ruleset: who.ruleset.clone(),
            engine: who.engine.clone(),
            // The bundle sequence of a source also fed by signed bundles stays where it is.
            sequence: existing.as_ref().map_or(0, |s| s.last_sequence),
            created_at: version.at,
            lifetime: existing.as_ref().map_or(0, |s| s.lifetime_secs),
            origin: diff::ORIGIN_ARCHIVE,
            download: None,
            archive: Some(crate::store::ArchiveImport {
                version_at: version.at,
                sha256: a.sha.to_string(),
                bundle: id.to_string(),
                file: name.to_string(),
            }),
        };
        j(&self.store, "verified")?;
        let files = members.into_iter().map(|m| (m.path, m.data)).collect();
        self.import_payload(id, work, &imp, files, opts)
    }

    /// Reject a bare archive: `.reason.txt` in failed/ says why, and `failed/<id or name>/` gets
    /// the file when `copy` (moved from work/, else copied privately). A link, or a file over the
    /// size limit, is not copied and stays where it is.
    fn reject_archive(
        &mut self,
        name: &str,
        path: &Path,
        id: Option<&str>,
        reason: &str,
        opts: Options,
        copy: bool,
    ) -> anyhow::Result<Outcome> {
        let reason = escape(reason).into_owned();
        if opts.dry_run {
            return Ok(Outcome::Rejected(reason));
        }
        let key = id.unwrap_or(name);
        fsutil::create_private_dir(&self.cfg.failed)
            .with_context(|| format!("cannot create {}", self.cfg.failed.display()))?;
        let dest = self.cfg.failed.join(key);
        let work = self.cfg.work.join(key);
        if copy {
            if dest.exists() {
                std::fs::remove_dir_all(&dest)?;
            }
            if id.is_some() && work.is_dir() {
                fsutil::move_tree(&work, &dest)?;
            } else {
                fsutil::create_private_dir(&dest)?;
                fsutil::copy_file_private(path, &dest.join(name))?;
                let md5 = md5_beside(path);
                if std::fs::symlink_metadata(&md5).is_ok_and(|m| m.is_file()) {
                    fsutil::copy_file_private(&md5, &dest.join(format!("{name}.md5")))?;
                }
            }
            if opts.remove_source {
                remove_file_and_md5(path);
            }
        }
        fsutil::atomic_write(
            &self.cfg.failed.join(format!("{key}.reason.txt")),
            format!("{reason}\n").as_bytes(),
        )?;
        if let Some(id) = id {
            self.store
                .journal(id, None, None, "rejected", "rejected", Some(&reason))?;
        }
        Ok(Outcome::Rejected(reason))
    }
}

/// The `.md5` beside `path` (read without following a link), checked against `bytes`: its text,
/// or `Ok(Err(reason))` to reject the archive; `Err` is a local fault.
fn check_md5(
    name: &str,
    path: &Path,
    bytes: &[u8],
) -> anyhow::Result<Result<Option<Vec<u8>>, String>> {
    let md5_path = md5_beside(path);
    let text = match fsutil::open_nofollow(&md5_path)
        .and_then(|f| fsutil::read_capped(f, &md5_path.display().to_string(), MD5_CAP))
    {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok(Ok(None)),
        Err(e) if e.is_refusal() => return Ok(Err(format!("{name}: {e}; nothing was copied"))),
        Err(e) => return Err(e.into()),
    };
    use md5::{Digest, Md5};
    let actual = hex::encode(Md5::digest(bytes));
    let Some(expected) = crate::bare::md5_token(&text) else {
        return Ok(Err(format!(
            "{name}: {} holds no md5 (32 hex digits); the archive's md5 is {actual}",
            md5_path.display()
        )));
    };
    if expected != actual {
        return Ok(Err(format!(
            "{name}: md5 mismatch: the archive's md5 is {actual}, {} says {expected}; \
             the copy is damaged or not the file the .md5 was made for",
            md5_path.display()
        )));
    }
    Ok(Ok(Some(text)))
}

/// What `process_archive` read off the medium, for the stages.
struct ArchiveInput<'a> {
    id: &'a str,
    name: &'a str,
    path: &'a Path,
    sha: &'a str,
    md5_text: Option<Vec<u8>>,
}

pub(super) fn remove_file_and_md5(p: &Path) {
    for f in [p.to_path_buf(), md5_beside(p)] {
        if std::fs::symlink_metadata(&f).is_ok() {
            if let Err(e) = std::fs::remove_file(&f) {
                tracing::warn!(
                    "cannot remove {} from the inbox: {e}",
                    crate::safe_name::path(&f)
                );
            }
        }
    }
}
