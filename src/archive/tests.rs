//! The archive reader against hand-made archives: unsafe paths, links, limits, corrupt data.
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
fn picking_reads_only_the_members_asked_for_and_stops_when_told() {
    let entries = [
        tar_entry("rules/a.rules", tar::EntryType::Regular, "", RULE),
        tar_entry("rules/b.rules", tar::EntryType::Regular, "", b"b"),
        tar_entry("rules/c.rules", tar::EntryType::Regular, "", b"c"),
    ];
    let mut bytes = gz(&tar_of(&entries));
    let read = |bytes: &[u8], stop_after: &str| {
        let (mut asked, mut got) = (Vec::new(), Vec::new());
        let mut stop = false;
        let r = for_each_member_picking(
            "t.tar.gz",
            bytes,
            &small(),
            &mut |p, _| {
                asked.push(p.to_string());
                if stop {
                    return Pick::Stop;
                }
                stop = p == stop_after;
                if p == "rules/a.rules" {
                    Pick::Skip
                } else {
                    Pick::Read
                }
            },
            &mut |m| got.push((m.path, m.data)),
        );
        (r, asked, got)
    };
    // a skipped, b read, c read; the archive checked to its end.
    let (r, asked, got) = read(&bytes, "");
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(asked.len(), 3);
    assert_eq!(
        got,
        vec![
            ("rules/b.rules".to_string(), b"b".to_vec()),
            ("rules/c.rules".to_string(), b"c".to_vec())
        ]
    );
    // Stopped after b: c is never read, and neither is a corrupt trailer behind it (which
    // a full read reports).
    let n = bytes.len();
    bytes[n - 8] ^= 0xff;
    assert!(read_archive("t.tar.gz", &bytes, &small()).is_err());
    let (r, asked, got) = read(&bytes, "rules/b.rules");
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(asked, ["rules/a.rules", "rules/b.rules", "rules/c.rules"]);
    assert_eq!(got, vec![("rules/b.rules".to_string(), b"b".to_vec())]);
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
    let e = read_tgz(&[tar_entry("/etc/passwd", tar::EntryType::Regular, "", RULE)]).unwrap_err();
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
