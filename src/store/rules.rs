//! Rules and their history: the rows the diff reads, and `store_bundle`, which writes one
//! bundle in one transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::bundles::journal_in;
use super::payload::texts_in;
use super::{now_text, ArchiveImport, Indicator, Provenance, Store};

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
    pub hash: String,
    /// Shipped enabled (standard) or commented out (non-standard).
    pub enabled: bool,
    pub classtype: Option<String>,
    /// Second word of `msg` (`MALWARE` in `ET MALWARE …`).
    pub category: Option<String>,
    /// Rules file inside the ruleset, e.g. `rules/emerging-info.rules`.
    pub file: std::sync::Arc<str>,
    pub line: usize,
}

/// Short content hash of a rule text.
pub fn text_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// What the store holds for one rule, as the diff needs it (msg and category of a removed rule
/// come from [`Store::rule_labels`], so a full ruleset's diff does not load every msg).
#[derive(Debug, Clone)]
pub struct StoredRule {
    pub rev: u32,
    pub text_hash: String,
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
    /// The full new rule set of the source (deduplicated).
    pub rules: &'a [NewRule],
    /// (gid, sid) of rules in the store that are gone from the bundle.
    pub removed: &'a [(u32, u32)],
    /// Change kind per (gid, sid) for the history (`added` again after a removal, `modified`,
    /// `enabled_changed`), or `new` for a rule the store never held (no history row).
    pub changes: &'a HashMap<(u32, u32), &'static str>,
    /// Unchanged rules that moved to another rules file: their row's `file` is updated.
    pub moved: &'a std::collections::HashSet<(u32, u32)>,
    /// `None`: the bundle carried no IP list, keep the old indicators.
    pub indicators: Option<&'a [Indicator]>,
    /// The verified payload files `(name, bytes)` as they arrived: they replace the source's
    /// stored payload, which is where rule texts are read from.
    pub payload: &'a [(String, Vec<u8>)],
    /// Set for a bare archive: recorded as the source's last accepted archive, in the same
    /// transaction.
    pub archive: Option<ArchiveImport>,
    /// Set for a `sync` download: recorded as the provenance of the source's rules.
    pub download: Option<Provenance>,
}

impl Store {
    /// Every rule of a source, keyed by (gid, sid), for the in-memory diff.
    pub fn rules_of(&self, source: &str) -> anyhow::Result<HashMap<(u32, u32), StoredRule>> {
        let mut st = self.conn.prepare_cached(
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
    pub fn rule_labels(
        &self,
        source: &str,
        keys: &[(u32, u32)],
    ) -> anyhow::Result<HashMap<(u32, u32), Label>> {
        let mut st = self.conn.prepare_cached(
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

    /// Store one bundle's rules, indicators, history and sequence in one transaction, and move its
    /// journal to `stored`. `report_gz` gives the change report as gzipped JSON
    /// ([`gzip_json`](super::gzip_json)); it is called last, so it can be made while the rules
    /// are written. `crash_hook` runs just before the commit (test hook for kill -9).
    pub fn store_bundle(
        &mut self,
        b: &StoreBatch<'_>,
        report_gz: impl FnOnce() -> anyhow::Result<Vec<u8>>,
        crash_hook: impl Fn(),
    ) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            // The texts the new payload replaces: history keeps them for modified rules, and a
            // removed rule keeps its last text in its row.
            let mut need: Vec<(u32, u32)> = b.removed.to_vec();
            need.extend(
                b.changes
                    .iter()
                    .filter(|(_, c)| **c == "modified")
                    .map(|(k, _)| *k),
            );
            let old_texts = texts_in(&tx, b.source, &need)?;
            let mut hist = tx.prepare_cached(
                "INSERT INTO rule_history (source, gid, sid, bundle, change, rev, enabled, text_hash,
                                           previous_text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            // In key order: the index B-trees then grow at their ends instead of being split
            // all over, which matters for a full ruleset.
            let mut order: Vec<&NewRule> = b.rules.iter().collect();
            order.sort_unstable_by_key(|r| (r.gid, r.sid));
            let mut rows: Vec<&NewRule> = Vec::new();
            for r in order {
                // Unchanged rules keep their row: only what changed is written, and a rule whose
                // rules file changed (no report entry) gets its row's file updated.
                match b.changes.get(&(r.gid, r.sid)).copied() {
                    // A rule new to the store has no history yet: the bundle's report records
                    // its arrival, and the row is its first version.
                    Some("new") => {}
                    Some(change) => {
                        let previous = if change == "modified" {
                            old_texts
                                .get(&(r.gid, r.sid))
                                .filter(|(h, _)| *h != r.hash)
                                .map(|(_, t)| t.as_str())
                        } else {
                            None
                        };
                        hist.execute(params![
                            b.source, r.gid, r.sid, b.bundle, change, r.rev, r.enabled, r.hash,
                            previous
                        ])?;
                    }
                    None if b.moved.contains(&(r.gid, r.sid)) => {}
                    None => continue,
                }
                rows.push(r);
            }
            for chunk in rows.chunks(UPSERT_BATCH) {
                upsert_rules(&tx, b, chunk)?;
            }
            let mut remove = tx.prepare_cached(
                "UPDATE rules SET removed = 1, bundle = ?4, text = ?5
                 WHERE source = ?1 AND gid = ?2 AND sid = ?3",
            )?;
            let mut hist_removed = tx.prepare_cached(
                "INSERT INTO rule_history (source, gid, sid, bundle, change, rev, enabled, text_hash,
                                           previous_text)
                 SELECT source, gid, sid, ?4, 'removed', rev, enabled, text_hash, ?5 FROM rules
                 WHERE source = ?1 AND gid = ?2 AND sid = ?3",
            )?;
            for (gid, sid) in b.removed {
                let text = old_texts.get(&(*gid, *sid)).map(|(_, t)| t.as_str());
                hist_removed.execute(params![b.source, gid, sid, b.bundle, text])?;
                remove.execute(params![b.source, gid, sid, b.bundle, text])?;
            }
            tx.execute("DELETE FROM payload_files WHERE source = ?1", [b.source])?;
            let mut put = tx.prepare_cached(
                "INSERT INTO payload_files (source, seq, name, sha256, bundle, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (i, (name, data)) in b.payload.iter().enumerate() {
                use sha2::{Digest, Sha256};
                let sha = hex::encode(Sha256::digest(data));
                put.execute(params![b.source, i as i64, name, sha, b.bundle, data])?;
            }
            if let Some(inds) = b.indicators {
                tx.execute("DELETE FROM indicators WHERE source = ?1", [b.source])?;
                let mut ins = tx.prepare_cached(
                    "INSERT OR IGNORE INTO indicators (source, value, kind, section, file, bundle)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for i in inds {
                    ins.execute(params![
                        b.source, i.value, i.kind, i.section, i.file, b.bundle
                    ])?;
                }
            }
            let now = now_text();
            tx.execute(
                "INSERT INTO sources (name, ruleset, engine, last_sequence, last_bundle,
                                      last_bundle_at, last_seen_at, lifetime_secs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (name) DO UPDATE SET ruleset = excluded.ruleset,
                    engine = excluded.engine, last_sequence = excluded.last_sequence,
                    last_bundle = excluded.last_bundle, last_bundle_at = excluded.last_bundle_at,
                    last_seen_at = excluded.last_seen_at, lifetime_secs = excluded.lifetime_secs",
                params![
                    b.source,
                    b.ruleset,
                    b.engine,
                    b.sequence as i64,
                    b.bundle,
                    b.created_at.to_rfc3339(),
                    now,
                    b.lifetime_secs
                ],
            )?;
            if let Some(a) = &b.archive {
                tx.execute(
                    "INSERT INTO archive_imports (source, version_at, sha256, bundle, file, imported_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (source) DO UPDATE SET version_at = excluded.version_at,
                        sha256 = excluded.sha256, bundle = excluded.bundle, file = excluded.file,
                        imported_at = excluded.imported_at",
                    params![
                        b.source,
                        a.version_at.to_rfc3339(),
                        a.sha256,
                        a.bundle,
                        a.file,
                        now
                    ],
                )?;
            }
            if let Some(d) = &b.download {
                tx.execute(
                    "INSERT OR REPLACE INTO downloads (bundle, source, url, md5, downloaded_at)
                     VALUES (?2, ?1, ?3, ?4, ?5)",
                    params![
                        b.source,
                        b.bundle,
                        d.url,
                        d.md5,
                        d.downloaded_at.to_rfc3339()
                    ],
                )?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO reports (bundle, report) VALUES (?1, ?2)",
                params![b.bundle, report_gz()?],
            )?;
            journal_in(
                &tx,
                b.bundle,
                Some(b.source),
                Some(b.sequence),
                "stored",
                "in-progress",
                None,
            )?;
        }
        crash_hook();
        tx.commit()?;
        Ok(())
    }
}

/// Rows per INSERT statement when a bundle's rules are written: one statement per rule spends
/// more time starting and finishing statements than inserting.
const UPSERT_BATCH: usize = 64;

/// Insert or update the rows of `rules` (at most [`UPSERT_BATCH`]) with one statement.
fn upsert_rules(tx: &Connection, b: &StoreBatch<'_>, rules: &[&NewRule]) -> anyhow::Result<()> {
    const COLS: usize = 11;
    let values = vec!["(?, ?, ?, ?, ?, NULL, ?, ?, 0, ?, ?, ?, ?)"; rules.len()].join(", ");
    let sql = format!(
        "INSERT INTO rules (source, gid, sid, rev, msg, text, text_hash, enabled, removed,
                            classtype, category, file, bundle)
         VALUES {values}
         ON CONFLICT (source, gid, sid) DO UPDATE SET
            rev = excluded.rev, msg = excluded.msg, text = NULL,
            text_hash = excluded.text_hash, enabled = excluded.enabled, removed = 0,
            classtype = excluded.classtype, category = excluded.category,
            file = excluded.file, bundle = excluded.bundle"
    );
    let mut st = tx.prepare_cached(&sql)?;
    for (i, r) in rules.iter().enumerate() {
        let at = i * COLS;
        st.raw_bind_parameter(at + 1, b.source)?;
        st.raw_bind_parameter(at + 2, r.gid)?;
        st.raw_bind_parameter(at + 3, r.sid)?;
        st.raw_bind_parameter(at + 4, r.rev)?;
        st.raw_bind_parameter(at + 5, &*r.msg)?;
        st.raw_bind_parameter(at + 6, &r.hash)?;
        st.raw_bind_parameter(at + 7, r.enabled)?;
        st.raw_bind_parameter(at + 8, &r.classtype)?;
        st.raw_bind_parameter(at + 9, &r.category)?;
        st.raw_bind_parameter(at + 10, &*r.file)?;
        st.raw_bind_parameter(at + 11, b.bundle)?;
    }
    st.raw_execute()?;
    Ok(())
}
