//! Rule → ThreatQ bodies (threatq-api.md §1.4, §2.4): attributes, the signature body, the ids
//! resolved from the instance. Nothing here talks to the network.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::config::{DisabledValue, SourceField, ThreatQConfig};
use crate::sinks::{ExportItem, IndicatorItem};

/// The name ET's catalog id has as ThreatQ `Ruleset` attribute.
pub(super) fn ruleset_label(id: &str) -> &str {
    match id {
        "et-open" => "ET Open",
        "et-open-nogpl" => "ET Open (no GPL)",
        "et-pro" => "ET Pro",
        "et-blockrules" => "Block Rules",
        "custom" => "Custom",
        other => other,
    }
}

/// `2024_04_19` → `2024-04-19 00:00:00` (ThreatQ's timestamp form).
pub(super) fn published_at(item: &ExportItem) -> Option<String> {
    let find = |k: &str| {
        item.metadata
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let d = find("updated_at").or_else(|| find("created_at"))?;
    let parts: Vec<&str> = d.trim().split(['_', '-']).collect();
    match parts.as_slice() {
        [y, m, dd]
            if y.len() == 4
                && m.len() == 2
                && dd.len() == 2
                && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            Some(format!("{y}-{m}-{dd} 00:00:00"))
        }
        _ => None,
    }
}

/// The attributes of one signature, (name, value) pairs in a stable order, duplicates merged.
pub fn attributes_for(cfg: &ThreatQConfig, item: &ExportItem) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |n: &str, v: String| {
        let n = cfg.attr_name(n).to_string();
        if !v.is_empty() && !out.iter().any(|(a, b)| *a == n && *b == v) {
            out.push((n, v));
        }
    };
    push("SID", item.sid.to_string());
    push("Revision", item.rev.to_string());
    if item.gid != 1 {
        push("GID", item.gid.to_string());
    }
    if let Some(c) = &item.classtype {
        push("Classtype", c.clone());
    }
    if let Some(cat) = item.msg.split_whitespace().nth(1) {
        push("Category", cat.to_string());
    }
    push("Ruleset", ruleset_label(&item.ruleset).to_string());
    if let Some(e) = &item.engine {
        push("Engine", e.clone());
    }
    push(
        "Shipped Enabled",
        if item.enabled { "Yes" } else { "No" }.to_string(),
    );
    for (t, v) in &item.references {
        push("Reference", format!("{t},{v}"));
    }
    for (k, v) in &item.metadata {
        push(k, v.clone());
    }
    out
}

/// Resolved ids the body needs.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    /// Snort (or the configured type) id.
    pub(super) default_type: (u64, String),
    /// Suricata type id when `auto` and the instance has it.
    pub(super) suricata_type: Option<(u64, String)>,
    /// lower-case name → (id, canonical name).
    pub(super) statuses: HashMap<String, (u64, String)>,
}

impl Resolved {
    pub(super) fn type_for(&self, item: &ExportItem) -> &(u64, String) {
        match (&self.suricata_type, &item.engine) {
            (Some(t), Some(e)) if e.to_ascii_lowercase().starts_with("suricata") => t,
            _ => &self.default_type,
        }
    }

    pub(super) fn status(&self, name: &str) -> Option<&(u64, String)> {
        self.statuses.get(&name.to_ascii_lowercase())
    }
}

/// The value ThreatQ stores for a rule (§4 #6).
pub(super) fn value_of(cfg: &ThreatQConfig, enabled: bool, text: &str) -> String {
    if !enabled && cfg.disabled_value == DisabledValue::Keep {
        format!("#{text}")
    } else {
        text.to_string()
    }
}

pub(super) fn signature_body(
    cfg: &ThreatQConfig,
    res: &Resolved,
    item: &ExportItem,
    value: &str,
    status: &str,
    attrs: &[(String, String)],
) -> Value {
    let name = if item.msg.trim().is_empty() {
        format!("{}:{}", item.gid, item.sid)
    } else {
        item.msg.clone()
    };
    let mut o = serde_json::Map::new();
    o.insert("name".into(), json!(name));
    o.insert("value".into(), json!(value));
    o.insert("type_id".into(), json!(res.type_for(item).0));
    o.insert("status".into(), json!({ "name": status }));
    put_source(cfg, &mut o);
    if let Some(p) = published_at(item) {
        o.insert("published_at".into(), json!(p));
    }
    let attrs: Vec<Value> = attrs
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    o.insert("attributes".into(), Value::Array(attrs));
    Value::Object(o)
}

/// The configured source (and TLP) in the configured field (§4 #4).
fn put_source(cfg: &ThreatQConfig, o: &mut serde_json::Map<String, Value>) {
    let mut source = serde_json::Map::new();
    source.insert("name".into(), json!(cfg.source_name));
    if let Some(t) = cfg.tlp {
        source.insert("tlp_id".into(), json!(t.id()));
    }
    match cfg.source_field {
        SourceField::Sources => {
            o.insert("sources".into(), json!([Value::Object(source)]));
        }
        SourceField::Source => {
            o.insert("source".into(), json!(cfg.source_name));
        }
    }
}

// ----- related objects: the mapping as data ------------------------------------------------

/// Store kind of an indicator → ThreatQ indicator type (threatq-api.md §2.4).
pub(super) const INDICATOR_TYPES: [(&str, &str); 2] =
    [("ip", "IP Address"), ("cidr", "CIDR Block")];

/// Attribute names on an indicator: one `List` per list naming it, one `Ruleset` per ruleset.
pub(super) const INDICATOR_LIST_ATTRIBUTE: &str = "List";
pub(super) const INDICATOR_RULESET_ATTRIBUTE: &str = "Ruleset";

/// One kind of related object taken from ET metadata. Where threatq-api.md marks the shape
/// unknown, these are the documented generic forms (§1.5): objects made with
/// `POST /api/{collection}/consume`, looked up with `GET /api/{collection}?value=…`, related
/// inline as `"{collection}": [{"id": N}]` in the signature body.
pub(super) struct Relation {
    /// The ET metadata key whose value names the object.
    pub meta: &'static str,
    /// Also try this metadata key's value when the first finds nothing (lookups only).
    pub fallback_meta: Option<&'static str>,
    /// ThreatQ collection (`tq_mappings.object_types`), also the inline field of the body.
    pub collection: &'static str,
    /// Create the object when ThreatQ lacks it; else relate only an existing one (the CDF's
    /// stated behaviour for attack patterns: the MITRE feed creates them).
    pub create: bool,
}

pub(super) const MALWARE: Relation = Relation {
    meta: "malware_family",
    fallback_meta: None,
    collection: "malware",
    create: true,
};

pub(super) const ATTACK_PATTERN: Relation = Relation {
    meta: "mitre_technique_name",
    fallback_meta: Some("mitre_technique_id"),
    collection: "attack_pattern",
    create: false,
};

/// The value ThreatQ knows an object by, from an ET metadata value: ET writes spaces as `_`
/// (`Exploit_Public_Facing_Application`).
pub(super) fn object_value(meta_value: &str) -> String {
    meta_value.trim().replace('_', " ")
}

/// The distinct metadata values of `key` in an item, in order.
pub(super) fn meta_values<'a>(item: &'a ExportItem, key: &str) -> Vec<&'a str> {
    let mut v: Vec<&str> = Vec::new();
    for (k, val) in &item.metadata {
        if k == key && !val.trim().is_empty() && !v.contains(&val.as_str()) {
            v.push(val);
        }
    }
    v
}

/// Inline `indicators: [{value, type}]` of a block rule: the IPs its header lists.
pub(super) fn rule_indicators(item: &ExportItem) -> Option<Value> {
    crate::payload::block_list_of(&item.file)?;
    let list: Vec<Value> = crate::payload::header_ips(&item.text)
        .into_iter()
        .filter_map(|(v, kind)| Some(json!({"value": v, "type": indicator_type(kind)?})))
        .collect();
    (!list.is_empty()).then_some(Value::Array(list))
}

pub(super) fn indicator_type(kind: &str) -> Option<&'static str> {
    INDICATOR_TYPES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, t)| *t)
}

/// The consume body of one block-list indicator.
pub(super) fn indicator_body(cfg: &ThreatQConfig, it: &IndicatorItem) -> Option<Value> {
    let ty = indicator_type(&it.kind)?;
    let mut o = serde_json::Map::new();
    o.insert("value".into(), json!(it.value));
    o.insert("type".into(), json!({ "name": ty }));
    o.insert("status".into(), json!({ "name": it.status }));
    put_source(cfg, &mut o);
    let mut attrs: Vec<Value> = it
        .lists
        .iter()
        .map(|l| json!({"name": INDICATOR_LIST_ATTRIBUTE, "value": l}))
        .collect();
    attrs.extend(
        it.rulesets
            .iter()
            .map(|r| json!({"name": INDICATOR_RULESET_ATTRIBUTE, "value": ruleset_label(r)})),
    );
    o.insert("attributes".into(), Value::Array(attrs));
    Some(Value::Object(o))
}
