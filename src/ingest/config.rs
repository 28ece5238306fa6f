//! `watch.yaml`: the air-gapped side's configuration. Unknown keys and bad values are errors that
//! name the file and the key; paths are relative to the config file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{base_dir, load_role, resolve, ByteSize, Dur};
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
    /// A signed bundle whose sequence is more than this above the source's last one is held
    /// until `ingest --approve` (a DMZ fetching every 15 minutes with heartbeats reaches 10000
    /// only after about 100 days without a carried bundle).
    #[serde(default = "max_sequence_jump")]
    pub max_sequence_jump: u64,
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
                "unknown status {:?}; allowed: {}",
                crate::config::clip(&s),
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
    #[serde(default)]
    pub rules_file: Option<crate::sinks::rules_file::RulesFileConfig>,
    #[serde(default)]
    pub stix: Option<crate::sinks::stix::StixConfig>,
}

impl SinksConfig {
    /// Names of the configured sinks (their export state keys in the store).
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.threatq.is_some() {
            v.push("threatq".to_string());
        }
        if self.rules_file.is_some() {
            v.push("rules_file".to_string());
        }
        if self.stix.is_some() {
            v.push("stix".to_string());
        }
        v
    }

    /// Resolve the sinks' paths against the config file's directory (`base`), give the
    /// whole-store sinks the store path, and check what can be checked before a run (policy
    /// files). Every loader of a config holding `sinks:` calls this once.
    pub fn prepare(&mut self, file: &Path, base: &Path, store: &Path) -> anyhow::Result<()> {
        if let Some(tq) = &mut self.threatq {
            tq.resolve_paths(base);
        }
        if let Some(rf) = &mut self.rules_file {
            rf.prepare(file, base, store)?;
        }
        if let Some(sx) = &mut self.stix {
            sx.prepare(base, store);
        }
        Ok(())
    }

    /// Construct the configured sinks. The ThreatQ helper builds its sink here from its typed
    /// config; with `sinks: {}` there are none and the export stage is a no-op.
    pub fn build(&self, policy: &ExportPolicy) -> anyhow::Result<Vec<Box<dyn crate::sinks::Sink>>> {
        let mut v: Vec<Box<dyn crate::sinks::Sink>> = Vec::new();
        if let Some(tq) = &self.threatq {
            v.push(crate::sinks::threatq::build(tq, policy)?);
        }
        if let Some(rf) = &self.rules_file {
            v.push(Box::new(crate::sinks::rules_file::RulesFileSink::new(rf)?));
        }
        if let Some(sx) = &self.stix {
            v.push(Box::new(crate::sinks::stix::StixSink::new(sx, policy)?));
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
fn max_sequence_jump() -> u64 {
    10_000
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
        let c: WatchConfig = load_role(path, "watch.yaml")?;
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
        let store = c.store.clone();
        c.sinks.prepare(path, &base, &store)?;
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
        c.check_ranges(path)?;
        Ok(self)
    }

    /// Values that parse but make no sense (no members allowed, a debounce of years) are config
    /// errors that give the allowed range.
    fn check_ranges(&self, path: &Path) -> anyhow::Result<()> {
        use crate::config::check_range;
        let l = &self.limits;
        check_range(path, "limits.max_members", l.max_members, 1, 10_000_000)?;
        let size = |k: &str, v: ByteSize| -> anyhow::Result<()> {
            if v.0 == 0 || v.0 > 64 << 30 {
                return Err(usage(format!(
                    "config {}, key `{k}`: {} bytes is not between 1 byte and 64 GiB",
                    path.display(),
                    v.0
                )));
            }
            Ok(())
        };
        size("limits.max_member_size", l.max_member_size)?;
        size("limits.max_total_size", l.max_total_size)?;
        let dur = |k: &str, v: Dur, max: std::time::Duration, max_text: &str| {
            if v.get() > max {
                return Err(usage(format!(
                    "config {}, key `{k}`: {v} is not between 0s and {max_text}",
                    path.display()
                )));
            }
            Ok(())
        };
        dur(
            "debounce",
            self.debounce,
            std::time::Duration::from_secs(3600),
            "1h",
        )?;
        dur(
            "rescan_interval",
            self.rescan_interval,
            std::time::Duration::from_secs(86_400),
            "1day",
        )?;
        check_range(
            path,
            "max_sequence_jump",
            self.max_sequence_jump,
            1,
            1_000_000_000_000,
        )
    }

    /// Load every trusted key (`ingest`, `watch` and `config check` use this one loader, so a key
    /// that stops the service also fails the check).
    pub fn load_trusted_keys(&self) -> anyhow::Result<Vec<crate::bundle::PublicKey>> {
        self.trusted_keys
            .iter()
            .map(|k| {
                crate::bundle::PublicKey::load(k).map_err(|e| {
                    usage(format!(
                        "key `trusted_keys`: cannot load trusted key {}: {e:#}",
                        k.display()
                    ))
                })
            })
            .collect()
    }

    /// Everything on disk the config points at that a run needs before its first bundle: the
    /// trusted keys and the sinks' secret files. `config check` and `ingest` call this, so a
    /// config that passes the check does not stop the service on a file.
    pub fn check_files(&self) -> anyhow::Result<()> {
        self.load_trusted_keys()?;
        if let Some(tq) = &self.sinks.threatq {
            tq.validate()?;
            tq.read_password(Path::new("."))?;
        }
        Ok(())
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

    /// Which status block-list indicators get (`sinks.threatq.indicator_status`), and
    /// `removed_status` once an IP left every list.
    pub fn indicator_policy(&self) -> crate::store::IndicatorPolicy {
        crate::store::IndicatorPolicy {
            status: self
                .sinks
                .threatq
                .as_ref()
                .map(|t| t.indicator_status.clone())
                .unwrap_or_else(|| "Active".into()),
            removed_status: self.removed_status.0.clone(),
            include_non_standard: self.include_non_standard,
        }
    }
}
