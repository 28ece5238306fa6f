//! `etferry.yaml`: the one config of a connected ThreatQ host. Each key keeps the meaning and the
//! validation it has in fetch.yaml or watch.yaml: the file is turned into the fetch part
//! ([`FetchConfig`]) and the ingest part ([`WatchConfig`]) and each is checked by its own code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{base_dir, load_yaml, resolve, Dur};
use crate::fetch::config::{FetchConfig, FetchFile, HttpConfig, SourceFile};
use crate::ingest::config::{LimitsConfig, Sanity, SinksConfig, Status, WatchConfig, RULESETS};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncFile {
    /// Fetch state, pending downloads and the run lock.
    pub state: PathBuf,
    pub store: PathBuf,
    #[serde(default = "fifteen_minutes")]
    pub min_interval: Dur,
    #[serde(default)]
    pub http: HttpConfig,
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
    #[serde(default)]
    pub limits: LimitsConfig,
    pub sources: Vec<SourceFile>,
    #[serde(default)]
    pub sinks: SinksConfig,
    /// Also publish signed bundles of the same downloads, for air-gapped sites.
    #[serde(default)]
    pub publish: Option<PublishFile>,
}

/// `publish:`: the keys of fetch.yaml that concern bundles.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishFile {
    pub spool: PathBuf,
    pub signing_key: PathBuf,
    #[serde(default)]
    pub signing_key_password_file: Option<PathBuf>,
    #[serde(default)]
    pub signing_key_password_env: Option<String>,
    #[serde(default = "fourteen_days")]
    pub bundle_lifetime: Dur,
    #[serde(default = "thirty")]
    pub keep_bundles: usize,
    /// A signed heartbeat when upstream is unchanged, so the far side can tell "no news" from
    /// "no courier".
    #[serde(default = "yes")]
    pub heartbeat: bool,
}

fn fifteen_minutes() -> Dur {
    Dur(Duration::from_secs(15 * 60))
}
fn fourteen_days() -> Dur {
    Dur(Duration::from_secs(14 * 86400))
}
fn thirty() -> usize {
    30
}
fn yes() -> bool {
    true
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

/// The validated configuration: the fetch part, the ingest part, and whether bundles are
/// published.
#[derive(Debug)]
pub struct SyncConfig {
    pub path: PathBuf,
    pub fetch: FetchConfig,
    pub watch: WatchConfig,
    pub publish: bool,
    /// Pending downloads (`<state>/work/<source>-<sequence>/`).
    pub work: PathBuf,
}

/// The config file's name; `-c DIR` finds it in DIR.
pub const FILE_NAME: &str = "etferry.yaml";

impl SyncConfig {
    /// Load and validate `path`. Every problem is a usage error (exit 2) naming the file and key.
    pub fn load(path: &Path) -> anyhow::Result<SyncConfig> {
        crate::config::warn_if_world_readable(path);
        let f: SyncFile = load_yaml(path)?;
        Self::from_file(path, f)
    }

    fn from_file(path: &Path, f: SyncFile) -> anyhow::Result<SyncConfig> {
        let state = f.state.clone();
        let publish = f.publish.is_some();
        // Without `publish:` nothing is signed; the spool and key paths are never used.
        let (spool, signing_key, pw_file, pw_env, lifetime, keep, heartbeat) = match f.publish {
            Some(p) => (
                p.spool,
                p.signing_key,
                p.signing_key_password_file,
                p.signing_key_password_env,
                p.bundle_lifetime,
                p.keep_bundles,
                p.heartbeat,
            ),
            None => (
                state.join("outbox"),
                state.join("no-signing-key"),
                None,
                None,
                fourteen_days(),
                thirty(),
                false,
            ),
        };
        let fetch = FetchConfig::from_file(
            path,
            FetchFile {
                spool,
                state: state.clone(),
                signing_key,
                signing_key_password_file: pw_file,
                signing_key_password_env: pw_env,
                bundle_lifetime: lifetime,
                keep_bundles: keep,
                min_interval: f.min_interval,
                heartbeat,
                http: f.http,
                sources: f.sources,
            },
        )?;
        // The ingest part works in the state dir: `work/` holds pending and held downloads.
        let watch = WatchConfig {
            inbox: state.join("inbox"),
            work: state.join("work"),
            done: state.join("done"),
            failed: state.join("failed"),
            store: f.store,
            trusted_keys: Vec::new(),
            require_signature: false,
            rulesets: RULESETS.iter().map(|s| s.to_string()).collect(),
            include_non_standard: f.include_non_standard,
            standard_status: f.standard_status,
            non_standard_status: f.non_standard_status,
            removed_status: f.removed_status,
            sanity: f.sanity,
            rescan_interval: Dur(Duration::from_secs(30)),
            debounce: Dur(Duration::from_secs(5)),
            limits: f.limits,
            sinks: f.sinks,
            accept_unsigned_archives: false,
            archive_sources: Vec::new(),
            // Sequences here are this host's own: no courier to skip any.
            max_sequence_jump: 10_000,
        }
        .resolve_and_check(path)?;
        Ok(SyncConfig {
            path: path.to_path_buf(),
            work: resolve(&base_dir(path), &state.join("work")),
            fetch,
            watch,
            publish,
        })
    }
}

/// Whether `path` is an etferry.yaml: by name, else by its keys (only etferry.yaml has both
/// `sources` and `store`).
pub fn is_sync_config(path: &Path) -> bool {
    if path.file_name().and_then(|n| n.to_str()) == Some(FILE_NAME) {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    serde_yaml::from_str::<serde_yaml::Value>(&text)
        .map(|v| v.get("sources").is_some() && v.get("store").is_some())
        .unwrap_or(false)
}

/// The ingest-side config the store commands (`status`, `report`, `rules`, `export`) use: a
/// watch.yaml, or the ingest part of an etferry.yaml (`-c etferry.yaml`, or `-c DIR` holding an
/// etferry.yaml and no watch.yaml). Returns the file it read, too.
pub fn store_config(arg: Option<&Path>) -> anyhow::Result<(PathBuf, WatchConfig)> {
    let sync_path = match arg {
        Some(p) if p.is_dir() => {
            let (w, s) = (p.join("watch.yaml"), p.join(FILE_NAME));
            (!w.exists() && s.exists()).then_some(s)
        }
        Some(p) => is_sync_config(p).then(|| p.to_path_buf()),
        None => match crate::config::locate(None, "watch.yaml") {
            Ok(_) => None,
            Err(_) => crate::config::locate(None, FILE_NAME).ok(),
        },
    };
    match sync_path {
        Some(p) => {
            let watch = SyncConfig::load(&p)?.watch;
            Ok((p, watch))
        }
        None => {
            let p = crate::config::locate(arg, "watch.yaml")?;
            let watch = WatchConfig::load(&p)?;
            Ok((p, watch))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<SyncConfig> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        std::fs::write(&p, text).unwrap();
        SyncConfig::load(&p)
    }

    #[test]
    fn one_file_gives_both_parts_with_their_defaults() {
        let c = load(
            "state: st\nstore: st/etferry.db\nsources:\n  - {ruleset: et-open, engine: suricata-7.0.3}\n",
        )
        .unwrap();
        assert_eq!(c.fetch.sources[0].name, "et-open-suricata-7.0.3");
        assert_eq!(c.fetch.min_interval, Duration::from_secs(900));
        assert!(!c.publish && !c.fetch.heartbeat);
        assert!(c.watch.store.ends_with("st/etferry.db"));
        assert!(c.watch.work.ends_with("st/work") && c.work == c.watch.work);
        assert_eq!(c.watch.standard_status.0, "Active");
        assert_eq!(c.watch.non_standard_status.0, "Inactive");
        assert_eq!(c.watch.removed_status.0, "Expired");
        assert_eq!(c.watch.sanity.max_drop_percent, 20.0);
        assert!(c.watch.sinks.threatq.is_none());
    }

    #[test]
    fn keys_keep_the_validation_of_fetch_and_watch_yaml() {
        let head = "state: s\nstore: s/db\n";
        let src = "sources:\n  - {ruleset: et-open, engine: suricata-5.0}\n";
        let cases = [
            (
                format!("{head}sources:\n  - {{ruleset: et-closed}}\n"),
                "sources[0].ruleset",
            ),
            (
                format!("{head}sources:\n  - {{ruleset: et-open}}\n"),
                "sources[0].engine",
            ),
            (
                format!("{head}standard_status: Bad\n{src}"),
                "standard_status",
            ),
            (
                format!("{head}sanity: {{max_drop_percent: 120}}\n{src}"),
                "max_drop_percent",
            ),
            (format!("{head}spool: x\n{src}"), "spool"),
            (
                format!("{head}http: {{retries: many}}\n{src}"),
                "http.retries",
            ),
            (format!("{head}publish: {{spool: o}}\n{src}"), "signing_key"),
            (format!("{head}sources: []\n"), "sources"),
        ];
        for (text, key) in cases {
            let err = load(&text).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(key), "{key}: {msg}");
            assert!(msg.contains(FILE_NAME), "{key}: {msg}");
            assert_eq!(
                crate::exit::exit_for(&err),
                crate::exit::Exit::Usage,
                "{msg}"
            );
        }
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../config/etferry.yaml");
        let f: SyncFile =
            crate::config::parse_yaml(Path::new("config/etferry.yaml"), text).unwrap();
        assert_eq!(f.sources.len(), 2);
        assert!(f.sinks.threatq.is_some() && f.publish.is_none());
    }
}
