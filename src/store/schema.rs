//! The schema: its tables, `Store::open` with the version check, and the manifest table.

use std::path::Path;

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};

use super::{indicators, Store};

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

/// How long a statement waits for another connection's lock before it fails.
pub(super) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
        // 1 MiB of page cache: a bundle's rows go in key order file by file, so only the
        // B-tree edges being written need to stay cached; a larger cache measured no faster
        // and only raised the ingest's peak memory (by 3 MiB at 4 MiB).
        conn.pragma_update(None, "cache_size", -1024)
            .with_context(ctx)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .with_context(ctx)?;
        // FULL: a stored bundle survives a power cut, which the journal relies on.
        conn.pragma_update(None, "synchronous", "FULL")
            .with_context(ctx)?;
        conn.busy_timeout(BUSY_TIMEOUT).with_context(ctx)?;
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
                // sync instead of one per table). Dropped on an error before COMMIT, the
                // connection rolls it back.
                conn.execute_batch(&format!(
                    "BEGIN;\n{SCHEMA}\n{DOWNLOADS_TABLE}\nINSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION});"
                ))
                .with_context(ctx)?;
                Store::ensure_manifest_table(&conn).with_context(ctx)?;
                indicators::create(&conn).with_context(ctx)?;
                conn.execute_batch("COMMIT;").with_context(ctx)?;
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
        crate::timing::mark("store opened");
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
}
