//! `sinks.threatq` in watch.yaml: the keys, their defaults (the open questions of
//! threatq-api.md §4) and their validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::config::{read_secret_env, read_secret_file, resolve, Dur};
use crate::exit::usage;
use crate::secret::Secret;

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
    /// Block-list IPs and networks as ThreatQ indicators (`POST /api/indicators/consume`), and
    /// each block rule's signature related to the indicators its header lists.
    #[serde(default = "yes")]
    pub indicators: bool,
    /// The status indicators get while a list names them (`removed_status` once none does).
    #[serde(default = "default_indicator_status")]
    pub indicator_status: String,
    /// Related objects from ET metadata (threatq-api.md §2.4; off unless asked, §4 #12).
    #[serde(default)]
    pub relations: Relations,
    /// The connector's row in ThreatQ (Settings → Incoming Feeds): its toggle and run reports.
    #[serde(default)]
    pub connector: Option<ConnectorConfig>,
}

/// `sinks.threatq.relations`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relations {
    /// `malware_family` → a Malware object of that name (created when missing).
    #[serde(default)]
    pub malware: bool,
    /// `mitre_technique_id` → an Attack Pattern, only when ThreatQ already has it.
    #[serde(default)]
    pub attack_patterns: bool,
}

/// `sinks.threatq.connector`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// The row's name, looked up with `GET /api/connectors?name=…`.
    pub name: String,
    /// Send nothing while the row's `is_active` is off.
    #[serde(default = "yes")]
    pub honor_toggle: bool,
    /// After a successful export, write `last_import_at` / `last_import_count` to the row.
    #[serde(default = "yes")]
    pub report_runs: bool,
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

pub(super) fn default_source_name() -> String {
    "Emerging Threats".into()
}
pub(super) fn default_batch_size() -> usize {
    500
}
pub(super) fn default_concurrency() -> usize {
    2
}
pub(super) fn default_signature_type() -> String {
    "auto".into()
}
pub(super) fn default_superseded() -> String {
    "Expired".into()
}
pub(super) fn default_indicator_status() -> String {
    "Active".into()
}
pub(super) fn default_attempts() -> u32 {
    5
}
pub(super) fn yes() -> bool {
    true
}
pub(super) fn one_s() -> Dur {
    Dur(Duration::from_secs(1))
}
pub(super) fn three_s() -> Dur {
    Dur(Duration::from_secs(3))
}
pub(super) fn ten_m() -> Dur {
    Dur(Duration::from_secs(600))
}
pub(super) fn sixty_s() -> Dur {
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
pub(super) const SINGLE_VALUE: [&str; 16] = [
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
        if self
            .connector
            .as_ref()
            .is_some_and(|c| c.name.trim().is_empty())
        {
            return Err(usage(
                "sinks.threatq.connector.name is empty; write the name of the row in Settings → Incoming Feeds",
            ));
        }
        if self.indicator_status.trim().is_empty() {
            return Err(usage("sinks.threatq.indicator_status is empty"));
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

    /// The password from `password_file` (relative to `config_dir` unless `resolve_paths` made
    /// it absolute) or `password_env`; `connect` and `config check` read it the same way.
    pub fn read_password(&self, config_dir: &Path) -> anyhow::Result<Secret> {
        match (&self.password_file, &self.password_env) {
            (Some(f), _) => read_secret_file(&resolve(config_dir, f))
                .map_err(|e| usage(format!("sinks.threatq.password_file: {e:#}"))),
            (None, Some(v)) => read_secret_env(v),
            (None, None) => Err(usage("sinks.threatq: no password configured")),
        }
    }

    pub(super) fn attr_name<'a>(&'a self, default: &'a str) -> &'a str {
        self.attributes
            .get(default)
            .map(String::as_str)
            .unwrap_or(default)
    }

    pub(super) fn single_value_names(&self) -> Vec<String> {
        SINGLE_VALUE
            .iter()
            .map(|n| self.attr_name(n).to_ascii_lowercase())
            .collect()
    }
}

pub(super) fn is_metadata_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
