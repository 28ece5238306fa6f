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
    for_each_member_picking(name, bytes, limits, &mut |_, _| Pick::Read, f)
}

/// What [`for_each_member_picking`] does with a member, told its checked path and declared size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Read it and hand it over.
    Read,
    /// Pass over it without holding its data.
    Skip,
    /// Stop reading: the caller has all it wants. The rest of the archive, its trailer and
    /// checksum included, is not read: only for archives verified before.
    Stop,
}

/// [`for_each_member`] for a caller that wants only some members: each member's path and
/// type are checked as always, then `pick` says whether it is read (before its data is: a
/// caller can make room for it first).
pub fn for_each_member_picking(
    name: &str,
    bytes: &[u8],
    limits: &Limits,
    pick: &mut dyn FnMut(&str, u64) -> Pick,
    f: &mut dyn FnMut(Member),
) -> Result<(), ArchiveError> {
    match detect(name, bytes) {
        Kind::TarGz => read_tar_gz(name, bytes, limits, pick, f),
        Kind::Zip => read_zip(name, bytes, limits, pick, f),
        Kind::Plain => read_plain(name, bytes, limits, pick, f),
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
    pick: &mut dyn FnMut(&str, u64) -> Pick,
    f: &mut dyn FnMut(Member),
) -> Result<(), ArchiveError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name).to_string();
    if pick(&base, bytes.len() as u64) != Pick::Read {
        return Ok(());
    }
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
    pick: &mut dyn FnMut(&str, u64) -> Pick,
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
    if read_tar_entries(name, &mut archive, &counter, limits, pick, f)? == Pick::Stop {
        return Ok(());
    }

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

/// The checks every regular member passes, whatever the container, before the caller picks it:
/// its declared size within the limit, its path not seen before in the archive.
fn admit(
    name: &str,
    shown: &str,
    path: &str,
    size: u64,
    limits: &Limits,
    seen: &mut HashSet<String>,
    pick: &mut dyn FnMut(&str, u64) -> Pick,
) -> Result<Pick, ArchiveError> {
    if size > limits.max_member_size {
        return Err(err(
            name,
            Some(shown),
            ArchiveErrorKind::MemberTooLarge {
                limit: limits.max_member_size,
            },
        ));
    }
    if !seen.insert(path.to_string()) {
        return Err(err(name, Some(shown), ArchiveErrorKind::Duplicate));
    }
    Ok(pick(path, size))
}

fn read_tar_entries<R: Read>(
    name: &str,
    archive: &mut tar::Archive<Counted<'_, R>>,
    counter: &Counter,
    limits: &Limits,
    pick: &mut dyn FnMut(&str, u64) -> Pick,
    f: &mut dyn FnMut(Member),
) -> Result<Pick, ArchiveError> {
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
        // Only regular files are members; a directory is passed over; anything else refuses
        // the archive, named by its kind.
        let refused = match entry.header().entry_type() {
            T::Regular | T::Continuous => None,
            T::Directory => continue,
            T::Symlink => Some(ArchiveErrorKind::Symlink {
                target: link_target(),
            }),
            T::Link => Some(ArchiveErrorKind::HardLink {
                target: link_target(),
            }),
            T::Char => Some(ArchiveErrorKind::Special("character device")),
            T::Block => Some(ArchiveErrorKind::Special("block device")),
            T::Fifo => Some(ArchiveErrorKind::Special("fifo")),
            T::GNUSparse => Some(ArchiveErrorKind::Special("sparse file")),
            other => Some(ArchiveErrorKind::CorruptTar(format!(
                "tar entry type {:?}",
                other.as_byte() as char
            ))),
        };
        if let Some(kind) = refused {
            return Err(err(name, Some(&shown), kind));
        }
        let declared = entry.size();
        match admit(name, &shown, &path, declared, limits, &mut seen, pick)? {
            Pick::Read => {}
            // The tar reader passes over the member's data on the next entry.
            Pick::Skip => continue,
            Pick::Stop => return Ok(Pick::Stop),
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
    Ok(Pick::Read)
}

fn read_zip(
    name: &str,
    bytes: &[u8],
    limits: &Limits,
    pick: &mut dyn FnMut(&str, u64) -> Pick,
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
        match admit(name, &shown, &path, file.size(), limits, &mut seen, pick)? {
            Pick::Read => {}
            Pick::Skip => continue,
            Pick::Stop => return Ok(()),
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
mod tests;
