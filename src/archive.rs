//! In-memory reading of rule archives (`.tar.gz`, `.zip`) and plain rule files, with limits.
//!
//! Nothing is ever extracted to disk: members come back as byte vectors. Everything that could
//! escape a directory or smuggle something other than a file in (absolute paths, `..`, links,
//! devices) is refused with an error naming the archive and the member, never skipped silently.
//! Decompressed bytes are counted as they are read, so a gzip bomb stops at the limit instead of
//! filling memory, and a `.tar.gz` is decoded to the end of the gzip stream so that a truncated
//! download or a bad CRC after the tar end marker is still an error.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::{self, Read};

/// Resource limits for one archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries (of any type, directories included) an archive may hold.
    pub max_members: usize,
    /// Largest decompressed size of one member, in bytes.
    pub max_member_size: u64,
    /// Largest decompressed size of the whole archive, in bytes (for a `.tar.gz`, the whole
    /// decompressed tar stream including headers and padding).
    pub max_total_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_members: 10_000,
            max_member_size: 64 * 1024 * 1024,
            max_total_size: 512 * 1024 * 1024,
        }
    }
}

/// One regular file read from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Path inside the archive, `/`-separated, without a leading `./`.
    pub path: String,
    pub data: Vec<u8>,
    /// Modification time in seconds since the Unix epoch, when the archive records one.
    pub mtime: Option<i64>,
}

/// The container format of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TarGz,
    Zip,
    Plain,
}

/// Why an archive was refused; always names the archive, and the member when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{archive}{}: {kind}", member.as_ref().map(|m| format!(": member {m:?}")).unwrap_or_default())]
pub struct ArchiveError {
    pub archive: String,
    pub member: Option<String>,
    pub kind: ArchiveErrorKind,
}

/// The precise reason an archive was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveErrorKind {
    #[error("absolute path is not allowed")]
    AbsolutePath,
    #[error("path with a `..` component is not allowed")]
    ParentComponent,
    #[error("path is empty or not valid UTF-8")]
    BadPath,
    #[error("symbolic link (to {target:?}) is not allowed")]
    Symlink { target: String },
    #[error("hard link (to {target:?}) is not allowed")]
    HardLink { target: String },
    #[error("{0} is not allowed (regular files only)")]
    Special(&'static str),
    #[error("appears more than once")]
    Duplicate,
    #[error("encrypted members are not supported")]
    Encrypted,
    #[error("more than {limit} members")]
    TooManyMembers { limit: usize },
    #[error("member larger than the limit of {limit} bytes")]
    MemberTooLarge { limit: u64 },
    #[error("decompresses to more than the limit of {limit} bytes")]
    TotalTooLarge { limit: u64 },
    #[error("truncated gzip stream")]
    TruncatedGzip,
    #[error("{bytes} bytes of trailing data after the last gzip stream")]
    TrailingData { bytes: usize },
    #[error("corrupt gzip stream: {0}")]
    CorruptGzip(String),
    #[error("truncated or corrupt tar: {0}")]
    CorruptTar(String),
    #[error("corrupt zip: {0}")]
    CorruptZip(String),
}

/// Guess the container of `bytes`: magic bytes first (gzip `1f 8b`, zip `PK\x03\x04` or the
/// empty-zip `PK\x05\x06`), then the extension of `name`. An input that claims `.tar.gz` but
/// lacks the magic is still treated as one, so the user gets "corrupt gzip" rather than a
/// confusing parse of binary bytes.
pub fn detect(name: &str, bytes: &[u8]) -> Kind {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Kind::TarGz;
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Kind::Zip;
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        Kind::TarGz
    } else if lower.ends_with(".zip") {
        Kind::Zip
    } else {
        Kind::Plain
    }
}

/// Read every regular file of an archive (or the one plain file) into memory.
///
/// Directories are skipped; any other non-regular entry, unsafe path, duplicate path or exceeded
/// limit is an error. `name` is used for detection and in error messages only.
pub fn read_archive(
    name: &str,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Vec<Member>, ArchiveError> {
    let mut members = Vec::new();
    for_each_member(name, bytes, limits, &mut |m| members.push(m))?;
    Ok(members)
}

/// Like [`read_archive`], but hands each member to `f` as soon as it is read, so a caller that
/// processes members one by one never holds the whole decompressed archive. An error can come
/// after some members were handed over: the caller must discard what it made of them.
pub fn for_each_member(
    name: &str,
    bytes: &[u8],
    limits: &Limits,
    f: &mut dyn FnMut(Member),
) -> Result<(), ArchiveError> {
    match detect(name, bytes) {
        Kind::TarGz => read_tar_gz(name, bytes, limits, f),
        Kind::Zip => read_zip(name, bytes, limits, f),
        Kind::Plain => read_plain(name, bytes, limits, f),
    }
}

fn err(archive: &str, member: Option<&str>, kind: ArchiveErrorKind) -> ArchiveError {
    ArchiveError {
        archive: archive.to_string(),
        member: member.map(str::to_string),
        kind,
    }
}

fn read_plain(
    name: &str,
    bytes: &[u8],
    limits: &Limits,
    f: &mut dyn FnMut(Member),
) -> Result<(), ArchiveError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name).to_string();
    if bytes.len() as u64 > limits.max_member_size {
        return Err(err(
            name,
            None,
            ArchiveErrorKind::MemberTooLarge {
                limit: limits.max_member_size,
            },
        ));
    }
    f(Member {
        path: base,
        data: bytes.to_vec(),
        mtime: None,
    });
    Ok(())
}

/// Check a member path and return it normalised (`./` prefixes and empty components removed).
fn check_path(raw: &[u8]) -> Result<String, ArchiveErrorKind> {
    let path = std::str::from_utf8(raw).map_err(|_| ArchiveErrorKind::BadPath)?;
    if path.contains('\0') {
        return Err(ArchiveErrorKind::BadPath);
    }
    let bytes = path.as_bytes();
    // `/x`, `\x` and Windows drive paths (`C:x`) all point outside the extraction root.
    if path.starts_with(['/', '\\'])
        || (bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':')
    {
        return Err(ArchiveErrorKind::AbsolutePath);
    }
    let mut parts = Vec::new();
    for comp in path.split(['/', '\\']) {
        match comp {
            "" | "." => {}
            ".." => return Err(ArchiveErrorKind::ParentComponent),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(ArchiveErrorKind::BadPath);
    }
    Ok(parts.join("/"))
}

/// Shared between the counting reader (owned by the tar reader) and the code that maps errors.
struct Counter {
    total: Cell<u64>,
    limit: u64,
    over: Cell<bool>,
    /// The first error the gzip decoder returned, so that a tar error caused by it is reported
    /// as the gzip problem it really is.
    gzip_err: RefCell<Option<io::Error>>,
}

struct Counted<'c, R> {
    inner: R,
    counter: &'c Counter,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.counter.over.get() {
            return Err(io::Error::other("total size limit exceeded"));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                let total = self.counter.total.get() + n as u64;
                self.counter.total.set(total);
                if total > self.counter.limit {
                    self.counter.over.set(true);
                    return Err(io::Error::other("total size limit exceeded"));
                }
                Ok(n)
            }
            Err(e) => {
                let mut slot = self.counter.gzip_err.borrow_mut();
                if slot.is_none() {
                    *slot = Some(io::Error::new(e.kind(), e.to_string()));
                }
                Err(e)
            }
        }
    }
}

/// Turn an I/O error seen while reading the tar stream into the most precise reason.
fn stream_error(counter: &Counter, limits: &Limits, e: &io::Error) -> ArchiveErrorKind {
    if counter.over.get() {
        return ArchiveErrorKind::TotalTooLarge {
            limit: limits.max_total_size,
        };
    }
    if let Some(g) = counter.gzip_err.borrow().as_ref() {
        return gzip_kind(g);
    }
    ArchiveErrorKind::CorruptTar(e.to_string())
}

fn gzip_kind(e: &io::Error) -> ArchiveErrorKind {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ArchiveErrorKind::TruncatedGzip
    } else {
        ArchiveErrorKind::CorruptGzip(e.to_string())
    }
}

fn read_tar_gz(
    name: &str,
    bytes: &[u8],
    limits: &Limits,
    f: &mut dyn FnMut(Member),
) -> Result<(), ArchiveError> {
    let counter = Counter {
        total: Cell::new(0),
        limit: limits.max_total_size,
        over: Cell::new(false),
        gzip_err: RefCell::new(None),
    };
    // The buffered decoder consumes exactly its stream, so what follows it can be checked.
    let reader = Counted {
        inner: flate2::bufread::GzDecoder::new(bytes),
        counter: &counter,
    };
    let mut archive = tar::Archive::new(reader);
    read_tar_entries(name, &mut archive, &counter, limits, f)?;

    // After the tar end marker the gzip stream may still hold padding; read it to its end so the
    // CRC and length trailer are checked and a truncated download cannot pass as complete.
    let mut rest = archive.into_inner();
    if let Err(e) = io::copy(&mut rest, &mut io::sink()) {
        return Err(err(name, None, stream_error(&counter, limits, &e)));
    }
    // Further gzip members (concatenated streams) are decoded and checked the same way; any
    // other byte after the last one is data nobody verified, and refused.
    let mut tail: &[u8] = rest.inner.into_inner();
    while !tail.is_empty() {
        if !tail.starts_with(&[0x1f, 0x8b]) {
            return Err(err(
                name,
                None,
                ArchiveErrorKind::TrailingData { bytes: tail.len() },
            ));
        }
        let mut next = Counted {
            inner: flate2::bufread::GzDecoder::new(tail),
            counter: &counter,
        };
        if let Err(e) = io::copy(&mut next, &mut io::sink()) {
            return Err(err(name, None, stream_error(&counter, limits, &e)));
        }
        tail = next.inner.into_inner();
    }
    Ok(())
}

fn read_tar_entries<R: Read>(
    name: &str,
    archive: &mut tar::Archive<Counted<'_, R>>,
    counter: &Counter,
    limits: &Limits,
    f: &mut dyn FnMut(Member),
) -> Result<(), ArchiveError> {
    let mut seen = HashSet::new();
    let mut count = 0usize;
    let entries = archive
        .entries()
        .map_err(|e| err(name, None, stream_error(counter, limits, &e)))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| err(name, None, stream_error(counter, limits, &e)))?;
        count += 1;
        if count > limits.max_members {
            return Err(err(
                name,
                None,
                ArchiveErrorKind::TooManyMembers {
                    limit: limits.max_members,
                },
            ));
        }
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let path = check_path(&raw_path).map_err(|k| err(name, Some(&shown), k))?;
        let link_target = || {
            entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular | T::Continuous => {}
            T::Directory => continue,
            T::Symlink => {
                let target = link_target();
                return Err(err(
                    name,
                    Some(&shown),
                    ArchiveErrorKind::Symlink { target },
                ));
            }
            T::Link => {
                let target = link_target();
                return Err(err(
                    name,
                    Some(&shown),
                    ArchiveErrorKind::HardLink { target },
                ));
            }
            T::Char => {
                return Err(err(
                    name,
                    Some(&shown),
                    ArchiveErrorKind::Special("character device"),
                ))
            }
            T::Block => {
                return Err(err(
                    name,
                    Some(&shown),
                    ArchiveErrorKind::Special("block device"),
                ))
            }
            T::Fifo => return Err(err(name, Some(&shown), ArchiveErrorKind::Special("fifo"))),
            T::GNUSparse => {
                return Err(err(
                    name,
                    Some(&shown),
                    ArchiveErrorKind::Special("sparse file"),
                ))
            }
            other => {
                let what = format!("tar entry type {:?}", other.as_byte() as char);
                return Err(err(name, Some(&shown), ArchiveErrorKind::CorruptTar(what)));
            }
        }
        let declared = entry.size();
        if declared > limits.max_member_size {
            return Err(err(
                name,
                Some(&shown),
                ArchiveErrorKind::MemberTooLarge {
                    limit: limits.max_member_size,
                },
            ));
        }
        if !seen.insert(path.clone()) {
            return Err(err(name, Some(&shown), ArchiveErrorKind::Duplicate));
        }
        let mtime = entry
            .header()
            .mtime()
            .ok()
            .and_then(|t| i64::try_from(t).ok());
        let mut data = Vec::with_capacity(declared as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| err(name, Some(&shown), stream_error(counter, limits, &e)))?;
        if (data.len() as u64) < declared {
            return Err(err(
                name,
                Some(&shown),
                ArchiveErrorKind::CorruptTar(format!(
                    "member data ends after {} of {declared} bytes",
                    data.len()
                )),
            ));
        }
        f(Member { path, data, mtime });
    }
    Ok(())
}

fn read_zip(
    name: &str,
    bytes: &[u8],
    limits: &Limits,
    f: &mut dyn FnMut(Member),
) -> Result<(), ArchiveError> {
    let corrupt = |member: Option<&str>, e: &dyn std::fmt::Display| {
        err(name, member, ArchiveErrorKind::CorruptZip(e.to_string()))
    };
    let mut zip = zip::ZipArchive::new(io::Cursor::new(bytes)).map_err(|e| corrupt(None, &e))?;
    if zip.len() > limits.max_members {
        return Err(err(
            name,
            None,
            ArchiveErrorKind::TooManyMembers {
                limit: limits.max_members,
            },
        ));
    }
    let mut seen = HashSet::new();
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).map_err(|e| corrupt(None, &e))?;
        let raw = file.name_raw().to_vec();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path = check_path(&raw).map_err(|k| err(name, Some(&shown), k))?;
        if file.is_dir() {
            continue;
        }
        if file.is_symlink() {
            let mut target = Vec::new();
            // The link target is the member's content; a short, bounded read only for the message.
            let _ = (&mut file).take(4096).read_to_end(&mut target);
            let target = String::from_utf8_lossy(&target).into_owned();
            return Err(err(
                name,
                Some(&shown),
                ArchiveErrorKind::Symlink { target },
            ));
        }
        if let Some(mode) = file.unix_mode() {
            let special = match mode & 0o170000 {
                0o020000 => Some("character device"),
                0o060000 => Some("block device"),
                0o010000 => Some("fifo"),
                0o140000 => Some("socket"),
                _ => None,
            };
            if let Some(what) = special {
                return Err(err(name, Some(&shown), ArchiveErrorKind::Special(what)));
            }
        }
        if file.encrypted() {
            return Err(err(name, Some(&shown), ArchiveErrorKind::Encrypted));
        }
        if file.size() > limits.max_member_size {
            return Err(err(
                name,
                Some(&shown),
                ArchiveErrorKind::MemberTooLarge {
                    limit: limits.max_member_size,
                },
            ));
        }
        if !seen.insert(path.clone()) {
            return Err(err(name, Some(&shown), ArchiveErrorKind::Duplicate));
        }
        let mtime = file.last_modified().and_then(zip_time);
        // The declared size is the writer's claim; read at most one byte past the limits so a
        // lying header cannot make us inflate more than that.
        let room = limits.max_member_size.min(limits.max_total_size - total);
        let mut data = Vec::with_capacity(file.size().min(room) as usize);
        (&mut file)
            .take(room + 1)
            .read_to_end(&mut data)
            .map_err(|e| corrupt(Some(&shown), &e))?;
        if data.len() as u64 > limits.max_member_size {
            return Err(err(
                name,
                Some(&shown),
                ArchiveErrorKind::MemberTooLarge {
                    limit: limits.max_member_size,
                },
            ));
        }
        total += data.len() as u64;
        if total > limits.max_total_size {
            return Err(err(
                name,
                Some(&shown),
                ArchiveErrorKind::TotalTooLarge {
                    limit: limits.max_total_size,
                },
            ));
        }
        if data.len() as u64 != file.size() {
            return Err(corrupt(
                Some(&shown),
                &format!(
                    "member is {} bytes, header says {}",
                    data.len(),
                    file.size()
                ),
            ));
        }
        f(Member { path, data, mtime });
    }
    Ok(())
}

fn zip_time(t: zip::DateTime) -> Option<i64> {
    let date = chrono::NaiveDate::from_ymd_opt(t.year().into(), t.month().into(), t.day().into())?;
    let dt = date.and_hms_opt(t.hour().into(), t.minute().into(), t.second().into())?;
    // Zip times carry no zone; UTC is the only choice that does not depend on this machine.
    Some(dt.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn small() -> Limits {
        Limits {
            max_members: 10,
            max_member_size: 1024 * 1024,
            max_total_size: 2 * 1024 * 1024,
        }
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// A tar with raw header fields, so that unsafe paths the `tar` builder refuses can be made.
    fn tar_entry(path: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        {
            let raw = h.as_old_mut();
            raw.name[..path.len()].copy_from_slice(path.as_bytes());
            raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = entries.concat();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn read_tgz(entries: &[Vec<u8>]) -> Result<Vec<Member>, ArchiveError> {
        read_archive("t.tar.gz", &gz(&tar_of(entries)), &small())
    }

    const RULE: &[u8] = b"alert tcp any any -> any any (msg:\"x\"; sid:1; rev:1;)\n";

    #[test]
    fn regular_members_are_returned_and_directories_skipped() {
        let got = read_tgz(&[
            tar_entry("rules/", tar::EntryType::Directory, "", b""),
            tar_entry("./rules/a.rules", tar::EntryType::Regular, "", RULE),
        ])
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "rules/a.rules");
        assert_eq!(got[0].data, RULE);
        assert_eq!(got[0].mtime, Some(1_700_000_000));
    }

    #[test]
    fn parent_dir_path_is_refused_naming_the_member() {
        let e = read_tgz(&[tar_entry(
            "rules/../../etc/x.rules",
            tar::EntryType::Regular,
            "",
            RULE,
        )])
        .unwrap_err();
        assert_eq!(e.kind, ArchiveErrorKind::ParentComponent);
        assert_eq!(e.member.as_deref(), Some("rules/../../etc/x.rules"));
        let msg = e.to_string();
        assert!(
            msg.contains("t.tar.gz") && msg.contains("rules/../../etc/x.rules"),
            "{msg}"
        );
    }

    #[test]
    fn absolute_path_is_refused() {
        let e =
            read_tgz(&[tar_entry("/etc/passwd", tar::EntryType::Regular, "", RULE)]).unwrap_err();
        assert_eq!(e.kind, ArchiveErrorKind::AbsolutePath);
    }

    #[test]
    fn symlink_is_refused_with_its_target() {
        let e = read_tgz(&[tar_entry(
            "rules/a.rules",
            tar::EntryType::Symlink,
            "/etc/shadow",
            b"",
        )])
        .unwrap_err();
        assert_eq!(
            e.kind,
            ArchiveErrorKind::Symlink {
                target: "/etc/shadow".into()
            }
        );
    }

    #[test]
    fn hard_link_is_refused() {
        let e = read_tgz(&[
            tar_entry("a.rules", tar::EntryType::Regular, "", RULE),
            tar_entry("b.rules", tar::EntryType::Link, "a.rules", b""),
        ])
        .unwrap_err();
        assert!(matches!(e.kind, ArchiveErrorKind::HardLink { .. }), "{e}");
        assert_eq!(e.member.as_deref(), Some("b.rules"));
    }

    #[test]
    fn devices_and_fifos_are_refused() {
        for (kind, what) in [
            (tar::EntryType::Char, "character device"),
            (tar::EntryType::Block, "block device"),
            (tar::EntryType::Fifo, "fifo"),
        ] {
            let e = read_tgz(&[tar_entry("dev.rules", kind, "", b"")]).unwrap_err();
            assert_eq!(e.kind, ArchiveErrorKind::Special(what));
        }
    }

    #[test]
    fn duplicate_member_is_refused() {
        let e = read_tgz(&[
            tar_entry("a.rules", tar::EntryType::Regular, "", RULE),
            tar_entry("./a.rules", tar::EntryType::Regular, "", b"x"),
        ])
        .unwrap_err();
        assert_eq!(e.kind, ArchiveErrorKind::Duplicate);
    }

    #[test]
    fn too_many_members_is_refused() {
        let entries: Vec<_> = (0..11)
            .map(|i| tar_entry(&format!("{i}.rules"), tar::EntryType::Regular, "", RULE))
            .collect();
        let e = read_tgz(&entries).unwrap_err();
        assert_eq!(e.kind, ArchiveErrorKind::TooManyMembers { limit: 10 });
        // Ten is still fine.
        assert_eq!(read_tgz(&entries[..10]).unwrap().len(), 10);
    }

    #[test]
    fn member_over_size_limit_is_refused_before_reading_it() {
        let big = vec![b'a'; 1024 * 1024 + 1];
        let e = read_tgz(&[tar_entry("big.rules", tar::EntryType::Regular, "", &big)]).unwrap_err();
        assert_eq!(
            e.kind,
            ArchiveErrorKind::MemberTooLarge { limit: 1024 * 1024 }
        );
    }

    #[test]
    fn trailing_data_after_the_gzip_stream_is_refused_and_more_streams_are_checked() {
        let mut data = gz(&tar_of(&[tar_entry(
            "a.rules",
            tar::EntryType::Regular,
            "",
            RULE,
        )]));
        let whole = data.clone();
        data.extend_from_slice(b"unsigned tail");
        let e = read_archive("t.tar.gz", &data, &small()).unwrap_err();
        assert_eq!(e.kind, ArchiveErrorKind::TrailingData { bytes: 13 });
        // A second, valid gzip member is fine; a broken one is not.
        let mut two = whole.clone();
        two.extend_from_slice(&gz(b"padding"));
        assert_eq!(read_archive("t.tar.gz", &two, &small()).unwrap().len(), 1);
        let mut broken = whole;
        broken.extend_from_slice(&gz(b"padding")[..12]);
        assert!(read_archive("t.tar.gz", &broken, &small()).is_err());
    }

    #[test]
    fn gzip_bomb_stops_at_the_total_limit() {
        // 8 MiB of zeros compress to a few KiB; to tar, zeros are an end marker, so only the
        // decompression counter can stop this one (while draining to the gzip end).
        let zeros = vec![0u8; 8 * 1024 * 1024];
        let bomb = gz(&zeros);
        assert!(bomb.len() < 64 * 1024);
        let e = read_archive("bomb.tar.gz", &bomb, &small()).unwrap_err();
        assert_eq!(
            e.kind,
            ArchiveErrorKind::TotalTooLarge {
                limit: 2 * 1024 * 1024
            }
        );
        // And a bomb inside a member's data, declared small enough per member, but many members.
        let limits = Limits {
            max_members: 100,
            max_member_size: 1024 * 1024,
            max_total_size: 3 * 1024 * 1024,
        };
        let chunk = vec![b'z'; 1024 * 1024];
        let entries: Vec<_> = (0..8)
            .map(|i| tar_entry(&format!("{i}.rules"), tar::EntryType::Regular, "", &chunk))
            .collect();
        let e = read_archive("b.tgz", &gz(&tar_of(&entries)), &limits).unwrap_err();
        assert_eq!(
            e.kind,
            ArchiveErrorKind::TotalTooLarge {
                limit: 3 * 1024 * 1024
            }
        );
    }

    #[test]
    fn truncated_gzip_is_an_error_even_after_the_tar_end() {
        let full = gz(&tar_of(&[tar_entry(
            "a.rules",
            tar::EntryType::Regular,
            "",
            RULE,
        )]));
        // Cut in the middle of the stream.
        let e = read_archive("t.tar.gz", &full[..full.len() / 2], &small()).unwrap_err();
        assert_eq!(e.kind, ArchiveErrorKind::TruncatedGzip, "{e}");
        // Cut only the 8-byte CRC/length trailer: the tar parses fine, the drain must catch it.
        let e = read_archive("t.tar.gz", &full[..full.len() - 4], &small()).unwrap_err();
        assert_eq!(e.kind, ArchiveErrorKind::TruncatedGzip, "{e}");
    }

    #[test]
    fn bad_gzip_crc_is_an_error() {
        let mut full = gz(&tar_of(&[tar_entry(
            "a.rules",
            tar::EntryType::Regular,
            "",
            RULE,
        )]));
        let n = full.len();
        full[n - 8] ^= 0xff; // first byte of the CRC32 trailer
        let e = read_archive("t.tar.gz", &full, &small()).unwrap_err();
        assert!(matches!(e.kind, ArchiveErrorKind::CorruptGzip(_)), "{e}");
    }

    #[test]
    fn truncated_tar_inside_good_gzip_is_an_error() {
        let tar = tar_entry("a.rules", tar::EntryType::Regular, "", &vec![b'r'; 2000]);
        let e = read_archive("t.tar.gz", &gz(&tar[..1024]), &small()).unwrap_err();
        assert!(matches!(e.kind, ArchiveErrorKind::CorruptTar(_)), "{e}");
        assert_eq!(e.member.as_deref(), Some("a.rules"));
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn zip_members_are_read() {
        let z = zip_of(&[("rules/a.rules", RULE), ("rules/b.rules", b"# nothing\n")]);
        let got = read_archive("x.zip", &z, &small()).unwrap();
        let paths: Vec<_> = got.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["rules/a.rules", "rules/b.rules"]);
        assert_eq!(got[0].data, RULE);
        assert!(got[0].mtime.is_some());
    }

    #[test]
    fn corrupt_zip_is_an_error() {
        let mut z = zip_of(&[("a.rules", &RULE.repeat(50))]);
        // Garble the compressed data (after the 30-byte local header and the name).
        for b in &mut z[40..60] {
            *b ^= 0x5a;
        }
        let e = read_archive("x.zip", &z, &small()).unwrap_err();
        assert!(matches!(e.kind, ArchiveErrorKind::CorruptZip(_)), "{e}");
        // Not a zip at all, though named one.
        let e = read_archive("x.zip", b"hello", &small()).unwrap_err();
        assert!(matches!(e.kind, ArchiveErrorKind::CorruptZip(_)), "{e}");
    }

    #[test]
    fn zip_parent_dir_path_is_refused() {
        let z = zip_of(&[("../evil.rules", RULE)]);
        let e = read_archive("x.zip", &z, &small()).unwrap_err();
        assert_eq!(e.kind, ArchiveErrorKind::ParentComponent);
    }

    #[test]
    fn zip_limits_symlinks_and_duplicates_are_enforced() {
        let many: Vec<(String, &[u8])> = (0..11).map(|i| (format!("{i}.rules"), RULE)).collect();
        let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let e = read_archive("x.zip", &zip_of(&refs), &small()).unwrap_err();
        assert_eq!(e.kind, ArchiveErrorKind::TooManyMembers { limit: 10 });

        let big = vec![b'a'; 1024 * 1024 + 1];
        let e = read_archive("x.zip", &zip_of(&[("big.rules", &big)]), &small()).unwrap_err();
        assert_eq!(
            e.kind,
            ArchiveErrorKind::MemberTooLarge { limit: 1024 * 1024 }
        );

        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        w.add_symlink("a.rules", "/etc/passwd", opts).unwrap();
        let z = w.finish().unwrap().into_inner();
        let e = read_archive("x.zip", &z, &small()).unwrap_err();
        assert_eq!(
            e.kind,
            ArchiveErrorKind::Symlink {
                target: "/etc/passwd".into()
            }
        );
        assert_eq!(e.member.as_deref(), Some("a.rules"));
    }

    #[test]
    fn plain_file_is_one_member_named_after_the_file() {
        let got = read_archive("/tmp/x/emerging-icmp.rules", RULE, &small()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "emerging-icmp.rules");
        assert_eq!(got[0].data, RULE);
    }

    #[test]
    fn detect_prefers_magic_bytes_over_extension() {
        assert_eq!(detect("a.rules", &gz(b"x")), Kind::TarGz);
        assert_eq!(detect("a.rules", &zip_of(&[("a", b"x")])), Kind::Zip);
        assert_eq!(detect("a.tgz", b"not gzip"), Kind::TarGz);
        assert_eq!(detect("A.ZIP", b""), Kind::Zip);
        assert_eq!(detect("a.rules", b"alert"), Kind::Plain);
    }

    #[test]
    fn real_corpus_archive_is_read_fully() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/corpus/et-open-suricata-1.3-enhanced-2017-03-10/emerging.rules.tar.gz"
        );
        let bytes = std::fs::read(path).unwrap();
        let got = read_archive(path, &bytes, &Limits::default()).unwrap();
        let rules: Vec<_> = got.iter().filter(|m| m.path.ends_with(".rules")).collect();
        assert!(rules.len() > 40, "{} rules files", rules.len());
        // Every member is fully there: sizes add up to the decompressed tar's payload.
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut expected = 0usize;
        for e in tar.entries().unwrap() {
            let e = e.unwrap();
            if e.header().entry_type().is_file() {
                expected += 1;
            }
        }
        assert_eq!(got.len(), expected);
        assert!(
            got.iter().all(|m| m.path.starts_with("rules/")),
            "{:?}",
            got[0].path
        );
        let icmp = got
            .iter()
            .find(|m| m.path == "rules/emerging-icmp.rules")
            .unwrap();
        assert!(icmp.data.ends_with(b"\n"));
    }
}
