//! Bundles and their journal, sources and heartbeats, bare-archive imports, download
//! provenance, and the gzipped change reports.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{now_text, parse_time, Store};

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

impl Store {
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
}

pub(super) fn journal_in(
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
