//! The embedded store (SQLite, bundled, WAL): the system of record on the air-gapped side.
//!
//! It keeps, per source, every rule with its current version and a history row per change, the
//! indicators from the plain IP lists, the bundles with their journal, the last accepted sequence,
//! the last bare archive accepted per source (version and sha256, the replay protection of archives
//! dropped by hand), and the per-sink export state. Storing one bundle is one transaction
//! ([`Store::store_bundle`]); the same transaction moves the bundle's journal to `stored`, so a rerun
//! after a crash either redoes the whole bundle or skips straight to the export stage.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::sinks::{ExportItem, ExportOutcome};

mod indicators;
pub use indicators::IndicatorPolicy;

/// Bumped when the schema changes; an older store is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 2;

/// Added to schema 2 without a version bump (an additive table older code never reads), so it
/// is also created in a store of that version written before it existed.
const DOWNLOADS_TABLE: &str = r#"
-- `etferry sync`: where each stored version was downloaded from (URL with any oinkcode redacted),
-- the md5 of the download and when; written in the transaction that stores the version
CREATE TABLE IF NOT EXISTS downloads (
    bundle TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    url TEXT NOT NULL,
    md5 TEXT,
    downloaded_at TEXT NOT NULL
);
"#;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY,
    ruleset TEXT NOT NULL,
    engine TEXT,
    last_sequence INTEGER NOT NULL,
    last_bundle TEXT NOT NULL,
    last_bundle_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    lifetime_secs INTEGER NOT NULL
);
-- A current rule's text is read back from its source's payload (payload_files) and checked
-- against text_hash; `text` holds the last text only while the rule is removed.
CREATE TABLE IF NOT EXISTS rules (
    source TEXT NOT NULL,
    gid INTEGER NOT NULL,
    sid INTEGER NOT NULL,
    rev INTEGER NOT NULL,
    msg TEXT NOT NULL,
    text TEXT,
    text_hash TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    classtype TEXT,
    category TEXT,
    file TEXT NOT NULL,
    bundle TEXT NOT NULL,
    PRIMARY KEY (source, gid, sid)
);
-- the verified payload files of each source's last stored bundle, byte for byte as signed
CREATE TABLE IF NOT EXISTS payload_files (
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bundle TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (source, seq)
);
CREATE TABLE IF NOT EXISTS rule_history (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    gid INTEGER NOT NULL,
    sid INTEGER NOT NULL,
    bundle TEXT NOT NULL,
    change TEXT NOT NULL,
    rev INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    text_hash TEXT NOT NULL,
    -- the text this change replaced (modified and removed rules); the current text is in `rules`
    previous_text TEXT
);
CREATE INDEX IF NOT EXISTS rule_history_sid ON rule_history (source, gid, sid);
CREATE TABLE IF NOT EXISTS indicators (
    source TEXT NOT NULL,
    value TEXT NOT NULL,
    kind TEXT NOT NULL,
    section TEXT NOT NULL,
    file TEXT NOT NULL,
    bundle TEXT NOT NULL,
    PRIMARY KEY (source, value, section)
);
CREATE TABLE IF NOT EXISTS bundles (
    id TEXT PRIMARY KEY,
    source TEXT,
    sequence INTEGER,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    updated_at TEXT NOT NULL
);
-- the change report of a stored bundle, gzipped JSON; apart from `bundles`, whose rows the
-- journal updates at every stage
CREATE TABLE IF NOT EXISTS reports (
    bundle TEXT PRIMARY KEY,
    report BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    bundle TEXT NOT NULL,
    stage TEXT NOT NULL,
    at TEXT NOT NULL,
    detail TEXT
);
-- bare archives dropped by hand: the replay protection a manifest's sequence gives bundles
CREATE TABLE IF NOT EXISTS archive_imports (
    source TEXT PRIMARY KEY,
    version_at TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bundle TEXT NOT NULL,
    file TEXT NOT NULL,
    imported_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS exports (
    sink TEXT NOT NULL,
    source TEXT NOT NULL,
    gid INTEGER NOT NULL,
    sid INTEGER NOT NULL,
    rev INTEGER,
    text TEXT,
    text_hash TEXT,
    enabled INTEGER,
    removed INTEGER,
    status TEXT,
    confirmed_at TEXT,
    last_error TEXT,
    PRIMARY KEY (sink, source, gid, sid)
);
"#;

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

/// An IP or CIDR from a plain IP list, with the list's section name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Indicator {
    pub value: String,
    /// `ip` or `cidr`.
    pub kind: String,
    pub section: String,
    pub file: String,
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

/// Facts about one source.
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub name: String,
    pub ruleset: String,
    pub engine: Option<String>,
    pub last_sequence: u64,
    pub last_bundle: String,
    pub last_bundle_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub lifetime_secs: i64,
}

/// A bundle's row: where it stands in the journal.
#[derive(Debug, Clone)]
pub struct BundleRow {
    pub id: String,
    pub source: Option<String>,
    pub sequence: Option<u64>,
    pub stage: String,
    pub status: String,
    pub reason: Option<String>,
    pub updated_at: String,
    pub report: Option<String>,
}

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

/// Where a `sync` download came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// The upstream URL, any oinkcode redacted.
    pub url: String,
    /// md5 of the archive (none for a source of several plain files).
    pub md5: Option<String>,
    pub downloaded_at: DateTime<Utc>,
}

/// The last bare archive accepted for a source (replay protection without a manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveImport {
    pub version_at: DateTime<Utc>,
    pub sha256: String,
    pub bundle: String,
    /// The dropped file's name.
    pub file: String,
}

/// Which rules a sink receives, and with which status names.
#[derive(Debug, Clone)]
pub struct ExportPolicy {
    pub include_non_standard: bool,
    pub standard_status: String,
    pub non_standard_status: String,
    pub removed_status: String,
}

impl ExportPolicy {
    /// Every status this policy can hand a sink (a sink must know each of them).
    pub fn statuses_in_use(&self) -> Vec<&str> {
        let mut v = vec![self.standard_status.as_str(), self.removed_status.as_str()];
        if self.include_non_standard {
            v.push(self.non_standard_status.as_str());
        }
        v
    }

    /// The status a rule gets from its class.
    pub fn status_for(&self, enabled: bool, removed: bool) -> &str {
        if removed {
            &self.removed_status
        } else if enabled {
            &self.standard_status
        } else {
            &self.non_standard_status
        }
    }
}

/// The embedded store.
pub struct Store {
    conn: Connection,
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Store {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        // The store and its WAL files are private (0600).
        crate::fsutil::private_umask();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create directory {}", dir.display()))?;
            }
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open store {}", path.display()))?;
        let ctx = || format!("cannot initialise store {}", path.display());
        // Before WAL: the page size of a new store. Rule rows are ~600 bytes; larger pages
        // mean fewer page writes for a full ruleset.
        conn.pragma_update(None, "page_size", 16384)
            .with_context(ctx)?;
        conn.pragma_update(None, "cache_size", -4096)
            .with_context(ctx)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .with_context(ctx)?;
        // FULL: a stored bundle survives a power cut, which the journal relies on.
        conn.pragma_update(None, "synchronous", "FULL")
            .with_context(ctx)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .with_context(ctx)?;
        // The version first, so an older store is refused before anything is added to it.
        let has_version: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .with_context(ctx)?;
        let v: Option<i64> = if has_version {
            conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0))
                .optional()
                .with_context(ctx)?
        } else {
            None
        };
        match v {
            None => {
                // One transaction: a new store gets its whole schema or none of it (and one
                // sync instead of one per table).
                conn.execute_batch(&format!(
                    "BEGIN;\n{SCHEMA}\n{DOWNLOADS_TABLE}\nINSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION});\nCOMMIT;"
                ))
                .with_context(ctx)?;
            }
            Some(v) if v == SCHEMA_VERSION => {
                conn.execute_batch(DOWNLOADS_TABLE).with_context(ctx)?;
            }
            Some(v) => anyhow::bail!(
                "store {} has schema version {v}; this etferry understands version {SCHEMA_VERSION}. \
                 Move it aside and ingest the latest bundle of each source again (a new store \
                 accepts any sequence)",
                path.display()
            ),
        }
        Store::ensure_manifest_table(&conn).with_context(ctx)?;
        indicators::create(&conn).with_context(ctx)?;
        Ok(Store { conn })
    }

    /// The sha256 of each verified manifest, so that a different bundle under a done id is told
    /// from the same one. Added beside the versioned schema: stores that predate it get it here.
    fn ensure_manifest_table(conn: &Connection) -> anyhow::Result<()> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS bundle_manifests (bundle TEXT PRIMARY KEY, sha256 TEXT NOT NULL);",
        )?;
        Ok(())
    }

    /// Remember the sha256 of a bundle's verified manifest.
    pub fn record_manifest(&self, bundle: &str, sha256: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO bundle_manifests (bundle, sha256) VALUES (?1, ?2)
             ON CONFLICT (bundle) DO UPDATE SET sha256 = excluded.sha256",
            params![bundle, sha256],
        )?;
        Ok(())
    }

    /// The sha256 of the manifest verified under `bundle`, if one was recorded.
    pub fn manifest_sha256(&self, bundle: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT sha256 FROM bundle_manifests WHERE bundle = ?1",
                [bundle],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Set a source's last accepted sequence (the operator's recovery from a sequence pushed too
    /// far); returns the previous one, or `None` for an unknown source.
    pub fn set_last_sequence(&self, source: &str, sequence: u64) -> anyhow::Result<Option<u64>> {
        let Some(s) = self.source(source)? else {
            return Ok(None);
        };
        self.conn.execute(
            "UPDATE sources SET last_sequence = ?2 WHERE name = ?1",
            params![source, sequence as i64],
        )?;
        Ok(Some(s.last_sequence))
    }

    /// Raw connection, for tests and read-only queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    // ----- journal -------------------------------------------------------------------------

    /// The bundle's row, if the store has seen it.
    pub fn bundle(&self, id: &str) -> anyhow::Result<Option<BundleRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT b.id, b.source, b.sequence, b.stage, b.status, b.reason, b.updated_at, r.report
                 FROM bundles b LEFT JOIN reports r ON r.bundle = b.id WHERE b.id = ?1",
                [id],
                bundle_row,
            )
            .optional()?)
    }

    /// All bundles in a given status (e.g. `held`), oldest first.
    pub fn bundles_with_status(&self, status: &str) -> anyhow::Result<Vec<BundleRow>> {
        let mut st = self.conn.prepare(
            "SELECT b.id, b.source, b.sequence, b.stage, b.status, b.reason, b.updated_at, r.report
             FROM bundles b LEFT JOIN reports r ON r.bundle = b.id
             WHERE b.status = ?1 ORDER BY b.updated_at",
        )?;
        let rows = st.query_map([status], bundle_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The most recently stored bundle that has a change report.
    pub fn last_report(&self) -> anyhow::Result<Option<BundleRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT b.id, b.source, b.sequence, b.stage, b.status, b.reason, b.updated_at, r.report
                 FROM bundles b JOIN reports r ON r.bundle = b.id WHERE b.status IN ('done', 'stored')
                 ORDER BY (SELECT MAX(j.id) FROM journal j WHERE j.bundle = b.id AND j.stage = 'stored/in-progress') DESC
                 LIMIT 1",
                [],
                bundle_row,
            )
            .optional()?)
    }

    /// Mark the start of an ingest run (one `ingest`, one `watch` scan) in the journal, so that
    /// `report` can show every bundle of the last run.
    pub fn mark_run_start(&self) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO journal (bundle, stage, at) VALUES ('', 'run/start', ?1)",
            [now_text()],
        )?;
        Ok(())
    }

    /// The bundles stored by the last run that stored any, in the order they were stored.
    pub fn last_run_reports(&self) -> anyhow::Result<Vec<BundleRow>> {
        let mut st = self.conn.prepare(
            "WITH last AS (SELECT MAX(id) AS id FROM journal WHERE stage = 'stored/in-progress'),
                  run AS (SELECT COALESCE(MAX(j.id), 0) AS id FROM journal j, last
                          WHERE j.stage = 'run/start' AND j.id < last.id),
                  stored AS (SELECT j.bundle, MAX(j.id) AS at FROM journal j, run
                             WHERE j.stage = 'stored/in-progress' AND j.id > run.id GROUP BY j.bundle)
             SELECT b.id, b.source, b.sequence, b.stage, b.status, b.reason, b.updated_at, r.report
             FROM stored JOIN bundles b ON b.id = stored.bundle JOIN reports r ON r.bundle = b.id
             WHERE b.status IN ('done', 'stored') ORDER BY stored.at",
        )?;
        let rows = st.query_map([], bundle_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Record that `bundle` reached `stage`; `status` is `in-progress`, `done`, `rejected`,
    /// `held` or `failed`.
    pub fn journal(
        &self,
        bundle: &str,
        source: Option<&str>,
        sequence: Option<u64>,
        stage: &str,
        status: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        journal_in(&self.conn, bundle, source, sequence, stage, status, reason)
    }

    // ----- sources and rules ---------------------------------------------------------------

    pub fn source(&self, name: &str) -> anyhow::Result<Option<SourceRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, ruleset, engine, last_sequence, last_bundle, last_bundle_at,
                        last_seen_at, lifetime_secs FROM sources WHERE name = ?1",
                [name],
                source_row,
            )
            .optional()?)
    }

    /// The last bare archive accepted for `source`, if any.
    pub fn archive_import(&self, source: &str) -> anyhow::Result<Option<ArchiveImport>> {
        Ok(self
            .conn
            .query_row(
                "SELECT version_at, sha256, bundle, file FROM archive_imports WHERE source = ?1",
                [source],
                |r| {
                    Ok(ArchiveImport {
                        version_at: parse_time(&r.get::<_, String>(0)?),
                        sha256: r.get(1)?,
                        bundle: r.get(2)?,
                        file: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Where the version stored as `bundle` was downloaded from, when `sync` downloaded it.
    pub fn download(&self, bundle: &str) -> anyhow::Result<Option<Provenance>> {
        Ok(self
            .conn
            .query_row(
                "SELECT url, md5, downloaded_at FROM downloads WHERE bundle = ?1",
                [bundle],
                |r| {
                    Ok(Provenance {
                        url: r.get(0)?,
                        md5: r.get(1)?,
                        downloaded_at: parse_time(&r.get::<_, String>(2)?),
                    })
                },
            )
            .optional()?)
    }

    pub fn sources(&self) -> anyhow::Result<Vec<SourceRow>> {
        let mut st = self.conn.prepare(
            "SELECT name, ruleset, engine, last_sequence, last_bundle, last_bundle_at,
                    last_seen_at, lifetime_secs FROM sources ORDER BY name",
        )?;
        let rows = st.query_map([], source_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

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

    /// A heartbeat: the courier is alive, upstream had nothing new.
    pub fn record_heartbeat(
        &mut self,
        bundle: &str,
        source: &str,
        sequence: u64,
        seen_at: DateTime<Utc>,
        lifetime_secs: i64,
    ) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE sources SET last_sequence = ?2, last_seen_at = ?3, lifetime_secs = ?4
             WHERE name = ?1",
            params![source, sequence as i64, seen_at.to_rfc3339(), lifetime_secs],
        )?;
        if n == 0 {
            anyhow::bail!(
                "heartbeat {bundle} for source {source}, which has no stored bundle yet; \
                 carry a full bundle first"
            );
        }
        journal_in(
            &tx,
            bundle,
            Some(source),
            Some(sequence),
            "stored",
            "in-progress",
            None,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Store one bundle's rules, indicators, history and sequence in one transaction, and move its
    /// journal to `stored`. `report_gz` gives the change report as gzipped JSON ([`gzip_json`]);
    /// it is called last, so it can be made while the rules are written. `crash_hook` runs just
    /// before the commit (test hook for kill -9).
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

    // ----- per-sink export state -----------------------------------------------------------

    /// Rules a sink has not confirmed in their current form: added, modified, enabled↔disabled,
    /// removed, or a status change, plus anything that failed before. Non-standard rules are
    /// left out unless `include_non_standard` is set (or the sink already holds an older version,
    /// which must learn the change); a removed rule is sent only to a sink that had it.
    pub fn pending_exports(
        &self,
        sink: &str,
        policy: &ExportPolicy,
    ) -> anyhow::Result<Vec<ExportItem>> {
        let mut st = self.conn.prepare(
            "SELECT r.source, s.ruleset, s.engine, r.gid, r.sid, r.rev, r.msg, r.text, r.text_hash,
                    r.enabled, r.removed, r.classtype, r.file, NULL, NULL,
                    e.rev, e.text, e.text_hash, e.enabled, e.removed, e.status, e.confirmed_at
             FROM rules r JOIN sources s ON s.name = r.source
             LEFT JOIN exports e ON e.sink = ?1 AND e.source = r.source AND e.gid = r.gid AND e.sid = r.sid
             ORDER BY r.source, r.gid, r.sid",
        )?;
        let mut rows = st.query([sink])?;
        let mut out = Vec::new();
        // Items whose text is still in their source's payload: (index in `out`, hash).
        let mut from_payload: HashMap<String, Vec<(usize, String)>> = HashMap::new();
        while let Some(r) = rows.next()? {
            let enabled: bool = r.get(9)?;
            let removed: bool = r.get(10)?;
            let confirmed: Option<String> = r.get(21)?;
            let had_it = confirmed.is_some();
            if !had_it && (removed || (!enabled && !policy.include_non_standard)) {
                continue;
            }
            let status = policy.status_for(enabled, removed).to_string();
            let hash: String = r.get(8)?;
            if had_it {
                let same = r.get::<_, Option<u32>>(15)? == Some(r.get(5)?)
                    && r.get::<_, Option<String>>(17)?.as_deref() == Some(hash.as_str())
                    && r.get::<_, Option<bool>>(18)? == Some(enabled)
                    && r.get::<_, Option<bool>>(19)? == Some(removed)
                    && r.get::<_, Option<String>>(20)?.as_deref() == Some(status.as_str());
                if same {
                    continue;
                }
            }
            let source: String = r.get(0)?;
            let text = match r.get::<_, Option<String>>(7)? {
                Some(t) => t,
                None => {
                    from_payload
                        .entry(source.clone())
                        .or_default()
                        .push((out.len(), hash));
                    String::new()
                }
            };
            out.push(ExportItem {
                source,
                ruleset: r.get(1)?,
                engine: r.get(2)?,
                gid: r.get(3)?,
                sid: r.get(4)?,
                rev: r.get(5)?,
                msg: r.get(6)?,
                text,
                enabled,
                removed,
                status,
                classtype: r.get(11)?,
                file: r.get(12)?,
                references: Vec::new(),
                metadata: Vec::new(),
                previous_rev: if had_it { r.get(15)? } else { None },
                previous_text: if had_it { r.get(16)? } else { None },
            });
        }
        for (source, idx) in from_payload {
            let want: Vec<TextRef> = idx
                .iter()
                .map(|(i, hash)| TextRef {
                    key: (out[*i].gid, out[*i].sid),
                    hash: hash.clone(),
                    file: out[*i].file.clone(),
                })
                .collect();
            let mut texts = payload_texts(&self.conn, &source, &want)?;
            for (i, _) in idx {
                if let Some(t) = texts.remove(&(out[i].gid, out[i].sid)) {
                    out[i].text = t;
                }
            }
        }
        for it in &mut out {
            let (references, metadata) = crate::ingest::payload::rule_details(&it.text);
            it.references = references;
            it.metadata = metadata;
        }
        Ok(out)
    }

    /// Texts of rules whose rows the caller already read (`text` NULL): from the source's stored
    /// payload, each checked against its row's hash.
    pub fn payload_texts(
        &self,
        source: &str,
        want: &[TextRef],
    ) -> anyhow::Result<HashMap<(u32, u32), String>> {
        payload_texts(&self.conn, source, want)
    }

    /// Rule texts of one source: a current rule's from the source's stored payload (checked
    /// against its text hash), a removed rule's from its row. Keys the store does not hold are
    /// left out.
    pub fn texts(
        &self,
        source: &str,
        keys: &[(u32, u32)],
    ) -> anyhow::Result<HashMap<(u32, u32), String>> {
        Ok(texts_in(&self.conn, source, keys)?
            .into_iter()
            .map(|(k, (_, t))| (k, t))
            .collect())
    }

    /// Record what a sink confirmed (now its export state) and what failed (kept pending, with
    /// the reason).
    pub fn record_export(
        &mut self,
        sink: &str,
        items: &[ExportItem],
        outcome: &ExportOutcome,
    ) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let now = now_text();
            let mut ok = tx.prepare_cached(
                "INSERT INTO exports (sink, source, gid, sid, rev, text, text_hash, enabled, removed,
                                      status, confirmed_at, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL)
                 ON CONFLICT (sink, source, gid, sid) DO UPDATE SET rev = excluded.rev,
                    text = excluded.text, text_hash = excluded.text_hash,
                    enabled = excluded.enabled, removed = excluded.removed,
                    status = excluded.status, confirmed_at = excluded.confirmed_at,
                    last_error = NULL",
            )?;
            for &i in &outcome.confirmed {
                let Some(it) = items.get(i) else { continue };
                ok.execute(params![
                    sink,
                    it.source,
                    it.gid,
                    it.sid,
                    it.rev,
                    it.text,
                    text_hash(&it.text),
                    it.enabled,
                    it.removed,
                    it.status,
                    now
                ])?;
            }
            let mut bad = tx.prepare_cached(
                "INSERT INTO exports (sink, source, gid, sid, last_error) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (sink, source, gid, sid) DO UPDATE SET last_error = excluded.last_error",
            )?;
            for (i, reason) in &outcome.failed {
                let Some(it) = items.get(*i) else { continue };
                bad.execute(params![sink, it.source, it.gid, it.sid, reason])?;
            }
        }
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

/// A rule whose text is to be read back from its source's payload: its key, the hash its row
/// records, and its rules file (parsed first).
#[derive(Debug, Clone)]
pub struct TextRef {
    pub key: (u32, u32),
    pub hash: String,
    pub file: String,
}

/// Texts (with their hashes) of `keys` in `source`: from the row for a removed rule, else from
/// the payload.
fn texts_in(
    conn: &Connection,
    source: &str,
    keys: &[(u32, u32)],
) -> anyhow::Result<HashMap<(u32, u32), (String, String)>> {
    let mut out = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let mut st = conn.prepare_cached(
        "SELECT text, text_hash, file FROM rules WHERE source = ?1 AND gid = ?2 AND sid = ?3",
    )?;
    let mut want = Vec::new();
    for &(gid, sid) in keys {
        let row = st
            .query_row(params![source, gid, sid], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()?;
        match row {
            Some((Some(text), hash, _)) => {
                out.insert((gid, sid), (hash, text));
            }
            Some((None, hash, file)) => want.push(TextRef {
                key: (gid, sid),
                hash,
                file,
            }),
            None => {}
        }
    }
    let hashes: HashMap<(u32, u32), String> =
        want.iter().map(|w| (w.key, w.hash.clone())).collect();
    for (k, t) in payload_texts(conn, source, &want)? {
        if let Some(h) = hashes.get(&k) {
            out.insert(k, (h.clone(), t));
        }
    }
    Ok(out)
}

/// Read rule texts back from a source's stored payload, parsing only the rules files named in
/// `want` first, and every file if that does not give each text with its recorded hash.
fn payload_texts(
    conn: &Connection,
    source: &str,
    want: &[TextRef],
) -> anyhow::Result<HashMap<(u32, u32), String>> {
    if want.is_empty() {
        return Ok(HashMap::new());
    }
    let mut st =
        conn.prepare_cached("SELECT name, data FROM payload_files WHERE source = ?1 ORDER BY seq")?;
    let files: Vec<(String, Vec<u8>)> = st
        .query_map([source], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let keys: std::collections::HashSet<(u32, u32)> = want.iter().map(|w| w.key).collect();
    let names: std::collections::HashSet<String> = want.iter().map(|w| w.file.clone()).collect();
    let complete = |got: &HashMap<(u32, u32), String>| {
        want.iter()
            .all(|w| got.get(&w.key).is_some_and(|t| text_hash(t) == w.hash))
    };
    let mut got = crate::ingest::payload::rule_texts(&files, &keys, Some(&names))?;
    if !complete(&got) {
        got = crate::ingest::payload::rule_texts(&files, &keys, None)?;
    }
    if let Some(w) = want
        .iter()
        .find(|w| got.get(&w.key).is_none_or(|t| text_hash(t) != w.hash))
    {
        anyhow::bail!(
            "the store is damaged: the text of rule {}:{} of source {source} (file {}) cannot be \
             read back from the stored payload with its recorded hash",
            w.key.0,
            w.key.1,
            w.file
        );
    }
    Ok(got)
}

fn journal_in(
    conn: &Connection,
    bundle: &str,
    source: Option<&str>,
    sequence: Option<u64>,
    stage: &str,
    status: &str,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let now = now_text();
    conn.execute(
        "INSERT INTO bundles (id, source, sequence, stage, status, reason, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET source = COALESCE(excluded.source, source),
            sequence = COALESCE(excluded.sequence, sequence), stage = excluded.stage,
            status = excluded.status, reason = excluded.reason, updated_at = excluded.updated_at",
        params![
            bundle,
            source,
            sequence.map(|s| s as i64),
            stage,
            status,
            reason,
            now
        ],
    )?;
    conn.execute(
        "INSERT INTO journal (bundle, stage, at, detail) VALUES (?1, ?2, ?3, ?4)",
        params![bundle, format!("{stage}/{status}"), now, reason],
    )?;
    Ok(())
}

fn bundle_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BundleRow> {
    Ok(BundleRow {
        id: r.get(0)?,
        source: r.get(1)?,
        sequence: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
        stage: r.get(3)?,
        status: r.get(4)?,
        reason: r.get(5)?,
        updated_at: r.get(6)?,
        report: r.get::<_, Option<Vec<u8>>>(7)?.and_then(|z| gunzip(&z)),
    })
}

fn source_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SourceRow> {
    Ok(SourceRow {
        name: r.get(0)?,
        ruleset: r.get(1)?,
        engine: r.get(2)?,
        last_sequence: r.get::<_, i64>(3)? as u64,
        last_bundle: r.get(4)?,
        last_bundle_at: parse_time(&r.get::<_, String>(5)?),
        last_seen_at: parse_time(&r.get::<_, String>(6)?),
        lifetime_secs: r.get(7)?,
    })
}

/// Serialise `v` as gzipped JSON.
pub fn gzip_json<T: serde::Serialize>(v: &T) -> anyhow::Result<Vec<u8>> {
    // Buffered: serde writes token by token, and each small write into the encoder costs far more
    // than the bytes it carries; the buffer also spares holding the whole JSON.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut w = std::io::BufWriter::with_capacity(1 << 16, gz);
    serde_json::to_writer(&mut w, v)?;
    let gz = w.into_inner().map_err(|e| e.into_error())?;
    Ok(gz.finish()?)
}

fn gunzip(data: &[u8]) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}
