//! Block-list IPs and networks as ThreatQ indicators: `POST /api/indicators/consume` in batches,
//! on `concurrency` workers, with the client's retries; an item is confirmed only when ThreatQ
//! answered it with an id.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use reqwest::Method;
use serde_json::Value;

use super::client::CallError;
use super::connect::id_of;
use super::mapping::indicator_body;
use super::sink::ThreatQSink;
use crate::sinks::{ExportOutcome, IndicatorItem};

impl ThreatQSink {
    pub(super) fn send_indicators(&self, items: &[IndicatorItem]) -> ExportOutcome {
        let before = self.stats();
        let mut failed: Vec<(usize, String)> = Vec::new();
        let mut entries: Vec<(usize, Value)> = Vec::new();
        for (i, it) in items.iter().enumerate() {
            match indicator_body(&self.cfg, it) {
                Some(b) => entries.push((i, b)),
                None => failed.push((
                    i,
                    format!("{}: unknown indicator kind {:?}", it.value, it.kind),
                )),
            }
        }
        let batches: Vec<&[(usize, Value)]> = entries.chunks(self.cfg.batch_size.max(1)).collect();
        let results: Mutex<Vec<(usize, Result<u64, String>)>> = Mutex::new(Vec::new());
        let stop = AtomicBool::new(false);
        let stopped: Mutex<Option<String>> = Mutex::new(None);
        let bar = crate::progress::count(entries.len() as u64, "sending indicators to ThreatQ");
        self.parallel(batches.len(), &stop, |b, first| {
            if !first {
                self.pause();
            }
            let batch = batches[b];
            let body = Value::Array(batch.iter().map(|(_, v)| v.clone()).collect());
            self.api.bump(|s| {
                s.indicator_requests += 1;
                s.indicators_sent += batch.len() as u64;
            });
            let answer = self
                .api
                .call(Method::POST, "/api/indicators/consume", Some(&body));
            let mut res = Vec::with_capacity(batch.len());
            match answer {
                Ok(v) => {
                    let data = v
                        .get("data")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for (k, (i, _)) in batch.iter().enumerate() {
                        let value = items[*i].value.as_str();
                        // By position when the counts agree, else by value.
                        let d = if data.len() == batch.len() {
                            data.get(k)
                        } else {
                            data.iter()
                                .find(|d| d.get("value").and_then(Value::as_str) == Some(value))
                        };
                        let r = match d {
                            Some(d) if d.get("error").is_some_and(|e| !e.is_null()) => {
                                Err(format!(
                                    "{value}: ThreatQ rejected the indicator: {}",
                                    self.api.excerpt(
                                        &d.get("error").map(Value::to_string).unwrap_or_default()
                                    )
                                ))
                            }
                            Some(d) => d
                                .get("id")
                                .and_then(id_of)
                                .ok_or_else(|| format!("{value}: ThreatQ answered without an id")),
                            None => Err(format!("{value}: ThreatQ did not confirm the indicator")),
                        };
                        res.push((*i, r));
                    }
                }
                Err(e) => {
                    for (i, _) in batch {
                        res.push((*i, Err(format!("{}: {}", items[*i].value, e.message()))));
                    }
                    if matches!(e, CallError::Auth(_) | CallError::Stop(_)) {
                        stop.store(true, Ordering::SeqCst);
                        if let Ok(mut g) = stopped.lock() {
                            g.get_or_insert_with(|| e.message().to_string());
                        }
                    }
                }
            }
            bar.inc(batch.len() as u64);
            if let Ok(mut r) = results.lock() {
                r.extend(res);
            }
        });
        bar.finish();
        let results = results.into_inner().unwrap_or_default();
        let stopped = stopped.into_inner().ok().flatten();
        let mut answered = vec![false; items.len()];
        let mut out = ExportOutcome::default();
        for (i, r) in results {
            answered[i] = true;
            match r {
                Ok(_) => out.confirmed.push(i),
                Err(e) => failed.push((i, e)),
            }
        }
        for &(i, _) in &entries {
            if !answered[i] {
                let why = stopped.as_deref().unwrap_or("not confirmed by ThreatQ");
                failed.push((i, format!("{}: not sent: {why}", items[i].value)));
            }
        }
        failed.sort_by_key(|f| f.0);
        out.failed = failed;
        out.confirmed.sort_unstable();
        let after = self.stats();
        out.requests = after
            .indicator_requests
            .saturating_sub(before.indicator_requests);
        out.sent = after.indicators_sent.saturating_sub(before.indicators_sent);
        if !out.failed.is_empty() {
            tracing::warn!(
                "ThreatQ: {} of {} indicators not confirmed; they stay pending (first: {})",
                out.failed.len(),
                items.len(),
                out.failed[0].1
            );
        }
        out
    }
}
