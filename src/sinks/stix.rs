//! The STIX 2.1 sink: one bundle file for other platforms (MISP, OpenCTI), rewritten atomically
//! from the whole store.
//!
//! One `indicator` per rule a sink receives (pattern type `suricata` or `snort`, the rule text as
//! pattern) and one per block-list address (`[ipv4-addr:value = '…']`), all created by an
//! `identity` for Proofpoint Emerging Threats. Ids are UUIDv5 (ruleset, engine, gid, sid; or the
//! address), so a re-export keeps each object's id and `created`, and moves `modified` only for
//! objects whose content changed; the previous file is the memory of those times. A rule that
//! was removed upstream, or an object that is gone from the store, is written `revoked: true`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::sinks::{ExportItem, ExportOutcome, Sink};
use crate::store::{ExportPolicy, Store, TextRef, TextWants};

/// `sinks.stix` in watch.yaml / etferry.yaml.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StixConfig {
    pub path: PathBuf,
    /// Set by [`StixConfig::prepare`].
    #[serde(skip)]
    pub store: PathBuf,
}

impl StixConfig {
    pub fn prepare(&mut self, base: &Path, store: &Path) {
        self.path = crate::config::resolve(base, &self.path);
        self.store = store.to_path_buf();
    }
}

/// Namespace of etferry's UUIDv5 ids (a fixed random UUID: changing it changes every id).
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d1c_3f0e_8f4b_4a57_9a51_2c7e_0b9e_d4a3);
/// `created` of the identity object, fixed so that it never changes.
const IDENTITY_CREATED: &str = "2024-01-01T00:00:00.000Z";

fn id(kind: &str, name: &str) -> String {
    format!(
        "{kind}--{}",
        uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes())
    )
}

/// The identity every indicator is created by.
pub fn identity_id() -> String {
    id("identity", "Proofpoint Emerging Threats")
}

/// Id of a rule's indicator.
pub fn rule_id(ruleset: &str, engine: Option<&str>, gid: u32, sid: u32) -> String {
    id(
        "indicator",
        &format!("rule|{ruleset}|{}|{gid}|{sid}", engine.unwrap_or("")),
    )
}

/// Id of a block-list address's indicator.
pub fn address_id(value: &str) -> String {
    id("indicator", &format!("address|{value}"))
}

fn stix_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `2024_04_21` (ET metadata) as a STIX timestamp.
fn et_date(v: &str) -> Option<String> {
    let d = NaiveDate::parse_from_str(v.trim(), "%Y_%m_%d").ok()?;
    Some(stix_time(d.and_hms_opt(0, 0, 0)?.and_utc()))
}

/// What the STIX sink wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StixCounts {
    pub rule_indicators: usize,
    pub address_indicators: usize,
    pub revoked: usize,
    /// Objects whose `modified` moved in this run (new ones included).
    pub changed: usize,
    pub written: bool,
}

pub struct StixSink {
    cfg: StixConfig,
    policy: ExportPolicy,
}

/// A rule row as the bundle needs it.
struct RuleRow {
    source: String,
    gid: u32,
    sid: u32,
    rev: u32,
    msg: String,
    text: Option<String>,
    hash: crate::store::TextHash,
    removed: bool,
    category: Option<String>,
    file: String,
}

impl StixSink {
    pub fn new(cfg: &StixConfig, policy: &ExportPolicy) -> anyhow::Result<StixSink> {
        if cfg.store.as_os_str().is_empty() {
            anyhow::bail!("sinks.stix: the config was not prepared (no store path)");
        }
        Ok(StixSink {
            cfg: cfg.clone(),
            policy: policy.clone(),
        })
    }

    /// The objects for the current store, without `created` / `modified`, keyed by id, plus
    /// the time to use for an object first seen now with no date of its own (`valid_from`).
    fn current(&self, store: &Store) -> anyhow::Result<BTreeMap<String, (Value, String)>> {
        let sources: HashMap<String, crate::store::SourceRow> = store
            .sources()?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut st = store.conn().prepare(
            "SELECT source, gid, sid, rev, msg, text, text_hash, enabled, removed, category, file
             FROM rules ORDER BY source, gid, sid",
        )?;
        let mut rows = Vec::new();
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            let enabled: bool = r.get(7)?;
            if !enabled && !self.policy.include_non_standard {
                continue;
            }
            rows.push(RuleRow {
                source: r.get(0)?,
                gid: r.get(1)?,
                sid: r.get(2)?,
                rev: r.get(3)?,
                msg: r.get(4)?,
                text: r.get(5)?,
                hash: r.get(6)?,
                removed: r.get(8)?,
                category: r.get(9)?,
                file: r.get(10)?,
            });
        }
        // Texts of current rules come back from each source's stored payload.
        let mut want = TextWants::default();
        for r in rows.iter().filter(|r| r.text.is_none()) {
            want.push(
                &r.source,
                TextRef {
                    key: (r.gid, r.sid),
                    hash: r.hash,
                    file: r.file.clone(),
                },
            );
        }
        let mut texts = store.read_texts(want)?;

        let creator = identity_id();
        let mut out = BTreeMap::new();
        for r in &rows {
            let Some(src) = sources.get(&r.source) else {
                continue;
            };
            let text = match &r.text {
                Some(t) => t.clone(),
                None => texts.take(&r.source, (r.gid, r.sid)).unwrap_or_default(),
            };
            let engine = src.engine.as_deref();
            let pattern_type = match engine {
                Some(e) if e.starts_with("snort") => "snort",
                Some(_) => "suricata",
                None if r.file.contains("suricata") => "suricata",
                None => "snort",
            };
            let (refs, meta) = crate::payload::rule_details(&text);
            let dated = ["created_at", "updated_at"]
                .iter()
                .find_map(|k| meta.iter().find(|(mk, _)| mk == k))
                .and_then(|(_, v)| et_date(v));
            let mut ext = vec![json!({
                "source_name": "Proofpoint Emerging Threats",
                "external_id": format!("{}:{}", r.gid, r.sid),
                "description": format!("SID {} revision {}", r.sid, r.rev),
            })];
            for (kind, v) in refs {
                match kind.as_str() {
                    "url" => ext.push(json!({"source_name": "url", "url": uri(&v)})),
                    "cve" => {
                        let cve = if v.to_ascii_uppercase().starts_with("CVE-") {
                            v.to_ascii_uppercase()
                        } else {
                            format!("CVE-{v}")
                        };
                        if cve_re().is_match(&cve) {
                            ext.push(json!({"source_name": "cve", "external_id": cve}));
                        }
                    }
                    _ => {}
                }
            }
            let malicious = !matches!(
                r.category.as_deref(),
                Some("POLICY" | "INFO" | "HUNTING" | "GAMES" | "CHAT" | "P2P" | "INAPPROPRIATE")
            );
            let mut o = json!({
                "type": "indicator",
                "spec_version": "2.1",
                "id": rule_id(&src.ruleset, engine, r.gid, r.sid),
                "created_by_ref": creator,
                "name": r.msg,
                "description": format!(
                    "Rule {}:{} revision {} from {} of source {}",
                    r.gid, r.sid, r.rev, r.file, r.source
                ),
                "indicator_types": [if malicious { "malicious-activity" } else { "anomalous-activity" }],
                "pattern_type": pattern_type,
                "pattern": text,
                "external_references": ext,
            });
            if let Some(d) = &dated {
                o["valid_from"] = json!(d);
            }
            if r.removed {
                o["revoked"] = json!(true);
            }
            let id = o["id"].as_str().unwrap_or_default().to_string();
            out.insert(id, (o, stix_time(src.last_bundle_at)));
        }

        let mut st = store.conn().prepare(
            "SELECT source, value, kind, section FROM indicators ORDER BY source, value",
        )?;
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            let source: String = r.get(0)?;
            let value: String = r.get(1)?;
            let section: String = r.get(3)?;
            let family = if value.contains(':') {
                "ipv6-addr"
            } else {
                "ipv4-addr"
            };
            let id = address_id(&value);
            let seen = sources
                .get(&source)
                .map(|s| stix_time(s.last_bundle_at))
                .unwrap_or_else(|| stix_time(Utc::now()));
            out.entry(id.clone()).or_insert_with(|| {
                (
                    json!({
                        "type": "indicator",
                        "spec_version": "2.1",
                        "id": id,
                        "created_by_ref": creator,
                        "name": format!("ET block list: {value}"),
                        "description": format!("{section} ({source})"),
                        "indicator_types": ["malicious-activity"],
                        "pattern_type": "stix",
                        "pattern": format!("[{family}:value = '{value}']"),
                    }),
                    seen,
                )
            });
        }
        Ok(out)
    }

    /// Write the bundle when its content changed; `dry_run` only counts.
    pub fn write(&self, dry_run: bool) -> anyhow::Result<StixCounts> {
        let store = Store::open(&self.cfg.store)?;
        let current = self.current(&store)?;
        drop(store);
        let previous = read_previous(&self.cfg.path);
        let now = stix_time(Utc::now());
        let mut c = StixCounts::default();
        let mut objects = vec![json!({
            "type": "identity",
            "spec_version": "2.1",
            "id": identity_id(),
            "created": IDENTITY_CREATED,
            "modified": IDENTITY_CREATED,
            "name": "Proofpoint Emerging Threats",
            "identity_class": "organization",
        })];
        let mut seen = std::collections::HashSet::new();
        for (id, (mut o, first_seen)) in current {
            seen.insert(id.clone());
            let prev = previous.get(&id);
            if o.get("valid_from").is_none() {
                let v = prev
                    .and_then(|p| p.get("valid_from").cloned())
                    .unwrap_or(json!(first_seen));
                o["valid_from"] = v;
            }
            stamp(&mut o, prev, &now, &mut c);
            count(&o, &mut c);
            objects.push(o);
        }
        // Objects of an earlier export that the store no longer has: revoked, not dropped, so
        // a consumer learns they are gone.
        for (id, p) in &previous {
            if seen.contains(id) || p.get("type").and_then(Value::as_str) != Some("indicator") {
                continue;
            }
            let mut o = p.clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("created");
                m.remove("modified");
            }
            o["revoked"] = json!(true);
            stamp(&mut o, Some(p), &now, &mut c);
            count(&o, &mut c);
            objects.push(o);
        }
        let bundle = json!({
            "type": "bundle",
            "id": id("bundle", &self.cfg.path.to_string_lossy()),
            "objects": objects,
        });
        let bytes = serde_json::to_vec_pretty(&bundle)?;
        if dry_run || std::fs::read(&self.cfg.path).is_ok_and(|old| old == bytes) {
            return Ok(c);
        }
        crate::fsutil::atomic_write(&self.cfg.path, &bytes)
            .with_context(|| "sinks.stix: writing the bundle")?;
        c.written = true;
        Ok(c)
    }
}

/// An ET `reference:url,…` value as a valid URI: ET writes most without a scheme (`http://`
/// added), some quoted, some with spaces or a second `#`; those characters are
/// percent-encoded so that consumers (and stix2-validator) accept the reference.
fn uri(v: &str) -> String {
    let v = v.trim().trim_matches('"');
    let has_scheme = v.find("://").is_some_and(|i| {
        i > 0
            && v[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    let mut out = String::with_capacity(v.len() + 8);
    if !has_scheme {
        out.push_str("http://");
    }
    let mut fragment = false;
    let chars: Vec<char> = v.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let escape_ok = || {
            chars
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(char::is_ascii_hexdigit))
        };
        match c {
            '%' if !escape_ok() => out.push_str("%25"),
            '#' if !fragment => {
                fragment = true;
                out.push('#');
            }
            c if c.is_ascii_alphanumeric() || "-._~:/?[]@!$&'()*+,;=%".contains(c) => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

fn cve_re() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^CVE-\d{4}-(0\d{3}|[1-9]\d{3,})$").unwrap_or_else(|_| unreachable!())
    })
}

/// Set `created` and `modified`: both kept from the previous export when the object did not
/// change, `created` kept and `modified` now when it did, both now for a new object.
fn stamp(o: &mut Value, prev: Option<&Value>, now: &str, c: &mut StixCounts) {
    let (created, modified) = match prev {
        Some(p) => {
            let mut bare = p.clone();
            if let Some(m) = bare.as_object_mut() {
                m.remove("created");
                m.remove("modified");
            }
            let created = p.get("created").cloned().unwrap_or(json!(now));
            if bare == *o {
                (created, p.get("modified").cloned().unwrap_or(json!(now)))
            } else {
                c.changed += 1;
                (created, json!(now))
            }
        }
        None => {
            c.changed += 1;
            (json!(now), json!(now))
        }
    };
    o["created"] = created;
    o["modified"] = modified;
}

fn count(o: &Value, c: &mut StixCounts) {
    if o.get("revoked").and_then(Value::as_bool) == Some(true) {
        c.revoked += 1;
    }
    if o.get("pattern_type").and_then(Value::as_str) == Some("stix") {
        c.address_indicators += 1;
    } else {
        c.rule_indicators += 1;
    }
}

/// The objects of the previous bundle by id; an unreadable file counts as none (every
/// object is then new).
fn read_previous(path: &Path) -> HashMap<String, Value> {
    let Ok(bytes) = std::fs::read(path) else {
        return HashMap::new();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        tracing::warn!(
            "sinks.stix: {} is not JSON; every object is written as new",
            path.display()
        );
        return HashMap::new();
    };
    v.get("objects")
        .and_then(Value::as_array)
        .map(|objs| {
            objs.iter()
                .filter_map(|o| Some((o.get("id")?.as_str()?.to_string(), o.clone())))
                .collect()
        })
        .unwrap_or_default()
}

impl Sink for StixSink {
    fn name(&self) -> &str {
        "stix"
    }

    fn whole_store(&self) -> bool {
        true
    }

    fn export(&mut self, items: &[ExportItem]) -> anyhow::Result<ExportOutcome> {
        self.write(false)?;
        Ok(ExportOutcome {
            confirmed: (0..items.len()).collect(),
            ..ExportOutcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        assert_eq!(
            rule_id("et-open", Some("suricata-5.0"), 1, 2),
            rule_id("et-open", Some("suricata-5.0"), 1, 2)
        );
        assert_ne!(
            rule_id("et-open", Some("suricata-5.0"), 1, 2),
            rule_id("et-open", Some("snort-2.9.0"), 1, 2)
        );
        assert!(address_id("1.2.3.4").starts_with("indicator--"));
        assert_eq!(
            et_date("2024_04_21").as_deref(),
            Some("2024-04-21T00:00:00.000Z")
        );
    }

    #[test]
    fn et_reference_urls_become_valid_uris() {
        assert_eq!(
            uri("doc.emergingthreats.net/2001"),
            "http://doc.emergingthreats.net/2001"
        );
        assert_eq!(uri("https://x.org/a b"), "https://x.org/a%20b");
        assert_eq!(uri("\"x.org/?id=1\""), "http://x.org/?id=1");
        assert_eq!(uri("x.org/a?b#-#-c"), "http://x.org/a?b#-%23-c");
        assert_eq!(uri("x.org/100%/%41"), "http://x.org/100%25/%41");
        assert_eq!(
            uri("web.archive.org/web/2018/https://a.com/x"),
            "http://web.archive.org/web/2018/https://a.com/x"
        );
    }
}
