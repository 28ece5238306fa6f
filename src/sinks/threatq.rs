//! The ThreatQ sink: the only module that talks to ThreatQ. It logs in with the password grant,
//! resolves signature type and status ids by name, and upserts signatures through
//! `POST /api/signatures/consume` in batches, with bounded retries. Facts and open questions:
//! `../shared/reference/threatq-api.md` (every open point of its §4 is a config key here).
//!
//! Invariant: an item is reported `confirmed` only when ThreatQ answered it with an id (and, for a
//! changed rule, its stale single-value attributes are gone). Everything else is `failed` and
//! stays pending in the store.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{read_secret_env, read_secret_file, resolve, Dur};
use crate::exit::usage;
use crate::secret::{redact, Secret};
use crate::sinks::{ExportItem, ExportOutcome, Sink};

// ---------------------------------------------------------------------------------------------
// Configuration (`sinks.threatq` in watch.yaml)
// ---------------------------------------------------------------------------------------------

/// `sinks.threatq` in watch.yaml. Key names are the contract of issue 5; the rest are the open
/// questions of threatq-api.md §4 with their documented defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreatQConfig {
    /// `https://host`; `http` only for 127.0.0.1 / localhost (tests).
    pub host: String,
    /// User > My Account > API Credentials.
    pub client_id: String,
    pub email: String,
    /// File holding the password (trailing newline trimmed); or `password_env`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// PEM bundle to trust (internal CA or self-signed ThreatQ), on top of the system roots.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    #[serde(default = "default_source_name")]
    pub source_name: String,
    #[serde(default)]
    pub tlp: Option<Tlp>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// `auto` (Suricata when the instance has it and the rule is from a Suricata flavour, else
    /// Snort) or a type name.
    #[serde(default = "default_signature_type")]
    pub signature_type: String,
    /// Renames of the default attribute names, e.g. `{Revision: Rev}`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// §4 #3: a changed `rev` makes a new signature (and the old text gets `superseded_status`),
    /// or updates the existing one in place.
    #[serde(default)]
    pub rev_change: RevChange,
    #[serde(default = "default_superseded")]
    pub superseded_status: String,
    /// §4 #11: delete same-name single-value attributes whose value changed (old `Revision`).
    #[serde(default = "yes")]
    pub replace_changed_attributes: bool,
    /// §4 #4: `sources` array or singular `source`.
    #[serde(default)]
    pub source_field: SourceField,
    /// §4 #6: value of a shipped-disabled rule: `strip` the `#` or `keep` it.
    #[serde(default)]
    pub disabled_value: DisabledValue,
    /// §4 #10: used when the token answer has no `expires_in` (default 30m).
    #[serde(default)]
    pub token_lifetime: Option<Dur>,
    /// §4 #5: pause between a worker's batches, random in [batch_pause, batch_pause_max].
    #[serde(default = "one_s")]
    pub batch_pause: Dur,
    #[serde(default = "three_s")]
    pub batch_pause_max: Dur,
    /// Per-request timeout.
    #[serde(default = "sixty_s")]
    pub timeout: Dur,
    #[serde(default)]
    pub retry: RetryConfig,
}

/// §4 #13: bounded backoff on 429 / 5xx / timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Tries per request, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First backoff; doubles each retry.
    #[serde(default = "one_s")]
    pub base: Dur,
    /// Cap for one wait, Retry-After included.
    #[serde(default = "sixty_s")]
    pub max_delay: Dur,
    /// Circuit breaker: the most this sink waits on retries in one export (a ThreatQ answering
    /// 429 forever). Past it every call fails at once and the rest stays pending.
    #[serde(default = "ten_m")]
    pub max_total_wait: Dur,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: default_attempts(),
            base: one_s(),
            max_delay: sixty_s(),
            max_total_wait: ten_m(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tlp {
    Red,
    Amber,
    Green,
    White,
}

impl Tlp {
    /// ThreatQ's TLP ids (`bulk_object.tlp_map`).
    pub fn id(self) -> u32 {
        match self {
            Tlp::Red => 1,
            Tlp::Amber => 2,
            Tlp::Green => 3,
            Tlp::White => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevChange {
    #[default]
    NewSignature,
    UpdateInPlace,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceField {
    #[default]
    Sources,
    Source,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisabledValue {
    #[default]
    Strip,
    Keep,
}

fn default_source_name() -> String {
    "Emerging Threats".into()
}
fn default_batch_size() -> usize {
    500
}
fn default_concurrency() -> usize {
    2
}
fn default_signature_type() -> String {
    "auto".into()
}
fn default_superseded() -> String {
    "Expired".into()
}
fn default_attempts() -> u32 {
    5
}
fn yes() -> bool {
    true
}
fn one_s() -> Dur {
    Dur(Duration::from_secs(1))
}
fn three_s() -> Dur {
    Dur(Duration::from_secs(3))
}
fn ten_m() -> Dur {
    Dur(Duration::from_secs(600))
}
fn sixty_s() -> Dur {
    Dur(Duration::from_secs(60))
}

/// Default attribute names (threatq-api.md §2.4); `attributes:` may rename any of them.
pub const DEFAULT_ATTRIBUTES: [&str; 9] = [
    "SID",
    "Revision",
    "GID",
    "Classtype",
    "Category",
    "Ruleset",
    "Engine",
    "Shipped Enabled",
    "Reference",
];

/// Attributes that hold one value per signature: a changed value replaces the old one (§4 #11).
/// ET metadata keys that can repeat (`tag`, `affected_product`, `mitre_*`, …) are not here.
const SINGLE_VALUE: [&str; 16] = [
    "SID",
    "Revision",
    "GID",
    "Classtype",
    "Category",
    "Ruleset",
    "Engine",
    "Shipped Enabled",
    "created_at",
    "updated_at",
    "reviewed_at",
    "signature_severity",
    "confidence",
    "performance_impact",
    "former_category",
    "deprecation_reason",
];

impl ThreatQConfig {
    /// Check values serde cannot: host scheme, one password source, positive sizes.
    pub fn validate(&self) -> anyhow::Result<Url> {
        let url = Url::parse(self.host.trim_end_matches('/')).map_err(|e| {
            usage(format!(
                "sinks.threatq.host {:?} is not a URL ({e}); write e.g. https://threatq.example.org",
                self.host
            ))
        })?;
        match url.scheme() {
            "https" => {}
            "http" if matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) => {}
            _ => {
                return Err(usage(format!(
                    "sinks.threatq.host {:?}: only https:// is allowed (http only for 127.0.0.1 / localhost)",
                    self.host
                )))
            }
        }
        if self.password_file.is_some() == self.password_env.is_some() {
            return Err(usage(
                "sinks.threatq: set exactly one of password_file and password_env",
            ));
        }
        if self.batch_size == 0 || self.concurrency == 0 || self.retry.attempts == 0 {
            return Err(usage(
                "sinks.threatq: batch_size, concurrency and retry.attempts must be at least 1",
            ));
        }
        for k in self.attributes.keys() {
            if !DEFAULT_ATTRIBUTES.contains(&k.as_str()) && !is_metadata_key(k) {
                return Err(usage(format!(
                    "sinks.threatq.attributes: unknown attribute {k:?}; renamable: {} or an ET metadata key",
                    DEFAULT_ATTRIBUTES.join(", ")
                )));
            }
        }
        Ok(url)
    }

    /// Make `password_file` and `ca_bundle` absolute against the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.password_file, &mut self.ca_bundle]
            .into_iter()
            .flatten()
        {
            *p = resolve(base, p);
        }
    }

    fn attr_name<'a>(&'a self, default: &'a str) -> &'a str {
        self.attributes
            .get(default)
            .map(String::as_str)
            .unwrap_or(default)
    }

    fn single_value_names(&self) -> Vec<String> {
        SINGLE_VALUE
            .iter()
            .map(|n| self.attr_name(n).to_ascii_lowercase())
            .collect()
    }
}

fn is_metadata_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

// ---------------------------------------------------------------------------------------------
// Mapping: ExportItem → consume body (threatq-api.md §1.4, §2.4)
// ---------------------------------------------------------------------------------------------

/// The name ET's catalog id has as ThreatQ `Ruleset` attribute.
fn ruleset_label(id: &str) -> &str {
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
fn published_at(item: &ExportItem) -> Option<String> {
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
struct Resolved {
    /// Snort (or the configured type) id.
    default_type: (u64, String),
    /// Suricata type id when `auto` and the instance has it.
    suricata_type: Option<(u64, String)>,
    /// lower-case name → (id, canonical name).
    statuses: HashMap<String, (u64, String)>,
}

impl Resolved {
    fn type_for(&self, item: &ExportItem) -> &(u64, String) {
        match (&self.suricata_type, &item.engine) {
            (Some(t), Some(e)) if e.to_ascii_lowercase().starts_with("suricata") => t,
            _ => &self.default_type,
        }
    }

    fn status(&self, name: &str) -> Option<&(u64, String)> {
        self.statuses.get(&name.to_ascii_lowercase())
    }
}

/// The value ThreatQ stores for a rule (§4 #6).
fn value_of(cfg: &ThreatQConfig, enabled: bool, text: &str) -> String {
    if !enabled && cfg.disabled_value == DisabledValue::Keep {
        format!("#{text}")
    } else {
        text.to_string()
    }
}

fn signature_body(
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

// ---------------------------------------------------------------------------------------------
// Retry policy (one function, table-tested)
// ---------------------------------------------------------------------------------------------

/// What to do with an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// Transient: wait and send again.
    Retry,
    /// Token rejected: log in again once, then send again.
    Reauth,
    /// Will not get better by repeating (validation, permission, not found, too large).
    Fail,
}

/// The retry policy by status code. 429 and 5xx are transient (no limits are documented, §1.7);
/// 408 is a proxy's timeout. Repeating a consume is safe because ThreatQ upserts by value.
pub fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Done,
        401 => Verdict::Reauth,
        408 | 429 | 500 | 502 | 503 | 504 => Verdict::Retry,
        _ => Verdict::Fail,
    }
}

/// Transport errors worth a retry: timeouts, refused or dropped connections, a cut-off answer.
fn transient(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode()
}

fn retry_after(h: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let s = h?.to_str().ok()?.trim();
    // Digits too large for u64 mean "very long" (capped by max_delay), not "no hint".
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Some(s.parse().map(Duration::from_secs).unwrap_or(Duration::MAX));
    }
    let when = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

fn backoff(retry: &RetryConfig, attempt: u32, hint: Option<Duration>) -> Duration {
    let cap = retry.max_delay.get();
    if let Some(h) = hint {
        return h.min(cap);
    }
    let exp = retry
        .base
        .get()
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let jitter = rand::thread_rng().gen_range(0.5..=1.0);
    exp.mul_f64(jitter).min(cap)
}

// ---------------------------------------------------------------------------------------------
// HTTP client with tokens
// ---------------------------------------------------------------------------------------------

struct Tokens {
    access: Secret,
    refresh: Option<Secret>,
    obtained: Instant,
    lifetime: Duration,
    generation: u64,
}

/// Why a call failed.
#[derive(Debug)]
enum CallError {
    /// Credentials refused after one fresh login: nothing else will work either.
    Auth(String),
    /// ThreatQ misbehaves in a way that repeating will not fix this run (no token in a login
    /// answer, 401 right after a fresh login, a redirect, the circuit breaker): stop sending,
    /// keep everything pending. Not a config error: ingest still stores (exit 3).
    Stop(String),
    Failed(String),
}

impl CallError {
    fn message(&self) -> &str {
        match self {
            CallError::Auth(m) | CallError::Stop(m) | CallError::Failed(m) => m,
        }
    }
}

/// Counters of one sink's life, for reports and the benchmark.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub consume_requests: u64,
    pub signatures_sent: u64,
    pub retries: u64,
    pub logins: u64,
    pub refreshes: u64,
    pub attributes_deleted: u64,
}

struct Api {
    http: Client,
    base: Url,
    client_id: String,
    email: String,
    password: Secret,
    lifetime_override: Option<Duration>,
    retry: RetryConfig,
    tokens: Mutex<Option<Tokens>>,
    /// Tokens handed out so far, for redaction.
    known: Mutex<Vec<Secret>>,
    stats: Mutex<Stats>,
    /// Time spent waiting on retries this run, and whether that tripped the circuit breaker.
    waited: Mutex<Duration>,
    tripped: Mutex<Option<String>>,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// The password and every token seen (not the token lock: it is held during logins).
    fn secrets(&self) -> Vec<Secret> {
        let mut v = vec![self.password.clone()];
        if let Ok(k) = self.known.lock() {
            v.extend(k.iter().cloned());
        }
        v
    }

    /// Shorten and redact a response body for a message.
    fn excerpt(&self, body: &str) -> String {
        let s: String = body.chars().take(300).collect();
        let secrets = self.secrets();
        let refs: Vec<&Secret> = secrets.iter().collect();
        redact(s.trim(), &refs)
    }

    /// A transport error in words an operator can act on (refused, timeout, TLS), with its
    /// causes, redacted. reqwest's own text is only "error sending request".
    fn transport_text(&self, e: &reqwest::Error) -> String {
        let mut causes: Vec<String> = Vec::new();
        let mut refused = false;
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cur {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
            }
            let t = c.to_string();
            if !causes.iter().any(|p| p.contains(&t)) {
                causes.push(t);
            }
            cur = c.source();
        }
        let all = causes.join(": ");
        let lower = all.to_ascii_lowercase();
        let kind = if e.is_timeout() {
            "timed out (sinks.threatq.timeout)".to_string()
        } else if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
            // rustls's words when no TLS record comes back at all.
            "TLS error: the server answers in plain http on this https URL (check the scheme and port of sinks.threatq.host)"
                .to_string()
        } else if refused || lower.contains("connection refused") {
            "connection refused (is ThreatQ running on that host and port?)".to_string()
        } else if [
            "certificate",
            "tls",
            "handshake",
            "corrupt message",
            "alert",
        ]
        .iter()
        .any(|k| lower.contains(k))
        {
            // rustls's words: "invalid peer certificate", "received corrupt message" (no TLS on
            // the other side), "received fatal alert".
            "TLS error (for an internal CA or a self-signed ThreatQ set sinks.threatq.ca_bundle)"
                .to_string()
        } else if e.is_connect() {
            "cannot connect".to_string()
        } else {
            "request failed".to_string()
        };
        self.excerpt(&format!("{kind}: {all}"))
    }

    /// Wait `d` before a retry, unless that would take this run's waiting past `max_total_wait`:
    /// then trip the circuit breaker (every later call fails at once).
    fn wait(&self, d: Duration, why: &str) -> Result<(), CallError> {
        self.check_breaker()?;
        let max = self.retry.max_total_wait.get();
        let total = {
            let mut w = self
                .waited
                .lock()
                .map_err(|_| CallError::Failed("wait lock poisoned".into()))?;
            *w += d;
            *w
        };
        if total > max {
            let msg = format!(
                "ThreatQ {} keeps answering {why}: stopped after waiting {} in total this run (sinks.threatq.retry.max_total_wait {}); the rest stays pending",
                self.base,
                humantime::format_duration(Duration::from_secs((total - d).as_secs())),
                humantime::format_duration(max)
            );
            if let Ok(mut t) = self.tripped.lock() {
                t.get_or_insert_with(|| msg.clone());
            }
            return Err(CallError::Stop(msg));
        }
        self.bump(|s| s.retries += 1);
        std::thread::sleep(d);
        Ok(())
    }

    fn reset_breaker(&self) {
        if let Ok(mut w) = self.waited.lock() {
            *w = Duration::ZERO;
        }
        if let Ok(mut t) = self.tripped.lock() {
            *t = None;
        }
    }

    fn check_breaker(&self) -> Result<(), CallError> {
        match self.tripped.lock().ok().and_then(|t| t.clone()) {
            Some(msg) => Err(CallError::Stop(msg)),
            None => Ok(()),
        }
    }

    /// A 3xx from ThreatQ: never followed (a body or header with a secret would go along, maybe
    /// to another host or to plain http); the error names where it pointed, secrets masked.
    fn redirected(&self, what: &str, status: u16, location: Option<&str>) -> CallError {
        let secrets = self.secrets();
        let refs: Vec<&Secret> = secrets.iter().collect();
        let to = location
            .map(|l| redact(l, &refs))
            .unwrap_or_else(|| "(no Location)".into());
        CallError::Stop(format!(
            "{what}: ThreatQ {} answered HTTP {status} redirecting to {to}; etferry never follows a redirect from ThreatQ (credentials or a token would go along): set sinks.threatq.host to the address that answers",
            self.base
        ))
    }

    fn bump(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// Password grant in the SDK form (§1.2): grant type and client id in the query, credentials
    /// in a JSON body.
    fn login(&self, generation: u64) -> Result<Tokens, CallError> {
        let mut url = Url::parse(&self.url("/api/token"))
            .map_err(|e| CallError::Failed(format!("bad ThreatQ URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("grant_type", "password")
            .append_pair("client_id", &self.client_id);
        let body = json!({"email": self.email, "password": self.password.expose()});
        self.bump(|s| s.logins += 1);
        let v = self.token_call(url, None, &body, "log in")?;
        self.tokens_from(&v, generation)
    }

    /// Refresh grant (§1.2): a new access and refresh token.
    fn refresh(&self, t: &Tokens) -> Result<Tokens, CallError> {
        let rt = t
            .refresh
            .as_ref()
            .ok_or_else(|| CallError::Failed("no refresh token".into()))?;
        let mut url = Url::parse(&self.url("/api/token"))
            .map_err(|e| CallError::Failed(format!("bad ThreatQ URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", rt.expose());
        self.bump(|s| s.refreshes += 1);
        let v = self.token_call(url, Some(&t.access), &json!({}), "refresh the token")?;
        self.tokens_from(&v, t.generation + 1)
    }

    fn token_call(
        &self,
        url: Url,
        bearer: Option<&Secret>,
        body: &Value,
        what: &str,
    ) -> Result<Value, CallError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.bump(|s| s.requests += 1);
            let mut rb = self.http.post(url.clone()).json(body);
            if let Some(b) = bearer {
                rb = rb.bearer_auth(b.expose());
            }
            let sent = rb.send().and_then(|r| {
                let status = r.status();
                let hint = retry_after(r.headers().get(reqwest::header::RETRY_AFTER));
                let location = r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                // A timeout or a cut while reading the answer is a transport failure like any
                // other: retried, and reported as what it is (not as "not JSON").
                Ok((status, hint, location, r.text()?))
            });
            let (status, hint, text) = match sent {
                Ok((status, _, location, _)) if status.is_redirection() => {
                    return Err(self.redirected(what, status.as_u16(), location.as_deref()))
                }
                Ok((status, hint, _, text)) => (Some(status), hint, text),
                Err(e) => {
                    let e = e.without_url();
                    if transient(&e) && attempt < self.retry.attempts {
                        self.wait(backoff(&self.retry, attempt, None), "with transport errors")?;
                        continue;
                    }
                    return Err(CallError::Failed(format!(
                        "cannot {what} at ThreatQ {}: {}",
                        self.base,
                        self.transport_text(&e)
                    )));
                }
            };
            let status = status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match classify(status.as_u16()) {
                Verdict::Done => {
                    return serde_json::from_str(&text).map_err(|e| {
                        CallError::Failed(format!("ThreatQ token answer is not JSON: {e}"))
                    })
                }
                Verdict::Retry if attempt < self.retry.attempts => {
                    self.wait(
                        backoff(&self.retry, attempt, hint),
                        &format!("HTTP {}", status.as_u16()),
                    )?;
                }
                Verdict::Reauth | Verdict::Fail
                    if status.as_u16() == 400 || status.as_u16() == 401 =>
                {
                    let advice = if what == "log in" {
                        "login refused: check client_id, e-mail and password".to_string()
                    } else {
                        format!("refused to {what}")
                    };
                    return Err(CallError::Auth(format!(
                        "ThreatQ {}: {advice} (HTTP {} for {}, client_id {}): {}",
                        self.base,
                        status.as_u16(),
                        self.email,
                        self.client_id,
                        self.excerpt(&text)
                    )));
                }
                _ => {
                    return Err(CallError::Failed(format!(
                        "cannot {what} at ThreatQ {}: HTTP {} {}",
                        self.base,
                        status.as_u16(),
                        self.excerpt(&text)
                    )))
                }
            }
        }
    }

    fn tokens_from(&self, v: &Value, generation: u64) -> Result<Tokens, CallError> {
        // The SDK reads the fields at the top level; accept a `data` wrapper too.
        let o = v.get("data").filter(|d| d.is_object()).unwrap_or(v);
        let access = o
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                CallError::Stop(format!(
                    "ThreatQ {} answered the login without an access_token",
                    self.base
                ))
            })?;
        let refresh = o
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(Secret::new);
        if let Ok(mut k) = self.known.lock() {
            k.push(Secret::new(access));
            k.extend(refresh.clone());
        }
        let lifetime = o
            .get("expires_in")
            .and_then(|e| {
                e.as_u64()
                    .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
            })
            .map(Duration::from_secs)
            .or(self.lifetime_override)
            .unwrap_or(Duration::from_secs(30 * 60));
        Ok(Tokens {
            access: Secret::new(access),
            refresh,
            obtained: Instant::now(),
            lifetime,
            generation,
        })
    }

    /// A usable access token; refreshes shortly before expiry (falling back to a fresh login).
    fn bearer(&self) -> Result<(Secret, u64), CallError> {
        let mut g = self
            .tokens
            .lock()
            .map_err(|_| CallError::Failed("token lock poisoned".into()))?;
        let stale = match g.as_ref() {
            None => true,
            Some(t) => {
                let margin = (t.lifetime / 10).min(Duration::from_secs(60));
                t.obtained.elapsed() + margin >= t.lifetime
            }
        };
        if stale {
            let next = match g.as_ref() {
                Some(t) if t.refresh.is_some() => match self.refresh(t) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::info!(
                            "ThreatQ token refresh failed ({}); logging in again",
                            e.message()
                        );
                        self.login(t.generation + 1)?
                    }
                },
                Some(t) => self.login(t.generation + 1)?,
                None => self.login(1)?,
            };
            *g = Some(next);
        }
        let t = g
            .as_ref()
            .ok_or_else(|| CallError::Failed("no ThreatQ token".into()))?;
        Ok((t.access.clone(), t.generation))
    }

    /// After a 401: log in again unless another worker already did.
    fn reauth(&self, failed_generation: u64) -> Result<(), CallError> {
        let mut g = self
            .tokens
            .lock()
            .map_err(|_| CallError::Failed("token lock poisoned".into()))?;
        if g.as_ref().map(|t| t.generation) == Some(failed_generation) {
            *g = Some(self.login(failed_generation + 1)?);
        }
        Ok(())
    }

    /// One API call with retries, Retry-After, and one re-login on 401. Returns the parsed body.
    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CallError> {
        let mut attempt = 0;
        let mut reauthed = false;
        loop {
            attempt += 1;
            self.check_breaker()?;
            let (token, generation) = self.bearer()?;
            self.bump(|s| s.requests += 1);
            let mut rb = self
                .http
                .request(method.clone(), self.url(path))
                .bearer_auth(token.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let what = format!("{method} {path}");
            let resp = match rb.send() {
                Ok(r) => r,
                Err(e) => {
                    let e = e.without_url();
                    if transient(&e) && attempt < self.retry.attempts {
                        tracing::debug!("{what}: {e}; retrying");
                        self.wait(backoff(&self.retry, attempt, None), "with transport errors")?;
                        continue;
                    }
                    return Err(CallError::Failed(format!(
                        "{what} at ThreatQ {}: {} (after {attempt} attempts)",
                        self.base,
                        self.transport_text(&e)
                    )));
                }
            };
            let status = resp.status().as_u16();
            let hint = retry_after(resp.headers().get(reqwest::header::RETRY_AFTER));
            if resp.status().is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok());
                return Err(self.redirected(&what, status, location));
            }
            let text = match resp.text() {
                Ok(t) => t,
                Err(e) => {
                    let e = e.without_url();
                    if attempt < self.retry.attempts {
                        self.wait(backoff(&self.retry, attempt, None), "with transport errors")?;
                        continue;
                    }
                    return Err(CallError::Failed(format!(
                        "{what} at ThreatQ {}: reading the answer: {} (after {attempt} attempts)",
                        self.base,
                        self.transport_text(&e)
                    )));
                }
            };
            match classify(status) {
                Verdict::Done => {
                    if status == 204 || text.trim().is_empty() {
                        return Ok(Value::Null);
                    }
                    let v: Value = match serde_json::from_str(&text) {
                        Ok(v) => v,
                        Err(e) if attempt < self.retry.attempts => {
                            tracing::debug!("{what}: answer is not JSON ({e}); retrying");
                            self.wait(backoff(&self.retry, attempt, None), "with garbled answers")?;
                            continue;
                        }
                        Err(e) => {
                            return Err(CallError::Failed(format!(
                                "{what}: answer is not JSON ({e}): {}",
                                self.excerpt(&text)
                            )))
                        }
                    };
                    // The SDK treats a 2xx answer with an `errors` key as a failure (§1.1).
                    if let Some(errs) = v.get("errors") {
                        return Err(CallError::Failed(format!(
                            "{what}: ThreatQ reported errors: {}",
                            self.excerpt(&errs.to_string())
                        )));
                    }
                    return Ok(v);
                }
                Verdict::Reauth if !reauthed => {
                    tracing::info!("{what}: HTTP 401, logging in again");
                    reauthed = true;
                    attempt -= 1;
                    self.reauth(generation)?;
                }
                Verdict::Reauth => {
                    return Err(CallError::Stop(format!(
                        "{what}: ThreatQ {} still answers 401 after a fresh login; check the API user's permissions",
                        self.base
                    )))
                }
                Verdict::Retry if attempt < self.retry.attempts => {
                    tracing::debug!("{what}: HTTP {status}; retrying");
                    self.wait(backoff(&self.retry, attempt, hint), &format!("HTTP {status}"))?;
                }
                Verdict::Retry => {
                    return Err(CallError::Failed(format!(
                        "{what}: HTTP {status} after {attempt} attempts: {}",
                        self.excerpt(&text)
                    )))
                }
                Verdict::Fail => {
                    let advice = if status == 413 {
                        " (lower sinks.threatq.batch_size)"
                    } else {
                        ""
                    };
                    return Err(CallError::Failed(format!(
                        "{what}: HTTP {status}{advice}: {}",
                        self.excerpt(&text)
                    )));
                }
            }
        }
    }
}

/// `(id, name)` pairs from a `{"data": [{"id", "name"}]}` answer.
fn id_names(v: &Value) -> Vec<(u64, String)> {
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

fn id_of(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Signature statuses from `/api/objects` (§1.3): the object whose name or collection is
/// `signature(s)` and carries a `statuses` list.
fn statuses_from_objects(v: &Value) -> Vec<(u64, String)> {
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

// ---------------------------------------------------------------------------------------------
// The sink
// ---------------------------------------------------------------------------------------------

/// The sink the pipeline uses: connected, with the configured statuses checked. Config errors
/// (exit 2) stop the run; an unreachable ThreatQ does not: the bundle is still stored and its
/// changes stay pending (exit 3), to go out on the next run or with `etferry export threatq`.
pub fn build(
    cfg: &ThreatQConfig,
    policy: &crate::store::ExportPolicy,
) -> anyhow::Result<Box<dyn Sink>> {
    match ThreatQSink::connect(cfg, Path::new(".")) {
        Ok(sink) => {
            sink.require_statuses(&policy.statuses_in_use())?;
            Ok(Box::new(sink))
        }
        Err(e) if crate::exit::exit_for(&e) == crate::exit::Exit::Usage => Err(e),
        Err(e) => {
            tracing::warn!("ThreatQ is not reachable: {e:#}; changes stay pending");
            Ok(Box::new(Unreachable(format!("{e:#}"))))
        }
    }
}

/// Stands in for a ThreatQ that could not be reached at start: every export fails, nothing is
/// confirmed.
struct Unreachable(String);

impl Sink for Unreachable {
    fn name(&self) -> &str {
        "threatq"
    }
    fn export(&mut self, _items: &[ExportItem]) -> anyhow::Result<ExportOutcome> {
        Err(anyhow::anyhow!("ThreatQ not reachable: {}", self.0))
    }
}

/// The ThreatQ sink. Build it with [`ThreatQSink::connect`].
pub struct ThreatQSink {
    cfg: ThreatQConfig,
    api: Api,
    res: Resolved,
    /// Signature types and statuses the instance offers, for messages.
    offered_statuses: Vec<String>,
    /// Things about the instance an operator should know (duplicate type names).
    notes: Vec<String>,
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
fn supersedes(cfg: &ThreatQConfig, it: &ExportItem) -> bool {
    cfg.rev_change == RevChange::NewSignature
        && !it.removed
        && it
            .previous_text
            .as_deref()
            .is_some_and(|prev| prev != it.text)
}

/// A rule ThreatQ had before may carry attribute values that no longer hold (old Revision,
/// `Shipped Enabled: Yes` after ET disabled it).
fn needs_cleanup(cfg: &ThreatQConfig, it: &ExportItem) -> bool {
    cfg.replace_changed_attributes
        && !it.removed
        && (it.previous_rev.is_some() || it.previous_text.is_some())
}

/// One signature in a consume body, and which item it belongs to.
struct Entry {
    item: usize,
    value: String,
    body: Value,
    /// The main signature of the item (not a superseded old revision).
    main: bool,
}

#[derive(Default)]
struct ItemState {
    outstanding: usize,
    error: Option<String>,
    id: Option<u64>,
}

fn fail(state: &mut ItemState, msg: String) {
    if state.error.is_none() {
        state.error = Some(msg);
    }
}

impl ThreatQSink {
    /// Log in and resolve signature type and status ids. Relative paths resolve against
    /// `config_dir`. Bad settings, refused credentials and a missing type are config errors.
    pub fn connect(cfg: &ThreatQConfig, config_dir: &Path) -> anyhow::Result<ThreatQSink> {
        let base = cfg.validate()?;
        let password = match (&cfg.password_file, &cfg.password_env) {
            (Some(f), _) => read_secret_file(&resolve(config_dir, f))
                .map_err(|e| usage(format!("sinks.threatq.password_file: {e:#}")))?,
            (None, Some(v)) => read_secret_env(v)?,
            (None, None) => return Err(usage("sinks.threatq: no password configured")),
        };
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
            let attrs = attributes_for(&self.cfg, it);
            let value = value_of(&self.cfg, it.enabled, &it.text);
            let body = signature_body(&self.cfg, &self.res, it, &value, status, &attrs);
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

    fn pause(&self) {
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
    fn parallel(&self, n: usize, stop: &AtomicBool, work: impl Fn(usize, bool) + Sync) {
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

impl Sink for ThreatQSink {
    fn name(&self) -> &str {
        "threatq"
    }

    fn export(&mut self, items: &[ExportItem]) -> anyhow::Result<ExportOutcome> {
        // Each export gets its own retry budget: `watch` lives for days, and a ThreatQ that
        // throttled one bundle's export may be fine for the next.
        self.api.reset_breaker();
        let mut states: Vec<ItemState> = (0..items.len()).map(|_| ItemState::default()).collect();
        let entries = self.entries(items, &mut states);
        let batches: Vec<&[Entry]> = entries.chunks(self.cfg.batch_size.max(1)).collect();
        let bar = crate::progress::count(entries.len() as u64, "sending to ThreatQ");
        let states = Mutex::new(states);
        let stop = AtomicBool::new(false);
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
        let mut out = ExportOutcome::default();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> ExportItem {
        ExportItem {
            source: "et-open-suricata-5.0".into(),
            ruleset: "et-open".into(),
            engine: Some("suricata-5.0".into()),
            gid: 1,
            sid: 2000001,
            rev: 2,
            msg: "ET INFO Test".into(),
            text: "alert ip any any -> any any (msg:\"ET INFO Test\"; sid:2000001; rev:2;)".into(),
            enabled: true,
            removed: false,
            status: "Active".into(),
            classtype: None,
            file: "rules/emerging-info.rules".into(),
            references: vec![],
            metadata: vec![],
            previous_rev: None,
            previous_text: None,
        }
    }

    #[test]
    fn retry_policy_table() {
        let table: Vec<(u16, Verdict)> = [
            200, 201, 204, 400, 401, 403, 404, 408, 413, 422, 429, 500, 501, 502, 503, 504,
        ]
        .iter()
        .map(|&c| (c, classify(c)))
        .collect();
        use Verdict::*;
        assert_eq!(
            table,
            vec![
                (200, Done),
                (201, Done),
                (204, Done),
                (400, Fail),
                (401, Reauth),
                (403, Fail),
                (404, Fail),
                (408, Retry),
                (413, Fail),
                (422, Fail),
                (429, Retry),
                (500, Retry),
                (501, Fail),
                (502, Retry),
                (503, Retry),
                (504, Retry),
            ]
        );
    }

    #[test]
    fn retry_after_caps_at_max_delay() {
        let r = RetryConfig {
            attempts: 3,
            base: Dur(Duration::from_millis(10)),
            max_delay: Dur(Duration::from_secs(2)),
            ..RetryConfig::default()
        };
        assert_eq!(
            backoff(&r, 1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            backoff(&r, 1, Some(Duration::from_secs(600))),
            Duration::from_secs(2)
        );
        let d = backoff(&r, 3, None);
        assert!(
            d >= Duration::from_millis(20) && d <= Duration::from_millis(40),
            "{d:?}"
        );
    }

    #[test]
    fn published_at_prefers_updated_at() {
        let mut it = item();
        it.metadata = vec![
            ("created_at".into(), "2010_07_30".into()),
            ("updated_at".into(), "2024_04_19".into()),
        ];
        assert_eq!(published_at(&it).as_deref(), Some("2024-04-19 00:00:00"));
        it.metadata.truncate(1);
        assert_eq!(published_at(&it).as_deref(), Some("2010-07-30 00:00:00"));
        it.metadata = vec![("updated_at".into(), "soon".into())];
        assert_eq!(published_at(&it), None);
    }

    #[test]
    fn http_is_refused_except_for_localhost() {
        let base: ThreatQConfig = serde_yaml::from_str(
            "host: http://threatq.example.org\nclient_id: x\nemail: a@b\npassword_env: P\n",
        )
        .unwrap();
        let e = base.validate().unwrap_err().to_string();
        assert!(e.contains("only https://"), "{e}");
        let mut ok = base.clone();
        ok.host = "http://127.0.0.1:8080".into();
        assert!(ok.validate().is_ok());
        ok.host = "https://threatq.example.org".into();
        assert!(ok.validate().is_ok());
    }
}
