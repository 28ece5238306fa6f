//! Bare ruleset archives dropped into the inbox by hand (no DMZ fetcher, no signed manifest):
//! which source they belong to, which version they are, and whether a `.md5` beside them matches.
//!
//! Everything after attribution follows the bundle path (journal, limits, parse, diff, gate, store,
//! sinks); this module only answers the questions a manifest would have answered.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::archive::Member;

/// One `archive_sources` entry of watch.yaml: dropped files whose name matches `match` belong to
/// this source.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSource {
    /// Glob on the dropped file's name, e.g. `emerging.rules*.tar.gz`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Catalog id: et-open | et-open-nogpl | et-pro | et-blockrules | custom.
    pub ruleset: String,
    /// Engine flavour; when absent it is taken from the ET marker inside the archive.
    #[serde(default)]
    pub engine: Option<String>,
    /// Source name; default `<ruleset>-<engine>` (or `<ruleset>` without an engine).
    #[serde(default)]
    pub name: Option<String>,
}

/// The source a dropped archive was attributed to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub name: String,
    pub ruleset: String,
    pub engine: Option<String>,
    /// How it was decided, for the report (e.g. `archive_sources[0]`, `marker file rules/x.txt`).
    pub how: String,
}

/// Catalog ids a dropped archive may be attributed to.
pub use crate::ingest::config::RULESETS;

/// The default source name for a ruleset and engine, as the fetcher names them.
pub fn source_name(ruleset: &str, engine: Option<&str>) -> String {
    match engine {
        Some(e) => format!("{ruleset}-{e}"),
        None => ruleset.to_string(),
    }
}

/// Check `archive_sources` entries (glob syntax, ruleset ids); returns a message naming the entry.
pub fn validate(sources: &[ArchiveSource]) -> Result<(), String> {
    for (i, s) in sources.iter().enumerate() {
        globset::Glob::new(&s.pattern)
            .map_err(|e| format!("archive_sources[{i}].match {:?}: {e}", s.pattern))?;
        if !RULESETS.contains(&s.ruleset.as_str()) {
            return Err(format!(
                "archive_sources[{i}].ruleset {:?}: allowed are {}",
                s.ruleset,
                RULESETS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Decide the source of a dropped archive: the first matching `archive_sources` entry, else the ET
/// marker file, else the "optimized for" header line of its rule files.
pub fn attribute(
    file_name: &str,
    members: &[Member],
    sources: &[ArchiveSource],
) -> Result<Attribution, String> {
    let detected = detect_flavour(members);
    for (i, s) in sources.iter().enumerate() {
        let Ok(glob) = globset::Glob::new(&s.pattern) else {
            continue;
        };
        if glob.compile_matcher().is_match(file_name) {
            let engine = s
                .engine
                .clone()
                .or_else(|| detected.as_ref().and_then(|d| d.engine.clone()));
            let name = s
                .name
                .clone()
                .unwrap_or_else(|| source_name(&s.ruleset, engine.as_deref()));
            return Ok(Attribution {
                name,
                ruleset: s.ruleset.clone(),
                engine,
                how: format!("archive_sources[{i}] (match {:?})", s.pattern),
            });
        }
    }
    if let Some(d) = detected {
        return Ok(Attribution {
            name: source_name(&d.ruleset, d.engine.as_deref()),
            ruleset: d.ruleset,
            engine: d.engine,
            how: d.how,
        });
    }
    Err(format!(
        "cannot tell which ruleset {file_name} is: no archive_sources entry matches it, and it has \
         no ET marker file (like rules/suricata-5.0-enhanced-open.txt) and no \"optimized for\" line. \
         Add an entry to watch.yaml, for example:\n  archive_sources:\n    - match: \"{file_name}\"\n      \
         ruleset: et-open\n      engine: suricata-7.0.3"
    ))
}

struct Detected {
    ruleset: String,
    engine: Option<String>,
    how: String,
}

/// ET marks the flavour with an empty file `<flavour>-open.txt` (ET Open) and with a header line
/// "This Ruleset is EmergingThreats Open optimized for <flavour>." in every rule file.
/// The ET Pro spelling is inferred (no public Pro archive): `-etpro.txt` / "EmergingThreats Pro".
fn detect_flavour(members: &[Member]) -> Option<Detected> {
    for m in members {
        let base = m.path.rsplit('/').next().unwrap_or(&m.path);
        let (flavour, ruleset) = if let Some(f) = base.strip_suffix("-open-nogpl.txt") {
            (f, "et-open-nogpl")
        } else if let Some(f) = base.strip_suffix("-open.txt") {
            (f, "et-open")
        } else if let Some(f) = base.strip_suffix("-etpro.txt") {
            (f, "et-pro")
        } else {
            continue;
        };
        if looks_like_flavour(flavour) {
            return Some(Detected {
                ruleset: ruleset.to_string(),
                engine: Some(engine_of(flavour)),
                how: format!("marker file {}", m.path),
            });
        }
    }
    const NEEDLE: &[u8] = b"optimized for ";
    let finder = memchr::memmem::Finder::new(NEEDLE);
    for m in members.iter().filter(|m| m.path.ends_with(".rules")) {
        // The line sits in the licence header; looking at the first 4 KiB is enough.
        let head = &m.data[..m.data.len().min(4096)];
        let Some(pos) = finder.find(head) else {
            continue;
        };
        let line_start = head[..pos]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let line = String::from_utf8_lossy(&head[line_start..]);
        let line = line.lines().next().unwrap_or("");
        let flavour = line[line.find("optimized for ").map_or(0, |p| p + 14)..]
            .trim()
            .trim_end_matches('.');
        let ruleset = if line.contains("EmergingThreats Pro") || line.contains("ETPro") {
            "et-pro"
        } else if line.contains("EmergingThreats Open") {
            "et-open"
        } else {
            continue;
        };
        if looks_like_flavour(flavour) {
            return Some(Detected {
                ruleset: ruleset.to_string(),
                engine: Some(engine_of(flavour)),
                how: format!("\"optimized for\" line in {}", m.path),
            });
        }
    }
    None
}

fn looks_like_flavour(f: &str) -> bool {
    (f.starts_with("suricata") || f.starts_with("snort"))
        && f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// `suricata-5.0-enhanced` → `suricata-5.0`: the engine path segment the fetcher uses, so a dropped
/// archive and a fetched bundle of the same flavour are the same source.
fn engine_of(flavour: &str) -> String {
    flavour
        .strip_suffix("-enhanced")
        .unwrap_or(flavour)
        .to_string()
}

/// How an archive's version was determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionBasis {
    /// Newest `updated_at` / `created_at` in the rules' metadata.
    RuleMetadata,
    /// Newest member modification time (no dated metadata).
    MemberMtime,
}

/// An archive's version, for replay protection without a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveVersion {
    pub at: DateTime<Utc>,
    pub basis: VersionBasis,
    /// Where the newest date is: `rules/x.rules line 12 (sid 2012345)`, or the member's path.
    pub found_in: String,
}

/// The newest `updated_at` / `created_at` date in the `.rules` members, else the newest mtime.
pub fn archive_version(members: &[Member]) -> Option<ArchiveVersion> {
    // (date, member index, byte offset) of the newest date seen.
    let mut newest: Option<(NaiveDate, usize, usize)> = None;
    let finders = [
        memchr::memmem::Finder::new(b"updated_at "),
        memchr::memmem::Finder::new(b"created_at "),
    ];
    for (i, m) in members.iter().enumerate() {
        if !m.path.ends_with(".rules") {
            continue;
        }
        for f in &finders {
            for pos in f.find_iter(&m.data) {
                let start = pos + f.needle().len();
                let Some(raw) = m.data.get(start..start + 10) else {
                    continue;
                };
                if let Some(d) = std::str::from_utf8(raw)
                    .ok()
                    .and_then(|s| NaiveDate::parse_from_str(s, "%Y_%m_%d").ok())
                {
                    if newest.is_none_or(|(n, _, _)| d > n) {
                        newest = Some((d, i, pos));
                    }
                }
            }
        }
    }
    if let Some((d, i, pos)) = newest {
        let at = d.and_hms_opt(0, 0, 0)?.and_utc();
        return Some(ArchiveVersion {
            at,
            basis: VersionBasis::RuleMetadata,
            found_in: rule_at(&members[i], pos),
        });
    }
    let (mtime, i) = members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.mtime.map(|t| (t, i)))
        .max()?;
    Some(ArchiveVersion {
        at: DateTime::from_timestamp(mtime, 0)?,
        basis: VersionBasis::MemberMtime,
        found_in: members[i].path.clone(),
    })
}

/// `path line N (sid S)` of the rule around byte `pos` of a member, for messages.
fn rule_at(m: &Member, pos: usize) -> String {
    let line = memchr::memchr_iter(b'\n', &m.data[..pos]).count() + 1;
    let start = memchr::memrchr(b'\n', &m.data[..pos]).map_or(0, |p| p + 1);
    let end = memchr::memchr(b'\n', &m.data[pos..]).map_or(m.data.len(), |p| pos + p);
    let text = String::from_utf8_lossy(&m.data[start..end]);
    let sid = text
        .split(';')
        .filter_map(|opt| opt.trim().strip_prefix("sid:"))
        .map(|v| v.trim().to_string())
        .next();
    match sid {
        Some(sid) => format!("{} line {line} (sid {sid})", m.path),
        None => format!("{} line {line}", m.path),
    }
}

/// The first 32-hex token of a `.md5` file, lowercased (`md5sum` format and bare hashes both work).
pub fn md5_token(text: &[u8]) -> Option<String> {
    text.split(|b| !b.is_ascii_hexdigit())
        .find(|tok| tok.len() == 32)
        .map(|tok| String::from_utf8_lossy(tok).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(path: &str, data: &str) -> Member {
        Member {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mtime: Some(1_600_000_000),
        }
    }

    #[test]
    fn marker_file_names_ruleset_and_engine() {
        let ms = [
            member("rules/emerging-dns.rules", "# x\n"),
            member("rules/suricata-5.0-enhanced-open.txt", ""),
        ];
        let a = attribute("emerging.rules.tar.gz", &ms, &[]).unwrap();
        assert_eq!(a.name, "et-open-suricata-5.0");
        assert_eq!(a.engine.as_deref(), Some("suricata-5.0"));
        assert!(a.how.contains("marker"));
    }

    #[test]
    fn optimized_for_line_is_the_fallback() {
        let ms = [member(
            "rules/emerging-dns.rules",
            "#\n# This Ruleset is EmergingThreats Open optimized for snort-2.9.0-enhanced.\n#\n",
        )];
        let a = attribute("x.tar.gz", &ms, &[]).unwrap();
        assert_eq!(
            (a.ruleset.as_str(), a.name.as_str()),
            ("et-open", "et-open-snort-2.9.0")
        );
    }

    #[test]
    fn archive_sources_win_and_unknown_archives_get_a_hint() {
        let rules = [ArchiveSource {
            pattern: "hunting*.rules".into(),
            ruleset: "custom".into(),
            engine: None,
            name: Some("hunting".into()),
        }];
        let ms = [member(
            "hunting-2024.rules",
            "alert tcp any any -> any any (sid:1;)\n",
        )];
        assert_eq!(
            attribute("hunting-2024.rules", &ms, &rules).unwrap().name,
            "hunting"
        );
        let err = attribute("local.rules", &ms, &rules).unwrap_err();
        assert!(
            err.contains("archive_sources") && err.contains("match: \"local.rules\""),
            "{err}"
        );
    }

    #[test]
    fn version_is_newest_metadata_date_else_mtime() {
        let ms = [member(
            "rules/a.rules",
            "alert x (metadata:created_at 2010_07_30, updated_at 2019_07_26; sid:1;)\n\
             alert x (metadata:created_at 2024_04_19; sid:2;)\n",
        )];
        let v = archive_version(&ms).unwrap();
        assert_eq!(v.basis, VersionBasis::RuleMetadata);
        assert_eq!(v.at.format("%Y-%m-%d").to_string(), "2024-04-19");
        let v = archive_version(&[member("rules/b.rules", "no dates\n")]).unwrap();
        assert_eq!(v.basis, VersionBasis::MemberMtime);
        assert_eq!(v.at.timestamp(), 1_600_000_000);
    }

    #[test]
    fn md5_token_takes_first_32_hex_run() {
        assert_eq!(
            md5_token(b"3ED507977921535C79D7D322803CDD34  emerging.rules.tar.gz\n").as_deref(),
            Some("3ed507977921535c79d7d322803cdd34")
        );
        assert_eq!(md5_token(b"<html><body>404 Not Found</body></html>"), None);
    }
}
