//! Per-sink export state of block-list indicators: which IPs and networks the lists hold now
//! (the plain IP lists stored at ingest, and the headers of the block rules), which of them a
//! sink confirmed in which form, and so what is pending. One indicator per distinct value,
//! whatever number of lists and sources name it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{params, Connection, OptionalExtension};

use super::{now_text, Store};
use crate::sinks::{ExportOutcome, IndicatorItem};

/// Added beside the versioned schema (new tables older code never reads).
pub(super) const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS indicator_exports (
    sink TEXT NOT NULL,
    value TEXT NOT NULL,
    kind TEXT,
    lists TEXT,
    rulesets TEXT,
    status TEXT,
    removed INTEGER,
    confirmed_at TEXT,
    last_error TEXT,
    PRIMARY KEY (sink, value)
);
-- why a sink sent nothing on purpose last time (the ThreatQ connector switched off), for `status`
CREATE TABLE IF NOT EXISTS sink_notes (
    sink TEXT PRIMARY KEY,
    note TEXT NOT NULL,
    at TEXT NOT NULL
);
"#;

pub(super) fn create(conn: &Connection) -> anyhow::Result<()> {
    conn.execute_batch(TABLES)?;
    Ok(())
}

#[derive(Default)]
struct Current {
    kind: String,
    lists: BTreeSet<String>,
    rulesets: BTreeSet<String>,
}

/// Which statuses indicators get, and whether disabled block rules count.
#[derive(Debug, Clone)]
pub struct IndicatorPolicy {
    pub status: String,
    pub removed_status: String,
    pub include_non_standard: bool,
}

fn join(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join("\n")
}

impl Store {
    /// Every IP and network the stored lists name now, with its lists and rulesets.
    fn current_indicators(
        &self,
        include_non_standard: bool,
    ) -> anyhow::Result<BTreeMap<String, Current>> {
        let mut out: BTreeMap<String, Current> = BTreeMap::new();
        let mut add = |value: &str, kind: &str, list: &str, ruleset: &str| {
            let c = out.entry(value.to_string()).or_default();
            c.kind = kind.to_string();
            c.lists.insert(list.to_string());
            c.rulesets.insert(ruleset.to_string());
        };
        {
            let mut st = self.conn.prepare(
                "SELECT i.value, i.kind, i.section, s.ruleset FROM indicators i
                 JOIN sources s ON s.name = i.source",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let (v, k, l, rs): (String, String, String, String) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                add(&v, &k, &l, &rs);
            }
        }
        // Block rules: their header lists the IPs (read back from the stored payload).
        // source → (ruleset, [(key, list name)])
        type BlockRules = (String, Vec<((u32, u32), String)>);
        let mut per_source: HashMap<String, BlockRules> = HashMap::new();
        {
            let mut st = self.conn.prepare(
                "SELECT r.source, s.ruleset, r.gid, r.sid, r.file, r.enabled FROM rules r
                 JOIN sources s ON s.name = r.source WHERE r.removed = 0",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let file: String = r.get(4)?;
                let Some(list) = crate::payload::block_list_of(&file) else {
                    continue;
                };
                let enabled: bool = r.get(5)?;
                if !enabled && !include_non_standard {
                    continue;
                }
                let e = per_source
                    .entry(r.get(0)?)
                    .or_insert_with(|| (String::new(), Vec::new()));
                e.0 = r.get(1)?;
                e.1.push(((r.get(2)?, r.get(3)?), list.to_string()));
            }
        }
        for (source, (ruleset, keys)) in per_source {
            let wanted: Vec<(u32, u32)> = keys.iter().map(|(k, _)| *k).collect();
            let texts = self.texts(&source, &wanted)?;
            for (key, list) in &keys {
                let Some(text) = texts.get(key) else { continue };
                for (v, kind) in crate::payload::header_ips(text) {
                    add(&v, kind, list, &ruleset);
                }
            }
        }
        Ok(out)
    }

    /// Indicators `sink` has not confirmed in their current form (new, another list or
    /// ruleset, another status, failed before), and those it had that left every list.
    pub fn pending_indicators(
        &self,
        sink: &str,
        policy: &IndicatorPolicy,
    ) -> anyhow::Result<Vec<IndicatorItem>> {
        let current = self.current_indicators(policy.include_non_standard)?;
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<bool>,
        );
        let mut confirmed: BTreeMap<String, Row> = BTreeMap::new();
        {
            let mut st = self.conn.prepare(
                "SELECT value, kind, lists, rulesets, status, removed FROM indicator_exports
                 WHERE sink = ?1 AND confirmed_at IS NOT NULL",
            )?;
            let mut rows = st.query([sink])?;
            while let Some(r) = rows.next()? {
                confirmed.insert(
                    r.get(0)?,
                    (
                        r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ),
                );
            }
        }
        let mut out = Vec::new();
        for (value, c) in &current {
            let (lists, rulesets) = (join(&c.lists), join(&c.rulesets));
            let same = confirmed.get(value).is_some_and(|(_, l, r, s, rm)| {
                l.as_deref() == Some(lists.as_str())
                    && r.as_deref() == Some(rulesets.as_str())
                    && s.as_deref() == Some(policy.status.as_str())
                    && *rm == Some(false)
            });
            if !same {
                out.push(IndicatorItem {
                    value: value.clone(),
                    kind: c.kind.clone(),
                    lists: c.lists.iter().cloned().collect(),
                    rulesets: c.rulesets.iter().cloned().collect(),
                    status: policy.status.clone(),
                    removed: false,
                });
            }
        }
        for (value, (kind, _, _, status, removed)) in &confirmed {
            if current.contains_key(value) {
                continue;
            }
            if *removed == Some(true) && status.as_deref() == Some(policy.removed_status.as_str()) {
                continue;
            }
            out.push(IndicatorItem {
                value: value.clone(),
                kind: kind.clone(),
                lists: Vec::new(),
                rulesets: Vec::new(),
                status: policy.removed_status.clone(),
                removed: true,
            });
        }
        Ok(out)
    }

    /// Record what a sink confirmed and what failed (kept pending, with the reason).
    pub fn record_indicator_export(
        &mut self,
        sink: &str,
        items: &[IndicatorItem],
        outcome: &ExportOutcome,
    ) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let now = now_text();
            let mut ok = tx.prepare_cached(
                "INSERT INTO indicator_exports (sink, value, kind, lists, rulesets, status, removed,
                                                confirmed_at, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)
                 ON CONFLICT (sink, value) DO UPDATE SET kind = excluded.kind,
                    lists = excluded.lists, rulesets = excluded.rulesets, status = excluded.status,
                    removed = excluded.removed, confirmed_at = excluded.confirmed_at,
                    last_error = NULL",
            )?;
            for &i in &outcome.confirmed {
                let Some(it) = items.get(i) else { continue };
                ok.execute(params![
                    sink,
                    it.value,
                    it.kind,
                    it.lists.join("\n"),
                    it.rulesets.join("\n"),
                    it.status,
                    it.removed,
                    now
                ])?;
            }
            let mut bad = tx.prepare_cached(
                "INSERT INTO indicator_exports (sink, value, last_error) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sink, value) DO UPDATE SET last_error = excluded.last_error",
            )?;
            for (i, reason) in &outcome.failed {
                let Some(it) = items.get(*i) else { continue };
                bad.execute(params![sink, it.value, reason])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forget what `sink` confirmed of the indicators (`export --resend-all`).
    pub fn forget_indicator_exports(&self, sink: &str) -> anyhow::Result<()> {
        self.conn
            .execute("DELETE FROM indicator_exports WHERE sink = ?1", [sink])?;
        Ok(())
    }

    /// Set (or with `None` clear) why `sink` sent nothing on purpose.
    pub fn set_sink_note(&self, sink: &str, note: Option<&str>) -> anyhow::Result<()> {
        match note {
            Some(n) => self.conn.execute(
                "INSERT OR REPLACE INTO sink_notes (sink, note, at) VALUES (?1, ?2, ?3)",
                params![sink, n, now_text()],
            )?,
            None => self
                .conn
                .execute("DELETE FROM sink_notes WHERE sink = ?1", [sink])?,
        };
        Ok(())
    }

    /// Why `sink` sent nothing on purpose at its last export, and when.
    pub fn sink_note(&self, sink: &str) -> anyhow::Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT note, at FROM sink_notes WHERE sink = ?1",
                [sink],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}
