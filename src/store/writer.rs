//! Writing one bundle: a single transaction opened before the first rule arrives, rule rows
//! written as the rules files are parsed, and everything else (history, removals, payload,
//! indicators, sequence, report, journal) written at the end, just before the one commit.
//! Nothing is visible to readers, or survives a crash, before that commit.

use std::collections::HashMap;

use rusqlite::{params, Connection, Transaction};

use super::bundles::journal_in;
use super::payload::payload_texts_but;
use super::{now_text, NewRule, Store, StoreBatch};

/// A change the history records (every change but the arrival of a rule the store never held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub gid: u32,
    pub sid: u32,
    /// `added` (again, after a removal), `modified` or `enabled_changed`.
    pub kind: &'static str,
    pub rev: u32,
    pub enabled: bool,
    pub hash: super::TextHash,
}

/// The open transaction of one bundle ([`Store::begin_bundle`]). Dropped without
/// [`BundleTx::commit`], it rolls back: the store is as it was.
pub struct BundleTx<'s> {
    tx: Transaction<'s>,
    /// Declared after `tx`, so it is dropped after the commit or rollback.
    journal: Option<RollbackJournal<'s>>,
    source: String,
    bundle: String,
    /// A dry run: reads only, writes nothing.
    dry: bool,
}

/// A source's first import (a whole ruleset into a store without its rules) written with
/// SQLite's rollback journal instead of the WAL. The rows go to new pages at the end of the
/// file, which need no journal, so the ruleset is written once, straight into the database; in
/// WAL mode it is written to the WAL and then again by the checkpoint when the store closes. The
/// guard switches back to WAL once the transaction has ended, committed or not. Durability is
/// the same (`synchronous = FULL`, a hot journal is rolled back by the next open); readers of
/// the store wait for the commit instead of reading alongside it, for that one bundle.
struct RollbackJournal<'s> {
    conn: &'s Connection,
    /// Starts the write-back of the pages SQLite spills to the database file while the rest of
    /// the bundle is parsed, so that the commit's fsync finds them written.
    writeback: Option<Writeback>,
}

/// A thread that asks the kernel to start writing the database file's dirty pages out
/// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`, no wait), each time it is asked to. Only a
/// head start for the commit's fsync, which still makes the bundle durable. On its own thread:
/// submitting the writes cost the thread that writes the rows 6% of its time.
struct Writeback {
    ask: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Writeback {
    fn start(file: std::fs::File) -> Option<Writeback> {
        // One request pending at most: asks while one is waiting are folded into it.
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("writeback".into())
            .spawn(move || {
                for () in asked {
                    #[cfg(target_os = "linux")]
                    {
                        use std::os::fd::AsRawFd;
                        // SAFETY: a plain syscall on a descriptor this thread owns; it writes
                        // no memory. A failure costs only the head start.
                        unsafe {
                            libc::sync_file_range(
                                file.as_raw_fd(),
                                0,
                                0,
                                libc::SYNC_FILE_RANGE_WRITE,
                            );
                        }
                    }
                }
                #[cfg(not(target_os = "linux"))]
                drop(file);
            })
            .ok()?;
        Some(Writeback { ask, thread })
    }

    fn ask(&self) {
        let _ = self.ask.try_send(());
    }

    /// Stop the thread and close its descriptor. Called with no transaction open and before the
    /// switch back to WAL: closing any descriptor of the database file drops all of the process's
    /// POSIX locks on it, and in rollback-journal mode SQLite holds none between transactions.
    fn stop(self) {
        drop(self.ask);
        let _ = self.thread.join();
    }
}

impl<'s> RollbackJournal<'s> {
    fn for_first_import(conn: &'s Connection, source: &str) -> anyhow::Result<Option<Self>> {
        let first: bool = conn.query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM rules WHERE source = ?1)",
            [source],
            |r| r.get(0),
        )?;
        // Leaving WAL needs the store to itself: with another connection open the switch is
        // refused at once (no wait), and the bundle is written through the WAL as usual.
        if !first || !set_journal_mode(conn, "delete") {
            return Ok(None);
        }
        let writeback = conn
            .path()
            .filter(|p| !p.is_empty())
            .and_then(|p| std::fs::File::open(p).ok())
            .and_then(Writeback::start);
        Ok(Some(RollbackJournal { conn, writeback }))
    }
}

impl Drop for RollbackJournal<'_> {
    fn drop(&mut self) {
        // Before the switch back, while SQLite holds no lock on the file (see `Writeback::stop`).
        if let Some(w) = self.writeback.take() {
            w.stop();
        }
        // Not fatal: a store left in rollback mode is as durable, only less concurrent, and
        // the next `Store::open` switches it back.
        if !set_journal_mode(self.conn, "wal") {
            tracing::warn!("the store stays in rollback journal mode until it is next opened");
        }
    }
}

/// Switch the journal mode without waiting for other connections; whether it took effect.
fn set_journal_mode(conn: &Connection, mode: &str) -> bool {
    if conn.busy_timeout(std::time::Duration::ZERO).is_err() {
        return false;
    }
    let now: rusqlite::Result<String> =
        conn.query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0));
    let _ = conn.busy_timeout(super::schema::BUSY_TIMEOUT);
    now.is_ok_and(|m| m.eq_ignore_ascii_case(mode))
}

impl Store {
    /// Open the transaction that writes bundle `bundle` of `source`; with `dry`, one that only
    /// reads (and writes nothing).
    pub fn begin_bundle(
        &mut self,
        source: &str,
        bundle: &str,
        dry: bool,
    ) -> anyhow::Result<BundleTx<'_>> {
        // IMMEDIATE: take the write lock now (waiting out another writer), not halfway through.
        let behavior = if dry {
            rusqlite::TransactionBehavior::Deferred
        } else {
            rusqlite::TransactionBehavior::Immediate
        };
        let journal = if dry {
            None
        } else {
            RollbackJournal::for_first_import(&self.conn, source)?
        };
        // Unchecked: from `&self.conn`, which the journal guard shares; `&mut self` still rules
        // out a second transaction.
        let tx = Transaction::new_unchecked(&self.conn, behavior)?;
        Ok(BundleTx {
            tx,
            journal,
            source: source.to_string(),
            bundle: bundle.to_string(),
            dry,
        })
    }
}

impl BundleTx<'_> {
    /// A dry run's: it writes nothing.
    pub fn is_dry(&self) -> bool {
        self.dry
    }

    /// The store as this transaction sees it (for reads between writes).
    pub fn conn(&self) -> &Connection {
        &self.tx
    }

    /// Write the rows of `rules` (the current version of each): inserted, or updated in place.
    pub fn put_rules(&self, rules: &[&NewRule]) -> anyhow::Result<()> {
        if self.dry || rules.is_empty() {
            return Ok(());
        }
        let _rows = crate::timing::Span::new(crate::timing::Activity::Rows);
        // One row per statement: a multi-row statement needs a statement journal, which costs
        // more than the statements it saves.
        let mut st = self.tx.prepare_cached(
            "INSERT INTO rules (source, gid, sid, rev, msg, text, text_hash, enabled, removed,
                                classtype, category, file, bundle)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, 0, ?8, ?9, ?10, ?11)
             ON CONFLICT (source, gid, sid) DO UPDATE SET
                rev = excluded.rev, msg = excluded.msg, text = NULL,
                text_hash = excluded.text_hash, enabled = excluded.enabled, removed = 0,
                classtype = excluded.classtype, category = excluded.category,
                file = excluded.file, bundle = excluded.bundle",
        )?;
        // Source and bundle are the same for every row: bound once, they stay bound across
        // executions; the rest is bound per row.
        st.raw_bind_parameter(1, &self.source)?;
        st.raw_bind_parameter(11, &self.bundle)?;
        for r in rules {
            st.raw_bind_parameter(2, r.gid)?;
            st.raw_bind_parameter(3, r.sid)?;
            st.raw_bind_parameter(4, r.rev)?;
            st.raw_bind_parameter(5, &*r.msg)?;
            st.raw_bind_parameter(6, r.hash)?;
            st.raw_bind_parameter(7, r.enabled)?;
            st.raw_bind_parameter(8, r.classtype.as_deref())?;
            st.raw_bind_parameter(9, r.category.as_deref())?;
            st.raw_bind_parameter(10, &*r.file)?;
            st.raw_execute()?;
        }
        if let Some(w) = self.journal.as_ref().and_then(|j| j.writeback.as_ref()) {
            w.ask();
        }
        Ok(())
    }

    /// Store the bundle's verified payload files beside the source's current ones (which
    /// [`BundleTx::commit`] still reads texts from, then deletes). Called while the payload is
    /// being parsed, so the copy costs no time of its own.
    pub fn put_payload(&self, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
        if self.dry {
            return Ok(());
        }
        // After the current files, so `ORDER BY seq` keeps each payload's order.
        let first: i64 = self.tx.query_row(
            "SELECT COALESCE(MAX(seq) + 1, 0) FROM payload_files WHERE source = ?1",
            [&self.source],
            |r| r.get(0),
        )?;
        // The row with a zeroed blob of the right size, then the bytes written into it in
        // place: bound as a parameter, a payload of megabytes would be copied whole, twice
        // (the bound value and the record), at the moment the ingest holds the most memory.
        let mut put = self.tx.prepare_cached(
            "INSERT INTO payload_files (source, seq, name, sha256, bundle, data)
             VALUES (?1, ?2, ?3, ?4, ?5, zeroblob(?6))",
        )?;
        for (i, (name, data)) in files.iter().enumerate() {
            use sha2::{Digest, Sha256};
            let sha = hex::encode(Sha256::digest(data));
            put.execute(params![
                self.source,
                first + i as i64,
                name,
                sha,
                self.bundle,
                data.len() as i64
            ])?;
            let row = self.tx.last_insert_rowid();
            let mut blob =
                self.tx
                    .blob_open(rusqlite::MAIN_DB, "payload_files", "data", row, false)?;
            blob.write_all_at(data, 0)?;
        }
        Ok(())
    }

    /// Move the bundle's journal to `stage` inside this transaction (seen by others at commit).
    pub fn journal(&self, stage: &str, sequence: u64) -> anyhow::Result<()> {
        if self.dry {
            return Ok(());
        }
        journal_in(
            &self.tx,
            &self.bundle,
            Some(&self.source),
            Some(sequence),
            stage,
            "in-progress",
            None,
        )
    }

    /// Write the rest of the bundle (the rule rows are written already) and commit: history,
    /// removals, payload, indicators, sequence, report and the journal's `stored`. `report_gz`
    /// is called last, so the report can be made while the rest is written. `crash_hook` runs
    /// just before the commit (test hook for kill -9).
    pub fn commit(
        self,
        b: &StoreBatch<'_>,
        report_gz: impl FnOnce() -> anyhow::Result<Vec<u8>>,
        crash_hook: impl Fn(),
    ) -> anyhow::Result<()> {
        anyhow::ensure!(!self.dry, "a dry run commits nothing");
        let tx = &self.tx;
        // The texts the new payload replaces, read from the old payload before it goes:
        // history keeps them for modified rules, and a removed rule keeps its last text in its
        // row.
        let old_texts: HashMap<(u32, u32), String> =
            payload_texts_but(tx, b.source, Some(b.bundle), b.replaced)?;
        let mut hist = tx.prepare_cached(
            "INSERT INTO rule_history (source, gid, sid, bundle, change, rev, enabled, text_hash,
                                       previous_text)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for c in b.history {
            let previous = if c.kind == "modified" {
                old_texts.get(&(c.gid, c.sid)).map(String::as_str)
            } else {
                None
            };
            hist.execute(params![
                b.source, c.gid, c.sid, b.bundle, c.kind, c.rev, c.enabled, c.hash, previous
            ])?;
        }
        crate::timing::mark("history written");
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
            let text = old_texts.get(&(*gid, *sid)).map(String::as_str);
            hist_removed.execute(params![b.source, gid, sid, b.bundle, text])?;
            remove.execute(params![b.source, gid, sid, b.bundle, text])?;
        }
        // The payload this bundle replaces (its own went in with `put_payload`).
        tx.execute(
            "DELETE FROM payload_files WHERE source = ?1 AND bundle != ?2",
            [b.source, b.bundle],
        )?;
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
        let report = report_gz()?;
        crate::timing::mark("report joined");
        tx.execute(
            "INSERT OR REPLACE INTO reports (bundle, report) VALUES (?1, ?2)",
            params![b.bundle, report],
        )?;
        journal_in(
            tx,
            b.bundle,
            Some(b.source),
            Some(b.sequence),
            "stored",
            "in-progress",
            None,
        )?;
        drop((hist, remove, hist_removed));
        crash_hook();
        self.tx.commit()?;
        Ok(())
    }
}
