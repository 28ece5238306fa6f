//! Rules: the row types, the rule text hash, what the diff reads (`rules_in`, `labels_in`) and
//! the counts. Writing a bundle's rows is `writer`'s.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{ArchiveImport, Indicator, Provenance, Store};

/// One rule as the pipeline hands it to the store. Its text is not here: the store keeps the
/// payload it came from and reads texts back from that ([`Store::texts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    pub gid: u32,
    pub sid: u32,
    pub rev: u32,
    pub msg: std::sync::Arc<str>,
    /// Hash of the rule text without any leading `#` ([`text_hash`]), to see a text change
    /// without a rev bump and to check a text read back from the payload.
    pub hash: TextHash,
    /// Shipped enabled (standard) or commented out (non-standard).
    pub enabled: bool,
    /// Shared between the rules that name the same one (a few dozen names in all).
    pub classtype: Option<std::sync::Arc<str>>,
    /// Second word of `msg` (`MALWARE` in `ET MALWARE …`), shared like `classtype`.
    pub category: Option<std::sync::Arc<str>>,
    /// Rules file inside the ruleset, e.g. `rules/emerging-info.rules`.
    pub file: std::sync::Arc<str>,
    pub line: usize,
}

/// Short content hash of a rule text: the first 16 bytes of its SHA-256, as the 32 lowercase
/// hex digits the store keeps. Held inline (no allocation): a full ruleset has tens of thousands.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextHash([u8; 32]);

impl TextHash {
    pub fn as_str(&self) -> &str {
        // Only ever built from hex digits (`text_hash`, `FromSql`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for TextHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for TextHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl rusqlite::ToSql for TextHash {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(&self.0),
        ))
    }
}

impl rusqlite::types::FromSql for TextHash {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let t = v.as_str()?;
        let ok = t.len() == 32 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(rusqlite::types::FromSqlError::Other(
                format!("not a text hash (32 lowercase hex digits): {t:?}").into(),
            ));
        }
        let mut h = [0u8; 32];
        h.copy_from_slice(t.as_bytes());
        Ok(TextHash(h))
    }
}

/// The [`TextHash`] of a rule text.
pub fn text_hash(text: &str) -> TextHash {
    use sha2::{Digest, Sha256};
    let mut h = [0u8; 32];
    // A 32-byte buffer for 16 bytes: encoding cannot fail.
    let _ = hex::encode_to_slice(&Sha256::digest(text.as_bytes())[..16], &mut h);
    TextHash(h)
}

/// What the store holds for one rule, as the diff needs it (msg and category of a removed rule
/// come from [`Store::rule_labels`], so a full ruleset's diff does not load every msg).
#[derive(Debug, Clone)]
pub struct StoredRule {
    pub rev: u32,
    pub text_hash: TextHash,
    pub enabled: bool,
    pub removed: bool,
    /// Shared between the rules of one file.
    pub file: std::sync::Arc<str>,
}

/// msg and category of a rule.
pub type Label = (String, Option<String>);

/// Everything one bundle changes, written in one transaction.
pub struct StoreBatch<'a> {
    pub bundle: &'a str,
    pub source: &'a str,
    pub ruleset: &'a str,
    pub engine: Option<&'a str>,
    pub sequence: u64,
    pub created_at: DateTime<Utc>,
    pub lifetime_secs: i64,
    /// (gid, sid) of rules in the store that are gone from the bundle.
    pub removed: &'a [(u32, u32)],
    /// The history rows of the changes (the rule rows are written as the rules arrive,
    /// [`BundleTx::put_rules`](super::BundleTx::put_rules)).
    pub history: &'a [super::Change],
    /// Where the texts the bundle replaces or removes are in the old payload.
    pub replaced: &'a [super::TextRef],
    /// `None`: the bundle carried no IP list, keep the old indicators.
    pub indicators: Option<&'a [Indicator]>,
    /// Set for a bare archive: recorded as the source's last accepted archive, in the same
    /// transaction.
    pub archive: Option<ArchiveImport>,
    /// Set for a `sync` download: recorded as the provenance of the source's rules.
    pub download: Option<Provenance>,
}

impl Store {
    /// Every rule of a source, keyed by (gid, sid), for the in-memory diff.
    pub fn rules_of(&self, source: &str) -> anyhow::Result<HashMap<(u32, u32), StoredRule>> {
        rules_in(&self.conn, source)
    }

    /// msg and category of some rules of a source.
    pub fn rule_labels(
        &self,
        source: &str,
        keys: &[(u32, u32)],
    ) -> anyhow::Result<HashMap<(u32, u32), Label>> {
        labels_in(&self.conn, source, keys)
    }

    /// (rules, standard, non-standard) currently in a source (removed rules not counted).
    pub fn rule_counts(&self, source: &str) -> anyhow::Result<(u64, u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(enabled), 0), COALESCE(SUM(1 - enabled), 0)
             FROM rules WHERE source = ?1 AND removed = 0",
            [source],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            },
        )?)
    }

    pub fn indicator_count(&self, source: &str) -> anyhow::Result<u64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM indicators WHERE source = ?1",
            [source],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}

/// What the store holds for each rule of a source, as the diff needs it.
pub fn rules_in(
    conn: &Connection,
    source: &str,
) -> anyhow::Result<HashMap<(u32, u32), StoredRule>> {
    let mut st = conn.prepare_cached(
        "SELECT gid, sid, rev, text_hash, enabled, removed, file FROM rules WHERE source = ?1",
    )?;
    let mut out = HashMap::new();
    let mut files: HashMap<String, std::sync::Arc<str>> = HashMap::new();
    let mut rows = st.query([source])?;
    while let Some(r) = rows.next()? {
        let file = r.get_ref(6)?.as_str()?;
        let file = match files.get(file) {
            Some(f) => f.clone(),
            None => {
                let f: std::sync::Arc<str> = std::sync::Arc::from(file);
                files.insert(file.to_string(), f.clone());
                f
            }
        };
        out.insert(
            (r.get(0)?, r.get(1)?),
            StoredRule {
                rev: r.get(2)?,
                text_hash: r.get(3)?,
                enabled: r.get(4)?,
                removed: r.get(5)?,
                file,
            },
        );
    }
    Ok(out)
}

/// msg and category of some rules of a source.
pub fn labels_in(
    conn: &Connection,
    source: &str,
    keys: &[(u32, u32)],
) -> anyhow::Result<HashMap<(u32, u32), Label>> {
    let mut st = conn.prepare_cached(
        "SELECT msg, category FROM rules WHERE source = ?1 AND gid = ?2 AND sid = ?3",
    )?;
    let mut out = HashMap::with_capacity(keys.len());
    for &(gid, sid) in keys {
        if let Some(v) = st
            .query_row(params![source, gid, sid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
        {
            out.insert((gid, sid), v);
        }
    }
    Ok(out)
}
