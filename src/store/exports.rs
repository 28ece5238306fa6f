//! Per-sink export state: which rules a sink has not confirmed yet, and what it confirmed.

use rusqlite::params;

use super::{now_text, text_hash, Store, TextRef, TextWants};
use crate::sinks::{ExportItem, ExportOutcome};

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

impl Store {
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
        // Items whose text is still in their source's payload, and their indices in `out`.
        let mut from_payload = TextWants::default();
        let mut need = Vec::new();
        while let Some(r) = rows.next()? {
            let enabled: bool = r.get(9)?;
            let removed: bool = r.get(10)?;
            let confirmed: Option<String> = r.get(21)?;
            let had_it = confirmed.is_some();
            if !had_it && (removed || (!enabled && !policy.include_non_standard)) {
                continue;
            }
            let status = policy.status_for(enabled, removed).to_string();
            let hash: crate::store::TextHash = r.get(8)?;
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
                    need.push(out.len());
                    from_payload.push(
                        &source,
                        TextRef {
                            key: (r.get(3)?, r.get(4)?),
                            hash,
                            file: r.get(12)?,
                        },
                    );
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
        let mut texts = self.read_texts(from_payload)?;
        for i in need {
            let it = &mut out[i];
            if let Some(t) = texts.take(&it.source, (it.gid, it.sid)) {
                it.text = t;
            }
        }
        for it in &mut out {
            let (references, metadata) = crate::payload::rule_details(&it.text);
            it.references = references;
            it.metadata = metadata;
        }
        Ok(out)
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
