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
    pub gid: u32,
    pub sid: u32,
    pub rev: u32,
    /// The [`TextHash`] as the 16 bytes its digits stand for ([`StoredRule::text_hash`]).
    hash: [u8; 16],
    pub enabled: bool,
    pub removed: bool,
    /// Index into [`StoredRules::files`]: a few dozen names shared by tens of thousands.
    file: u16,
}

impl StoredRule {
    pub fn text_hash(&self) -> TextHash {
        let mut h = [0u8; 32];
        // 16 bytes into 32 digits: cannot fail.
        let _ = hex::encode_to_slice(self.hash, &mut h);
        TextHash(h)
    }

    /// Whether `hash` is the hash of this rule's text.
    pub fn has_text(&self, hash: &TextHash) -> bool {
        let mut b = [0u8; 16];
        // A `TextHash` holds hex digits only (`text_hash`, `FromSql`).
        hex::decode_to_slice(hash.0, &mut b).is_ok() && b == self.hash
    }
}

/// Every rule the store holds for a source, in (gid, sid) order: 32 bytes a rule, a fifth of
/// what a hash map of them took (a day-2 ingest's largest allocation).
#[derive(Debug, Default)]
pub struct StoredRules {
    rules: Vec<StoredRule>,
    files: Vec<std::sync::Arc<str>>,
}

impl StoredRules {
    /// The position and row of rule (gid, sid).
    pub fn get(&self, key: (u32, u32)) -> Option<(usize, &StoredRule)> {
        let i = self
            .rules
            .binary_search_by_key(&key, |r| (r.gid, r.sid))
            .ok()?;
        Some((i, &self.rules[i]))
    }

    /// The rules file the stored row of `r` came from.
    pub fn file(&self, r: &StoredRule) -> &std::sync::Arc<str> {
        &self.files[usize::from(r.file)]
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rows in (gid, sid) order; [`StoredRules::get`] positions index it.
    pub fn iter(&self) -> std::slice::Iter<'_, StoredRule> {
        self.rules.iter()
    }
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
    /// Every rule of a source, for the in-memory diff.
    pub fn rules_of(&self, source: &str) -> anyhow::Result<StoredRules> {
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
pub fn rules_in(conn: &Connection, source: &str) -> anyhow::Result<StoredRules> {
    // The primary key's order, so the rows arrive sorted for `StoredRules::get`.
    let mut st = conn.prepare_cached(
        "SELECT gid, sid, rev, text_hash, enabled, removed, file FROM rules WHERE source = ?1
         ORDER BY source, gid, sid",
    )?;
    // Sized first: a vector doubling its way up holds the old copy and the new one at once.
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM rules WHERE source = ?1",
        [source],
        |r| r.get(0),
    )?;
    let mut out = StoredRules {
        rules: Vec::with_capacity(usize::try_from(n).unwrap_or(0)),
        files: Vec::new(),
    };
    let mut index: HashMap<std::sync::Arc<str>, u16> = HashMap::new();
    let mut rows = st.query([source])?;
    while let Some(r) = rows.next()? {
        let name = r.get_ref(6)?.as_str()?;
        let file = match index.get(name) {
            Some(&i) => i,
            None => {
                let i = u16::try_from(out.files.len()).map_err(|_| {
                    anyhow::anyhow!("source {source} has more than 65536 rules files")
                })?;
                let name: std::sync::Arc<str> = std::sync::Arc::from(name);
                out.files.push(name.clone());
                index.insert(name, i);
                i
            }
        };
        out.rules.push(StoredRule {
            gid: r.get(0)?,
            sid: r.get(1)?,
            rev: r.get(2)?,
            // Decoded once from the stored digits (no `TextHash` in between: the decode is
            // the check that they are 32 hex digits).
            hash: {
                let mut b = [0u8; 16];
                hex::decode_to_slice(r.get_ref(3)?.as_str()?, &mut b).map_err(|e| {
                    anyhow::anyhow!("the store is damaged: a text hash of source {source}: {e}")
                })?;
                b
            },
            enabled: r.get(4)?,
            removed: r.get(5)?,
            file,
        });
    }
    // Sorted by the query already; checked, since `get` depends on it.
    anyhow::ensure!(
        out.rules
            .windows(2)
            .all(|w| (w[0].gid, w[0].sid) < (w[1].gid, w[1].sid)),
        "the store returned the rules of {source} out of key order"
    );
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
