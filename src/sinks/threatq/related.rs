//! Related objects of a signature (threatq-api.md §2.4): Malware from `malware_family` (created
//! when missing), Attack Patterns from `mitre_technique_*` (only when ThreatQ already has them),
//! and a block rule's indicators inline. What goes where is data in `mapping`.

use reqwest::Method;
use serde_json::{json, Value};

use super::connect::id_of;
use super::mapping::{
    meta_values, object_value, rule_indicators, Relation, ATTACK_PATTERN, MALWARE,
};
use super::sink::ThreatQSink;
use crate::sinks::ExportItem;

/// `?value=` of a look-up: everything but unreserved characters percent-encoded.
pub(super) fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The object values one relation asks for in an item: (value, fallback value) pairs.
fn wanted(rel: &Relation, it: &ExportItem) -> Vec<(String, Option<String>)> {
    if it.removed {
        return Vec::new();
    }
    let main = meta_values(it, rel.meta);
    let fb: Vec<&str> = rel
        .fallback_meta
        .map(|k| meta_values(it, k))
        .unwrap_or_default();
    let n = main.len().max(fb.len());
    (0..n)
        .filter_map(|i| {
            let m = main.get(i).map(|v| object_value(v));
            let f = fb.get(i).map(|v| object_value(v));
            match (m, f) {
                (Some(m), f) => Some((m, f)),
                (None, Some(f)) => Some((f, None)),
                (None, None) => None,
            }
        })
        .collect()
}

impl ThreatQSink {
    fn relations(&self) -> Vec<&'static Relation> {
        let mut v = Vec::new();
        if self.cfg.relations.malware {
            v.push(&MALWARE);
        }
        if self.cfg.relations.attack_patterns {
            v.push(&ATTACK_PATTERN);
        }
        v
    }

    /// Look up (or create) the related objects `items` name that this sink has not resolved
    /// yet. A failed call leaves the value unresolved and the items naming it fail (pending).
    pub(super) fn resolve_related(&mut self, items: &[ExportItem]) {
        self.related_errors.clear();
        // "ThreatQ has no such attack pattern" holds for one export only: under `watch` the
        // MITRE feed may have created it since.
        self.related.retain(|_, id| id.is_some());
        for rel in self.relations() {
            let mut todo: Vec<(String, Option<String>)> = Vec::new();
            for it in items {
                for w in wanted(rel, it) {
                    if !self.related.contains_key(&(rel.collection, w.0.clone()))
                        && !todo.contains(&w)
                    {
                        todo.push(w);
                    }
                }
            }
            if todo.is_empty() {
                continue;
            }
            if rel.create {
                self.create_objects(rel, &todo);
            } else {
                for (value, fallback) in todo {
                    self.look_up(rel, &value, fallback.as_deref());
                }
            }
        }
    }

    /// `POST /api/{collection}/consume` with `[{"value"}]`: creates what is missing, returns ids.
    fn create_objects(&mut self, rel: &Relation, todo: &[(String, Option<String>)]) {
        for chunk in todo.chunks(self.cfg.batch_size.max(1)) {
            let body = Value::Array(chunk.iter().map(|(v, _)| json!({ "value": v })).collect());
            let path = format!("/api/{}/consume", rel.collection);
            match self.api.call(Method::POST, &path, Some(&body)) {
                Ok(v) => {
                    let data = v
                        .get("data")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for (k, (value, _)) in chunk.iter().enumerate() {
                        let d = if data.len() == chunk.len() {
                            data.get(k)
                        } else {
                            data.iter()
                                .find(|d| d.get("value").and_then(Value::as_str) == Some(value))
                        };
                        match d.and_then(|d| d.get("id")).and_then(id_of) {
                            Some(id) => {
                                self.related
                                    .insert((rel.collection, value.clone()), Some(id));
                            }
                            None => {
                                self.related_errors.insert(
                                    (rel.collection, value.clone()),
                                    format!("ThreatQ did not create {} {value:?}", rel.collection),
                                );
                            }
                        }
                    }
                }
                Err(e) => {
                    for (value, _) in chunk {
                        self.related_errors.insert(
                            (rel.collection, value.clone()),
                            format!("{} {value:?} not created: {}", rel.collection, e.message()),
                        );
                    }
                }
            }
        }
    }

    /// `GET /api/{collection}?value=…` with the value, then its fallback; `None` when neither is
    /// there (no relation, not an error).
    fn look_up(&mut self, rel: &Relation, value: &str, fallback: Option<&str>) {
        for v in std::iter::once(value).chain(fallback) {
            let path = format!("/api/{}?value={}", rel.collection, query_value(v));
            match self.api.call(Method::GET, &path, None) {
                Ok(ans) => {
                    let id = ans
                        .get("data")
                        .and_then(Value::as_array)
                        .and_then(|a| a.first())
                        .and_then(|d| d.get("id"))
                        .and_then(id_of);
                    if let Some(id) = id {
                        self.related
                            .insert((rel.collection, value.to_string()), Some(id));
                        return;
                    }
                }
                Err(e) => {
                    self.related_errors.insert(
                        (rel.collection, value.to_string()),
                        format!("looking up {} {v:?}: {}", rel.collection, e.message()),
                    );
                    return;
                }
            }
        }
        tracing::debug!("ThreatQ has no {} {value:?}; not related", rel.collection);
        self.related
            .insert((rel.collection, value.to_string()), None);
    }

    /// Why an item cannot go out with its relations this run (it stays pending), if so.
    pub(super) fn related_error(&self, it: &ExportItem) -> Option<String> {
        self.relations().into_iter().find_map(|rel| {
            wanted(rel, it)
                .into_iter()
                .find_map(|(v, _)| self.related_errors.get(&(rel.collection, v)).cloned())
        })
    }

    /// The relation fields of an item's signature body.
    pub(super) fn related_fields(&self, it: &ExportItem) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if self.cfg.indicators && !it.removed {
            if let Some(v) = rule_indicators(it) {
                out.push(("indicators", v));
            }
        }
        for rel in self.relations() {
            let mut ids: Vec<u64> = Vec::new();
            for (v, _) in wanted(rel, it) {
                if let Some(Some(id)) = self.related.get(&(rel.collection, v)) {
                    if !ids.contains(id) {
                        ids.push(*id);
                    }
                }
            }
            if !ids.is_empty() {
                out.push((
                    rel.collection,
                    Value::Array(ids.into_iter().map(|id| json!({ "id": id })).collect()),
                ));
            }
        }
        out
    }
}
