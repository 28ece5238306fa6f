//! The sink: planning (what a dry run would send), consume batches on `concurrency` workers,
//! the per-item outcome, and the stale-attribute cleanup of changed rules.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use rand::Rng;
use reqwest::Method;
use serde_json::Value;

use super::client::{Api, CallError};
use super::config::{RevChange, ThreatQConfig};
use super::connect::id_of;
use super::mapping::{attributes_for, signature_body, value_of, Resolved};
use crate::sinks::{ExportItem, ExportOutcome, IndicatorItem, Sink};

/// The ThreatQ sink. Build it with [`ThreatQSink::connect`].
pub struct ThreatQSink {
    pub(super) cfg: ThreatQConfig,
    pub(super) api: Api,
    pub(super) res: Resolved,
    /// Signature types and statuses the instance offers, for messages.
    pub(super) offered_statuses: Vec<String>,
    /// Things about the instance an operator should know (duplicate type names).
    pub(super) notes: Vec<String>,
    /// Related objects resolved so far: (collection, value) → id, `None` when ThreatQ has none.
    pub(super) related: HashMap<(&'static str, String), Option<u64>>,
    /// The run `export` began and `export_indicators` finishes (connector state, counts).
    pub(super) run: Option<super::connector::Run>,
    /// Related objects that could not be resolved this export: their items stay pending.
    pub(super) related_errors: HashMap<(&'static str, String), String>,
    /// "Connector not found" is said once per sink.
    pub(super) warned_missing: bool,
}

/// What a dry run would send (no network).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Signatures in consume bodies (superseded old revisions included).
    pub signatures: usize,
    /// Consume requests.
    pub requests: usize,
    /// Items by the status they get.
    pub by_status: BTreeMap<String, usize>,
    pub removed: usize,
    /// Items whose stale attributes would be looked at.
    pub changed: usize,
}

/// What `export` would send for `items`, without sending anything.
pub fn plan(cfg: &ThreatQConfig, items: &[ExportItem]) -> Plan {
    let mut p = Plan::default();
    for it in items {
        *p.by_status.entry(it.status.clone()).or_default() += 1;
        p.signatures += 1 + usize::from(supersedes(cfg, it));
        p.removed += usize::from(it.removed);
        p.changed += usize::from(needs_cleanup(cfg, it));
    }
    p.requests = p.signatures.div_ceil(cfg.batch_size.max(1));
    p
}

/// In `new_signature` mode the old revision's text is its own signature: mark it superseded.
pub(super) fn supersedes(cfg: &ThreatQConfig, it: &ExportItem) -> bool {
    cfg.rev_change == RevChange::NewSignature
        && !it.removed
        && it
            .previous_text
            .as_deref()
            .is_some_and(|prev| prev != it.text)
}

/// A rule ThreatQ had before may carry attribute values that no longer hold (old Revision,
/// `Shipped Enabled: Yes` after ET disabled it).
pub(super) fn needs_cleanup(cfg: &ThreatQConfig, it: &ExportItem) -> bool {
    cfg.replace_changed_attributes
        && !it.removed
        && (it.previous_rev.is_some() || it.previous_text.is_some())
}

/// One signature in a consume body, and which item it belongs to.
pub(super) struct Entry {
    item: usize,
    value: String,
    body: Value,
    /// The main signature of the item (not a superseded old revision).
    main: bool,
}

#[derive(Default)]
pub(super) struct ItemState {
    outstanding: usize,
    error: Option<String>,
    id: Option<u64>,
}

pub(super) fn fail(state: &mut ItemState, msg: String) {
    if state.error.is_none() {
        state.error = Some(msg);
    }
}

impl ThreatQSink {
    fn entries(&self, items: &[ExportItem], states: &mut [ItemState]) -> Vec<Entry> {
        let mut out = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let Some((_, status)) = self.res.status(&it.status) else {
                fail(
                    &mut states[i],
                    format!(
                        "SID {}: ThreatQ has no signature status {:?} (it offers: {})",
                        it.sid,
                        it.status,
                        self.offered_statuses.join(", ")
                    ),
                );
                continue;
            };
            if let Some(e) = self.related_error(it) {
                fail(&mut states[i], format!("SID {}: {e}", it.sid));
                continue;
            }
            let attrs = attributes_for(&self.cfg, it);
            let value = value_of(&self.cfg, it.enabled, &it.text);
            let mut body = signature_body(&self.cfg, &self.res, it, &value, status, &attrs);
            if let Some(o) = body.as_object_mut() {
                for (field, v) in self.related_fields(it) {
                    o.insert(field.into(), v);
                }
            }
            out.push(Entry {
                item: i,
                value,
                body,
                main: true,
            });
            states[i].outstanding += 1;
            if supersedes(&self.cfg, it) {
                if let (Some(prev), Some((_, sup))) = (
                    it.previous_text.as_deref(),
                    self.res.status(&self.cfg.superseded_status),
                ) {
                    let mut old = it.clone();
                    old.rev = it.previous_rev.unwrap_or(it.rev);
                    old.text = prev.to_string();
                    let value = value_of(&self.cfg, it.enabled, prev);
                    let attrs = attributes_for(&self.cfg, &old);
                    let body = signature_body(&self.cfg, &self.res, &old, &value, sup, &attrs);
                    out.push(Entry {
                        item: i,
                        value,
                        body,
                        main: false,
                    });
                    states[i].outstanding += 1;
                }
            }
        }
        out
    }

    /// Send one batch and record, per entry, its id or its error.
    fn send_batch(
        &self,
        batch: &[Entry],
        states: &Mutex<Vec<ItemState>>,
        items: &[ExportItem],
    ) -> Result<(), CallError> {
        let body = Value::Array(batch.iter().map(|e| e.body.clone()).collect());
        self.api.bump(|s| {
            s.consume_requests += 1;
            s.signatures_sent += batch.len() as u64;
        });
        let answer = self
            .api
            .call(Method::POST, "/api/signatures/consume", Some(&body));
        let mut st = states
            .lock()
            .map_err(|_| CallError::Failed("state lock poisoned".into()))?;
        let data = match answer {
            Ok(v) => v
                .get("data")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            Err(e) => {
                for en in batch {
                    fail(
                        &mut st[en.item],
                        format!("SID {}: {}", items[en.item].sid, e.message()),
                    );
                }
                return match e {
                    CallError::Auth(_) | CallError::Stop(_) => Err(e),
                    CallError::Failed(_) => Ok(()),
                };
            }
        };
        // Map answers to entries: by position when the counts agree, else by value (as the SDK
        // maps ids back by equal value).
        let by_value: HashMap<&str, &Value> = data
            .iter()
            .filter_map(|d| Some((d.get("value")?.as_str()?, d)))
            .collect();
        for (k, en) in batch.iter().enumerate() {
            let d = if data.len() == batch.len() {
                data.get(k)
            } else {
                by_value.get(en.value.as_str()).copied()
            };
            let sid = items[en.item].sid;
            let state = &mut st[en.item];
            match d {
                Some(d) if d.get("error").is_some_and(|e| !e.is_null()) => {
                    let e = d.get("error").map(|e| match e.as_str() {
                        Some(s) => s.to_string(),
                        None => e.to_string(),
                    });
                    fail(
                        state,
                        format!(
                            "SID {sid}: ThreatQ rejected the signature: {}",
                            self.api.excerpt(&e.unwrap_or_default())
                        ),
                    );
                }
                Some(d) => match d.get("id").and_then(id_of) {
                    Some(id) => {
                        if en.main {
                            state.id = Some(id);
                        }
                        state.outstanding = state.outstanding.saturating_sub(1);
                    }
                    None => fail(state, format!("SID {sid}: ThreatQ answered without an id")),
                },
                None => fail(
                    state,
                    format!("SID {sid}: ThreatQ did not confirm the signature"),
                ),
            }
        }
        Ok(())
    }

    /// §4 #11: delete single-value attributes whose value is no longer the one just sent.
    fn clean_attributes(&self, item: &ExportItem, id: u64) -> Result<u64, CallError> {
        let sent = attributes_for(&self.cfg, item);
        let single = self.cfg.single_value_names();
        let v = self.api.call(
            Method::GET,
            &format!("/api/signatures/{id}/attributes"),
            None,
        )?;
        let list = v
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut deleted = 0;
        for a in list {
            let (Some(aid), Some(name), Some(value)) = (
                a.get("id").and_then(id_of),
                a.get("name").and_then(Value::as_str),
                a.get("value").map(|v| match v.as_str() {
                    Some(s) => s.to_string(),
                    None => v.to_string(),
                }),
            ) else {
                continue;
            };
            if !single.contains(&name.to_ascii_lowercase()) {
                continue;
            }
            let current = sent
                .iter()
                .any(|(n, val)| n.eq_ignore_ascii_case(name) && *val == value);
            if !current {
                self.api.call(
                    Method::DELETE,
                    &format!("/api/signatures/{id}/attributes/{aid}"),
                    None,
                )?;
                deleted += 1;
            }
        }
        self.api.bump(|s| s.attributes_deleted += deleted);
        Ok(deleted)
    }

    pub(super) fn pause(&self) {
        let lo = self.cfg.batch_pause.get();
        let hi = self.cfg.batch_pause_max.get().max(lo);
        let d = if hi > lo {
            rand::thread_rng().gen_range(lo..=hi)
        } else {
            lo
        };
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }

    /// Run `work(i)` for i in 0..n on `concurrency` threads; stops handing out work once `stop`.
    pub(super) fn parallel(&self, n: usize, stop: &AtomicBool, work: impl Fn(usize, bool) + Sync) {
        let next = AtomicUsize::new(0);
        let workers = self.cfg.concurrency.min(n).max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    let mut first = true;
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            break;
                        }
                        work(i, first);
                        first = false;
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                });
            }
        });
    }
}

impl ThreatQSink {
    /// Send the rules as signatures (the connector was checked by the caller).
    fn export_rules(&mut self, items: &[ExportItem]) -> anyhow::Result<ExportOutcome> {
        self.resolve_related(items);
        let before = self.stats();
        let mut states: Vec<ItemState> = (0..items.len()).map(|_| ItemState::default()).collect();
        let entries = self.entries(items, &mut states);
        let batches: Vec<&[Entry]> = entries.chunks(self.cfg.batch_size.max(1)).collect();
        let bar = crate::progress::count(entries.len() as u64, "sending to ThreatQ");
        let states = Mutex::new(states);
        let stop = AtomicBool::new(false);
        let batches_done = AtomicUsize::new(0);
        let auth_error: Mutex<Option<String>> = Mutex::new(None);
        let note_auth = |e: CallError| {
            stop.store(true, Ordering::SeqCst);
            if let Ok(mut g) = auth_error.lock() {
                g.get_or_insert_with(|| e.message().to_string());
            }
        };

        self.parallel(batches.len(), &stop, |b, first| {
            if !first {
                self.pause();
            }
            if let Err(e) = self.send_batch(batches[b], &states, items) {
                note_auth(e);
            }
            bar.inc(batches[b].len() as u64);
            // Without a bar (service, cron, pipe) the log shows that a long upload moves.
            let done = batches_done.fetch_add(1, Ordering::SeqCst) + 1;
            if bar.is_hidden() && (done.is_multiple_of(10) || done == batches.len()) {
                tracing::info!(
                    "ThreatQ: {done} of {} batches sent ({} of {} signatures)",
                    batches.len(),
                    crate::sinks::thousands(bar.position()),
                    crate::sinks::thousands(entries.len() as u64)
                );
            }
        });
        bar.finish();

        // Changed rules: remove stale single-value attributes from the signature just updated.
        let cleanup: Vec<(usize, u64)> = {
            let st = states
                .lock()
                .map_err(|_| anyhow::anyhow!("state lock poisoned"))?;
            items
                .iter()
                .enumerate()
                .filter(|(i, it)| {
                    needs_cleanup(&self.cfg, it)
                        && st[*i].error.is_none()
                        && st[*i].outstanding == 0
                })
                .filter_map(|(i, _)| Some((i, st[i].id?)))
                .collect()
        };
        if !stop.load(Ordering::SeqCst) {
            self.parallel(cleanup.len(), &stop, |k, _| {
                let (i, id) = cleanup[k];
                if let Err(e) = self.clean_attributes(&items[i], id) {
                    if let Ok(mut st) = states.lock() {
                        fail(
                            &mut st[i],
                            format!(
                                "SID {}: stale attributes not removed: {}",
                                items[i].sid,
                                e.message()
                            ),
                        );
                    }
                    if matches!(e, CallError::Auth(_) | CallError::Stop(_)) {
                        note_auth(e);
                    }
                }
            });
        }

        let states = states
            .into_inner()
            .map_err(|_| anyhow::anyhow!("state lock poisoned"))?;
        let auth = auth_error.into_inner().ok().flatten();
        let after = self.stats();
        let mut out = ExportOutcome {
            requests: after.requests.saturating_sub(before.requests),
            sent: after.signatures_sent.saturating_sub(before.signatures_sent),
            ..ExportOutcome::default()
        };
        for (i, s) in states.into_iter().enumerate() {
            match (&s.error, s.outstanding, s.id) {
                (None, 0, Some(_)) => out.confirmed.push(i),
                (Some(e), _, _) => out.failed.push((i, e.clone())),
                _ => out.failed.push((
                    i,
                    match &auth {
                        Some(a) => format!("SID {}: not sent: {a}", items[i].sid),
                        None => format!("SID {}: not confirmed by ThreatQ", items[i].sid),
                    },
                )),
            }
        }
        if !out.failed.is_empty() {
            tracing::warn!(
                "ThreatQ: {} of {} signatures not confirmed; they stay pending (first: {})",
                out.failed.len(),
                items.len(),
                out.failed[0].1
            );
        }
        Ok(out)
    }
}

impl Sink for ThreatQSink {
    fn name(&self) -> &str {
        "threatq"
    }

    fn export(&mut self, items: &[ExportItem]) -> anyhow::Result<ExportOutcome> {
        // Each export gets its own retry budget: `watch` lives for days, and a ThreatQ that
        // throttled one bundle's export may be fine for the next.
        self.api.reset_breaker();
        let mut run = self.begin_run();
        if let Some(why) = &run.paused {
            let why = why.clone();
            self.run = Some(run);
            return Ok(ExportOutcome {
                paused: Some(why),
                ..ExportOutcome::default()
            });
        }
        let out = if items.is_empty() {
            ExportOutcome::default()
        } else {
            self.export_rules(items)?
        };
        run.note(&out);
        if self.takes_indicators() {
            self.run = Some(run);
        } else {
            self.finish_run(run);
        }
        Ok(out)
    }

    fn takes_indicators(&self) -> bool {
        self.cfg.indicators
    }

    fn export_indicators(&mut self, items: &[IndicatorItem]) -> anyhow::Result<ExportOutcome> {
        let mut run = match self.run.take() {
            Some(r) => r,
            None => {
                self.api.reset_breaker();
                self.begin_run()
            }
        };
        if let Some(why) = &run.paused {
            return Ok(ExportOutcome {
                paused: Some(why.clone()),
                ..ExportOutcome::default()
            });
        }
        let out = if items.is_empty() {
            ExportOutcome::default()
        } else {
            self.send_indicators(items)
        };
        run.note(&out);
        self.finish_run(run);
        Ok(out)
    }
}
