//! The verification gate: nothing reaches the spool unless it passes. Size equals Content-Length,
//! the archive decodes to its end, it holds at least one rule, and its md5 equals the published one.

use md5::{Digest, Md5};

use crate::archive::{self, Kind};
use crate::rules::{self, ParseOptions};

/// What an `.md5` companion said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishedMd5 {
    /// No `.md5` is published (404) or the source has none.
    None,
    /// The first 32-hex token, lowercased.
    Hex(String),
    /// A file was served but holds no md5 (e.g. an HTML error page): the gate refuses.
    Garbage(String),
}

/// The first 32-hex token of an `.md5` file, lowercased (any case; `md5sum` format works too).
pub fn parse_md5(text: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(text);
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|t| t.to_ascii_lowercase())
}

/// Classify a served `.md5` body.
pub fn published_md5(body: &[u8]) -> PublishedMd5 {
    match parse_md5(body) {
        Some(h) => PublishedMd5::Hex(h),
        None => {
            let head: String = String::from_utf8_lossy(&body[..body.len().min(60)])
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            PublishedMd5::Garbage(head.trim().to_string())
        }
    }
}

/// Lowercase hex md5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// Why the gate refused a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateError {
    /// Body length differs from Content-Length.
    Size { got: u64, expected: u64 },
    /// md5 differs from the published one (retryable a bounded number of times).
    Md5Mismatch { got: String, published: String },
    /// The `.md5` holds no checksum.
    Md5Garbage(String),
    /// Not a readable archive / rules file, or no rule in it.
    Content(String),
}

impl std::fmt::Display for GateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GateError::Size { got, expected } => write!(
                f,
                "received {got} bytes but Content-Length said {expected}: the download is incomplete"
            ),
            GateError::Md5Mismatch { got, published } => write!(
                f,
                "md5 of the download is {got} but upstream publishes {published}"
            ),
            GateError::Md5Garbage(head) => write!(
                f,
                "the published .md5 holds no md5 checksum (starts with {head:?}; an error page?)"
            ),
            GateError::Content(why) => f.write_str(why),
        }
    }
}

/// What passed the gate.
#[derive(Debug, Clone)]
pub struct Passed {
    pub md5: String,
    /// `Some(true)` when a published md5 matched; `None` when none was published.
    pub md5_matched: Option<bool>,
    pub rules: usize,
}

/// The checks that need only a download's size and md5: run on a body spooled to disk before it
/// is read back into memory, so a wrong or endless body never is.
pub fn check_digest(
    len: u64,
    md5: &str,
    content_length: Option<u64>,
    published: &PublishedMd5,
) -> Result<(), GateError> {
    if let Some(expected) = content_length.filter(|e| *e != len) {
        return Err(GateError::Size { got: len, expected });
    }
    match published {
        PublishedMd5::Hex(p) if p != md5 => Err(GateError::Md5Mismatch {
            got: md5.to_string(),
            published: p.clone(),
        }),
        PublishedMd5::Garbage(h) => Err(GateError::Md5Garbage(h.clone())),
        _ => Ok(()),
    }
}

/// Check a downloaded archive (or plain rules file) named `name`.
pub fn check_archive(
    name: &str,
    body: &[u8],
    content_length: Option<u64>,
    published: &PublishedMd5,
) -> Result<Passed, GateError> {
    check_size(body, content_length)?;
    let md5 = md5_hex(body);
    let md5_matched = match published {
        PublishedMd5::None => None,
        PublishedMd5::Garbage(h) => return Err(GateError::Md5Garbage(h.clone())),
        PublishedMd5::Hex(p) if *p == md5 => Some(true),
        PublishedMd5::Hex(p) => {
            return Err(GateError::Md5Mismatch {
                got: md5,
                published: p.clone(),
            })
        }
    };
    let (rules, distinct) = count_archive_rules(name, body).map_err(GateError::Content)?;
    if rules == 0 {
        return Err(GateError::Content(format!(
            "{name} decodes but holds no rule; refusing to publish an empty ruleset"
        )));
    }
    // A real ruleset repeats a few rules at most; members stuffed with copies of one rule are an
    // expansion attack on the ingest side (memory, store), not a ruleset.
    let duplicates = rules - distinct;
    if duplicates > distinct {
        return Err(GateError::Content(format!(
            "{name} holds {rules} rules but only {distinct} distinct (gid, sid): {duplicates} duplicates outnumber them; refusing to publish"
        )));
    }
    Ok(Passed {
        md5,
        md5_matched,
        rules,
    })
}

/// Check one plain block-list file: `.rules` must hold rules, `.txt` IP addresses or networks.
pub fn check_plain(
    name: &str,
    body: &[u8],
    content_length: Option<u64>,
) -> Result<usize, GateError> {
    check_size(body, content_length)?;
    let text = std::str::from_utf8(body)
        .map_err(|_| GateError::Content(format!("{name} is not text (UTF-8)")))?;
    if name.ends_with(".txt") {
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if !is_ip_or_cidr(l) {
                return Err(GateError::Content(format!(
                    "{name} line {}: {:?} is not an IP address or network",
                    i + 1,
                    l.chars().take(60).collect::<String>()
                )));
            }
            n += 1;
        }
        if n == 0 {
            return Err(GateError::Content(format!("{name} holds no IP address")));
        }
        Ok(n)
    } else {
        let n = count_rules(name, text);
        if n == 0 {
            return Err(GateError::Content(format!("{name} holds no rule")));
        }
        Ok(n)
    }
}

fn check_size(body: &[u8], content_length: Option<u64>) -> Result<(), GateError> {
    match content_length {
        Some(expected) if expected != body.len() as u64 => Err(GateError::Size {
            got: body.len() as u64,
            expected,
        }),
        _ => Ok(()),
    }
}

fn is_ip_or_cidr(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(ip) => match prefix {
            None => true,
            Some(p) => p
                .parse::<u8>()
                .is_ok_and(|p| p <= if ip.is_ipv4() { 32 } else { 128 }),
        },
        Err(_) => false,
    }
}

/// Decode the whole archive (to its end: a truncated gzip or tar fails here, see `archive`) and
/// count the rules in its `.rules` members with the real parser: all of them, and distinct
/// (gid, sid). A body is read as one plain rules
/// file only when its name says `.rules` and it is not an archive: a broken archive is never taken
/// for a rules file.
fn count_archive_rules(name: &str, body: &[u8]) -> Result<(usize, usize), String> {
    let lower = name.to_ascii_lowercase();
    let kind = archive::detect(name, body);
    match kind {
        Kind::Plain if !lower.ends_with(".rules") => {
            return Err(format!(
                "{name}: neither a tar.gz nor a zip archive; the URL must end in .tar.gz, .tgz, .zip or .rules"
            ))
        }
        Kind::TarGz | Kind::Zip if lower.ends_with(".rules") => {
            return Err(format!("{name} is an archive, not a rules file"))
        }
        _ => {}
    }
    let members = archive::read_archive(name, body, &archive::Limits::default())
        .map_err(|e| e.to_string())?;
    let opts = ParseOptions::default();
    let mut total = 0;
    let mut ids = std::collections::HashSet::new();
    for m in members.iter().filter(|m| rules::is_rules_file(&m.path)) {
        let parsed = rules::parse_bytes(&m.path, &m.data, &opts);
        total += parsed.rules.len();
        ids.extend(parsed.rules.iter().map(|r| (r.gid, r.sid)));
    }
    Ok((total, ids.len()))
}

/// Rules (enabled or shipped disabled) in a rules file, by the real parser.
fn count_rules(name: &str, text: &str) -> usize {
    rules::parse_bytes(name, text.as_bytes(), &ParseOptions::default())
        .rules
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_token_is_found_in_any_case_and_format() {
        let h = "3ed507977921535c79d7d322803cdd34";
        assert_eq!(parse_md5(format!("{h}\n").as_bytes()).as_deref(), Some(h));
        assert_eq!(parse_md5(h.to_uppercase().as_bytes()).as_deref(), Some(h));
        assert_eq!(
            parse_md5(format!("{h}  emerging.rules.tar.gz\n").as_bytes()).as_deref(),
            Some(h)
        );
        assert_eq!(
            parse_md5(b"<html><body>502 Bad Gateway</body></html>"),
            None
        );
        assert!(matches!(
            published_md5(b"<html>\n<title>Error</title>"),
            PublishedMd5::Garbage(_)
        ));
    }

    #[test]
    fn ip_lists_are_checked() {
        assert_eq!(
            check_plain("x.txt", b"# hdr\n1.2.3.4\n10.0.0.0/8\n", None),
            Ok(2)
        );
        assert!(check_plain("x.txt", b"1.2.3.4\n<html>\n", None).is_err());
        assert!(check_plain("x.txt", b"10.0.0.0/33\n", None).is_err());
        assert!(check_plain("x.txt", b"# nothing\n", None).is_err());
    }

    const SURI_2017: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/et-open-suricata-1.3-enhanced-2017-03-10/emerging.rules.tar.gz"
    );

    #[test]
    fn real_archive_passes_with_every_rule_counted() {
        let body = std::fs::read(SURI_2017).unwrap();
        let md5 = PublishedMd5::Hex("3ed507977921535c79d7d322803cdd34".into());
        let p = check_archive(
            "emerging.rules.tar.gz",
            &body,
            Some(body.len() as u64),
            &md5,
        )
        .unwrap();
        assert_eq!(p.md5_matched, Some(true));
        // SOURCES.md: 19,556 enabled + 4,350 commented rules.
        assert_eq!(p.rules, 23_906);
    }

    #[test]
    fn broken_downloads_never_pass() {
        let body = std::fs::read(SURI_2017).unwrap();
        let cut = &body[..body.len() - 100];
        let none = PublishedMd5::None;
        let e = check_archive("emerging.rules.tar.gz", cut, None, &none).unwrap_err();
        assert!(matches!(e, GateError::Content(_)), "{e}");
        let e = check_archive("emerging.rules.tar.gz", cut, Some(body.len() as u64), &none)
            .unwrap_err();
        assert!(matches!(e, GateError::Size { .. }), "{e}");
        // An HTML error page served as the archive, or an archive served as a .rules file.
        let html = b"<html><body>Service Unavailable</body></html>";
        assert!(check_archive("emerging.rules.tar.gz", html, None, &none).is_err());
        assert!(check_archive("hunting.rules", &body, None, &none).is_err());
        assert!(check_archive("x.rules", b"# only a comment\n", None, &none).is_err());
    }

    #[test]
    fn duplicates_outnumbering_distinct_rules_are_refused_with_the_counts() {
        let rule = "alert tcp any any -> any any (msg:\"x\"; sid:2000001; rev:1;)\n";
        let other = "alert tcp any any -> any any (msg:\"y\"; sid:2000002; rev:1;)\n";
        let none = PublishedMd5::None;
        // One copy too many is fine (1 duplicate, 2 distinct); three copies are not.
        let ok = format!("{rule}{rule}{other}");
        assert!(check_archive("x.rules", ok.as_bytes(), None, &none).is_ok());
        let bad = format!("{rule}{rule}{rule}{rule}{other}");
        let e = check_archive("x.rules", bad.as_bytes(), None, &none).unwrap_err();
        assert!(
            e.to_string().contains("5 rules but only 2 distinct")
                && e.to_string().contains("3 duplicates"),
            "{e}"
        );
    }
}
