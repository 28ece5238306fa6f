//! `watch.yaml`: the air-gapped side's configuration. Unknown keys and bad values are errors that
//! name the file and the key; paths are relative to the config file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{base_dir, load_yaml, resolve, ByteSize, Dur};
use crate::exit::usage;
use crate::store::ExportPolicy;

/// Status names ThreatQ accepts for signatures.
pub const STATUSES: [&str; 6] = [
    "Active",
    "Expired",
    "Inactive",
    "Non-Malicious",
    "Review",
    "Whitelisted",
];

/// Catalog ids a bundle may carry.
pub const RULESETS: [&str; 5] = [
    "et-open",
    "et-open-nogpl",
    "et-pro",
    "et-blockrules",
    "custom",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    pub inbox: PathBuf,
    pub work: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
    pub store: PathBuf,
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    #[serde(default = "yes")]
    pub require_signature: bool,
    #[serde(default = "all_rulesets")]
    pub rulesets: Vec<String>,
    #[serde(default)]
    pub include_non_standard: bool,
    #[serde(default = "active")]
    pub standard_status: Status,
    #[serde(default = "inactive")]
    pub non_standard_status: Status,
    #[serde(default = "expired")]
    pub removed_status: Status,
    #[serde(default)]
    pub sanity: Sanity,
    #[serde(default = "thirty_s")]
    pub rescan_interval: Dur,
    #[serde(default = "five_s")]
    pub debounce: Dur,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub sinks: SinksConfig,
    /// Take bare `.tar.gz` / `.tgz` / `.zip` / `.rules` files dropped in the inbox (no signature).
    #[serde(default)]
    pub accept_unsigned_archives: bool,
    /// Maps dropped file names to sources (first match wins).
    #[serde(default)]
    pub archive_sources: Vec<crate::bare::ArchiveSource>,
}

/// One of the six ThreatQ status names, checked when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status(pub String);

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if STATUSES.contains(&s.as_str()) {
            Ok(Status(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "unknown status {s:?}; allowed: {}",
                STATUSES.join(", ")
            )))
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sanity {
    #[serde(default = "twenty")]
    pub max_drop_percent: f64,
}

impl Default for Sanity {
    fn default() -> Self {
        Sanity {
            max_drop_percent: 20.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "max_members")]
    pub max_members: usize,
    #[serde(default = "max_member_size")]
    pub max_member_size: ByteSize,
    #[serde(default = "max_total_size")]
    pub max_total_size: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_members: max_members(),
            max_member_size: max_member_size(),
            max_total_size: max_total_size(),
        }
    }
}

/// Configured sinks. Each sink's helper replaces its placeholder with a typed config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    #[serde(default)]
    pub threatq: Option<crate::sinks::threatq::ThreatQConfig>,
}

impl SinksConfig {
    /// Names of the configured sinks (their export state keys in the store).
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.threatq.is_some() {
            v.push("threatq".to_string());
        }
        v
    }

    /// Construct the configured sinks. The ThreatQ helper builds its sink here from its typed
    /// config; with `sinks: {}` there are none and the export stage is a no-op.
    pub fn build(&self, policy: &ExportPolicy) -> anyhow::Result<Vec<Box<dyn crate::sinks::Sink>>> {
        let mut v: Vec<Box<dyn crate::sinks::Sink>> = Vec::new();
        if let Some(tq) = &self.threatq {
            v.push(crate::sinks::threatq::build(tq, policy)?);
        }
        Ok(v)
    }
}

fn yes() -> bool {
    true
}
fn all_rulesets() -> Vec<String> {
    RULESETS.iter().map(|s| s.to_string()).collect()
}
fn active() -> Status {
    Status("Active".into())
}
fn inactive() -> Status {
    Status("Inactive".into())
}
fn expired() -> Status {
    Status("Expired".into())
}
fn twenty() -> f64 {
    20.0
}
fn thirty_s() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn five_s() -> Dur {
    Dur(std::time::Duration::from_secs(5))
}
fn max_members() -> usize {
    10_000
}
fn max_member_size() -> ByteSize {
    ByteSize(64 << 20)
}
fn max_total_size() -> ByteSize {
    ByteSize(512 << 20)
}

impl WatchConfig {
    /// Read `path`, check the values, and resolve paths against the config file's directory.
    pub fn load(path: &Path) -> anyhow::Result<WatchConfig> {
        let c: WatchConfig = load_yaml(path)?;
        c.resolve_and_check(path)
    }

    /// Resolve paths against `path`'s directory and check the values (also for the watch part
    /// that `sync` builds from etferry.yaml).
    pub(crate) fn resolve_and_check(mut self, path: &Path) -> anyhow::Result<WatchConfig> {
        let c = &mut self;
        let base = base_dir(path);
        for p in [
            &mut c.inbox,
            &mut c.work,
            &mut c.done,
            &mut c.failed,
            &mut c.store,
        ] {
            *p = resolve(&base, p);
        }
        for k in &mut c.trusted_keys {
            *k = resolve(&base, k);
        }
        if let Some(tq) = &mut c.sinks.threatq {
            tq.resolve_paths(&base);
        }
        let file = path.display();
        for r in &c.rulesets {
            if !RULESETS.contains(&r.as_str()) {
                return Err(usage(format!(
                    "config {file}, key `rulesets`: unknown ruleset {r:?}; allowed: {}",
                    RULESETS.join(", ")
                )));
            }
        }
        if !(0.0..=100.0).contains(&c.sanity.max_drop_percent) {
            return Err(usage(format!(
                "config {file}, key `sanity.max_drop_percent`: {} is not between 0 and 100",
                c.sanity.max_drop_percent
            )));
        }
        if c.require_signature && c.trusted_keys.is_empty() {
            return Err(usage(format!(
                "config {file}, key `trusted_keys`: require_signature is true but no trusted key is listed"
            )));
        }
        crate::bare::validate(&c.archive_sources)
            .map_err(|e| usage(format!("config {file}, key {e}")))?;
        if c.rescan_interval.get().is_zero() {
            return Err(usage(format!(
                "config {file}, key `rescan_interval`: must be more than 0s"
            )));
        }
        Ok(self)
    }

    /// The archive limits for the parser's archive reader.
    pub fn archive_limits(&self) -> super::payload::Limits {
        super::payload::Limits {
            max_members: self.limits.max_members,
            max_member_size: self.limits.max_member_size.0,
            max_total_size: self.limits.max_total_size.0,
        }
    }

    /// What sinks receive and with which status names.
    pub fn export_policy(&self) -> ExportPolicy {
        ExportPolicy {
            include_non_standard: self.include_non_standard,
            standard_status: self.standard_status.0.clone(),
            non_standard_status: self.non_standard_status.0.clone(),
            removed_status: self.removed_status.0.clone(),
        }
    }
}
