//! Connecting: the HTTPS client, the login, and the signature types and statuses of the
//! instance resolved by name (threatq-api.md §1.3).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{Api, CallError, Stats};
use super::config::{RevChange, ThreatQConfig};
use super::mapping::Resolved;
use super::sink::ThreatQSink;
use crate::config::{resolve, Dur};
use crate::exit::usage;
use crate::sinks::ExportItem;

/// `(id, name)` pairs from a `{"data": [{"id", "name"}]}` answer.
pub(super) fn id_names(v: &Value) -> Vec<(u64, String)> {
    v.get("data")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| {
                    let id = o.get("id").and_then(id_of)?;
                    let name = o.get("name").and_then(Value::as_str)?;
                    Some((id, name.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn id_of(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Signature statuses from `/api/objects` (§1.3): the object whose name or collection is
/// `signature(s)` and carries a `statuses` list.
pub(super) fn statuses_from_objects(v: &Value) -> Vec<(u64, String)> {
    let Some(list) = v.get("data").and_then(Value::as_array) else {
        return Vec::new();
    };
    for o in list {
        let named = ["name", "code", "collection"].iter().any(|k| {
            o.get(*k).and_then(Value::as_str).is_some_and(|s| {
                s.eq_ignore_ascii_case("signature") || s.eq_ignore_ascii_case("signatures")
            })
        });
        if named {
            if let Some(s) = o.get("statuses") {
                return id_names(&json!({ "data": s }));
            }
        }
    }
    Vec::new()
}

impl ThreatQSink {
    /// Log in and resolve signature type and status ids. Relative paths resolve against
    /// `config_dir`. Bad settings, refused credentials and a missing type are config errors.
    pub fn connect(cfg: &ThreatQConfig, config_dir: &Path) -> anyhow::Result<ThreatQSink> {
        let base = cfg.validate()?;
        let password = cfg.read_password(config_dir)?;
        let mut builder = Client::builder()
            // Never follow: see `Api::redirected`.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout.get())
            .connect_timeout(cfg.timeout.get().min(Duration::from_secs(30)))
            .user_agent(concat!("etferry/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca_bundle {
            let path = resolve(config_dir, ca);
            let pem = std::fs::read(&path).map_err(|e| {
                usage(format!(
                    "sinks.threatq.ca_bundle: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                usage(format!(
                    "sinks.threatq.ca_bundle {}: not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(usage(format!(
                    "sinks.threatq.ca_bundle {}: no certificate found",
                    path.display()
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build().context("cannot build the HTTPS client")?;
        let api = Api {
            http,
            base,
            client_id: cfg.client_id.clone(),
            email: cfg.email.clone(),
            password,
            lifetime_override: cfg.token_lifetime.map(Dur::get),
            retry: cfg.retry.clone(),
            tokens: Mutex::new(None),
            known: Mutex::new(Vec::new()),
            stats: Mutex::new(Stats::default()),
            waited: Mutex::new(Duration::ZERO),
            tripped: Mutex::new(None),
        };
        let to_err = |e: CallError| match e {
            CallError::Auth(m) => usage(m),
            CallError::Stop(m) | CallError::Failed(m) => anyhow::anyhow!(m),
        };
        api.bearer().map_err(to_err)?;

        let types = id_names(
            &api.call(Method::GET, "/api/signature/types", None)
                .map_err(to_err)?,
        );
        // Two types may share a name (case-insensitively); the first by id wins, and the choice
        // is logged and shown by `config check --online`.
        let mut notes = Vec::new();
        let mut find = |n: &str| {
            let mut same: Vec<&(u64, String)> = types
                .iter()
                .filter(|(_, t)| t.eq_ignore_ascii_case(n))
                .collect();
            same.sort_by_key(|(id, _)| *id);
            if same.len() > 1 {
                let ids: Vec<String> = same.iter().map(|(id, t)| format!("{id} ({t})")).collect();
                let note = format!(
                    "ThreatQ has {} signature types named {n:?}: ids {}; using id {}",
                    same.len(),
                    ids.join(", "),
                    same[0].0
                );
                tracing::warn!("{note}");
                notes.push(note);
            }
            same.first().map(|t| (*t).clone())
        };
        let offered_types = || {
            types
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (default_type, suricata_type) = if cfg.signature_type.eq_ignore_ascii_case("auto") {
            let snort = find("Snort");
            let suri = find("Suricata");
            match (snort, suri) {
                (Some(s), su) => (s, su),
                (None, Some(su)) => (su.clone(), Some(su)),
                (None, None) => {
                    return Err(usage(format!(
                        "sinks.threatq.signature_type auto: ThreatQ {} has neither a Snort nor a Suricata signature type; it offers: {}",
                        api.base,
                        offered_types()
                    )))
                }
            }
        } else {
            match find(&cfg.signature_type) {
                Some(t) => (t, None),
                None => {
                    return Err(usage(format!(
                        "sinks.threatq.signature_type {:?}: ThreatQ {} has no such signature type; it offers: {}",
                        cfg.signature_type,
                        api.base,
                        offered_types()
                    )))
                }
            }
        };

        let statuses = match api.call(Method::GET, "/api/signature/statuses", None) {
            Ok(v) => id_names(&v),
            Err(CallError::Failed(m)) => {
                tracing::info!("{m}; reading signature statuses from /api/objects instead");
                let v = api
                    .call(Method::GET, "/api/objects", None)
                    .map_err(to_err)?;
                statuses_from_objects(&v)
            }
            Err(e) => return Err(to_err(e)),
        };
        if statuses.is_empty() {
            return Err(anyhow::anyhow!(
                "ThreatQ {} lists no signature statuses (neither /api/signature/statuses nor /api/objects)",
                api.base
            ));
        }
        let offered_statuses: Vec<String> = statuses.iter().map(|(_, n)| n.clone()).collect();
        let res = Resolved {
            default_type,
            suricata_type,
            statuses: statuses
                .into_iter()
                .map(|(id, n)| (n.to_ascii_lowercase(), (id, n)))
                .collect(),
        };
        let sink = ThreatQSink {
            cfg: cfg.clone(),
            api,
            res,
            offered_statuses,
            notes,
            related: std::collections::HashMap::new(),
            related_errors: std::collections::HashMap::new(),
            run: None,
            warned_missing: false,
        };
        let mut needed = Vec::new();
        if cfg.rev_change == RevChange::NewSignature {
            needed.push(cfg.superseded_status.as_str());
        }
        sink.require_statuses(&needed)?;
        Ok(sink)
    }

    /// What `connect` noticed about the instance (e.g. two signature types of one name).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// A configured status the instance lacks is a config error (exit 2) listing what it offers.
    pub fn require_statuses(&self, names: &[&str]) -> anyhow::Result<()> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| self.res.status(n).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(usage(format!(
            "ThreatQ {} has no signature status {}; it offers: {}",
            self.api.base,
            missing
                .iter()
                .map(|m| format!("{m:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.offered_statuses.join(", ")
        )))
    }

    /// The signature type names rules go out as: the default one, then Suricata's when `auto`
    /// found a separate one.
    pub fn signature_types(&self) -> Vec<&str> {
        let mut v = vec![self.res.default_type.1.as_str()];
        if let Some((_, n)) = &self.res.suricata_type {
            if !v.contains(&n.as_str()) {
                v.push(n);
            }
        }
        v
    }

    /// The base URL (no credentials).
    pub fn host(&self) -> &str {
        self.api.base.as_str().trim_end_matches('/')
    }

    /// Counters since `connect`.
    pub fn stats(&self) -> Stats {
        self.api.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The signature type name a rule goes out as.
    pub fn type_name(&self, item: &ExportItem) -> &str {
        &self.res.type_for(item).1
    }
}
