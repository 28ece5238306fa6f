//! The rules-file sink: one merged `.rules` file for the site's own Suricata/Snort sensors,
//! tuned with suricata-update's policy files, plus `sid-msg.map` and `classification.config`.
//!
//! It is written from the whole store (every accepted source's stored payload), never from
//! deltas, and only when its inputs changed: the payloads' sha256, the policy files, and the
//! sink's own settings are hashed into a fingerprint kept beside the store. Each file is written
//! to a temp file, fsynced and renamed, so a sensor never reads half a file; a failing
//! `test_command` keeps the previous file.
//!
//! `parse` (suricata-update's rule reader), `policy` (matchers, disable/enable/drop/modify),
//! `flowbits` and `writer` (merge and format) do no I/O; this file reads the store and writes.

pub mod flowbits;
pub mod parse;
pub mod policy;
pub mod pyfmt;
pub mod writer;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::sinks::{ExportItem, ExportOutcome, Sink};
use crate::store::Store;
use policy::PolicyFiles;
use writer::{Built, Input};

/// `sinks.rules_file` in watch.yaml / etferry.yaml.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RulesFileConfig {
    /// The merged rules file.
    pub path: PathBuf,
    /// Catalog ids whose sources go in; all accepted ones when absent.
    #[serde(default)]
    pub rulesets: Option<Vec<String>>,
    #[serde(default)]
    pub disable_conf: Option<PathBuf>,
    #[serde(default)]
    pub enable_conf: Option<PathBuf>,
    #[serde(default)]
    pub drop_conf: Option<PathBuf>,
    #[serde(default)]
    pub modify_conf: Option<PathBuf>,
    #[serde(default)]
    pub sid_msg_map: Option<PathBuf>,
    #[serde(default)]
    pub classification: Option<PathBuf>,
    /// Run on the new file before it replaces the old one; `{path}` is the new file.
    #[serde(default)]
    pub test_command: Option<String>,
    /// Run after a successful write.
    #[serde(default)]
    pub reload_command: Option<String>,
    /// The store the file is built from; set by [`RulesFileConfig::prepare`].
    #[serde(skip)]
    pub store: PathBuf,
}

impl RulesFileConfig {
    /// Resolve paths against the config file's directory, remember the store, and read the
    /// policy files once so that a bad line is a config error (exit 2) naming file and line.
    pub fn prepare(&mut self, file: &Path, base: &Path, store: &Path) -> anyhow::Result<()> {
        for p in [&mut self.path]
            .into_iter()
            .chain(self.disable_conf.iter_mut())
            .chain(self.enable_conf.iter_mut())
            .chain(self.drop_conf.iter_mut())
            .chain(self.modify_conf.iter_mut())
            .chain(self.sid_msg_map.iter_mut())
            .chain(self.classification.iter_mut())
        {
            *p = crate::config::resolve(base, p);
        }
        self.store = store.to_path_buf();
        for r in self.rulesets.iter().flatten() {
            if !crate::ingest::config::RULESETS.contains(&r.as_str()) {
                return Err(crate::exit::usage(format!(
                    "config {}, key `sinks.rules_file.rulesets`: unknown ruleset {r:?}; allowed: {}",
                    file.display(),
                    crate::ingest::config::RULESETS.join(", ")
                )));
            }
        }
        self.policy_files().load().map(|_| ())
    }

    pub fn policy_files(&self) -> PolicyFiles {
        PolicyFiles {
            disable: self.disable_conf.clone(),
            enable: self.enable_conf.clone(),
            drop: self.drop_conf.clone(),
            modify: self.modify_conf.clone(),
        }
    }
}

/// Every file of the stored payloads of the selected rulesets' sources, with a fingerprint of
/// what they are (source names and payload sha256s).
pub fn store_inputs(
    store: &Store,
    rulesets: Option<&[String]>,
) -> anyhow::Result<(Vec<Input>, Vec<String>)> {
    let mut inputs = Vec::new();
    let mut ids = Vec::new();
    let limits = crate::archive::Limits::default();
    for src in store.sources()? {
        if rulesets.is_some_and(|r| !r.contains(&src.ruleset)) {
            continue;
        }
        let mut st = store.conn().prepare_cached(
            "SELECT name, sha256, data FROM payload_files WHERE source = ?1 ORDER BY seq",
        )?;
        let rows: Vec<(String, String, Vec<u8>)> = st
            .query_map([&src.name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (name, sha, data) in rows {
            ids.push(format!("{} {name} {sha}", src.name));
            let lower = name.to_ascii_lowercase();
            if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") || lower.ends_with(".zip") {
                crate::archive::for_each_member(&name, &data, &limits, &mut |m| {
                    inputs.push(Input {
                        source: src.name.clone(),
                        path: m.path,
                        data: m.data,
                    })
                })
                .with_context(|| format!("stored payload {name} of source {}", src.name))?;
            } else {
                inputs.push(Input {
                    source: src.name.clone(),
                    path: name,
                    data,
                });
            }
        }
    }
    Ok((inputs, ids))
}

/// The sink. Items it is handed are confirmed once the file holds the whole store.
pub struct RulesFileSink {
    cfg: RulesFileConfig,
}

/// What one run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    /// False when nothing changed since the last write.
    pub written: bool,
    pub counts: writer::Counts,
}

impl RulesFileSink {
    pub fn new(cfg: &RulesFileConfig) -> anyhow::Result<RulesFileSink> {
        if cfg.store.as_os_str().is_empty() {
            anyhow::bail!("sinks.rules_file: the config was not prepared (no store path)");
        }
        Ok(RulesFileSink { cfg: cfg.clone() })
    }

    /// The fingerprint file: beside the store, so the sensor's rules directory holds only
    /// what the sensor reads.
    fn state_path(&self) -> PathBuf {
        let mut s = self.cfg.store.as_os_str().to_owned();
        s.push(".rules_file.sha256");
        PathBuf::from(s)
    }

    /// Build the outputs from the store, with the fingerprint of their inputs.
    pub fn build(&self) -> anyhow::Result<(Built, String)> {
        let store = Store::open(&self.cfg.store)?;
        let (inputs, ids) = store_inputs(&store, self.cfg.rulesets.as_deref())?;
        drop(store);
        let files = self.cfg.policy_files();
        let policy = files.load()?;
        let mut h = Sha256::new();
        for id in &ids {
            h.update(id.as_bytes());
            h.update(b"\n");
        }
        for p in files.paths() {
            h.update(p.to_string_lossy().as_bytes());
            h.update(std::fs::read(p).unwrap_or_default());
        }
        h.update(format!("{:?}", self.cfg).as_bytes());
        let built = writer::build(inputs, &policy);
        for e in built.skipped.iter().take(5) {
            tracing::warn!("rules_file: skipped as suricata-update would: {e}");
        }
        Ok((built, hex::encode(h.finalize())))
    }

    /// Write the files when their inputs changed (or always with `force`).
    pub fn write(&self, force: bool) -> anyhow::Result<Written> {
        let (built, fp) = self.build()?;
        let state = self.state_path();
        let unchanged = std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == fp)
            && self.cfg.path.exists();
        if unchanged && !force {
            return Ok(Written {
                written: false,
                counts: built.counts,
            });
        }
        if let Some(cmd) = &self.cfg.test_command {
            self.test(cmd, &built.rules)?;
        }
        crate::fsutil::atomic_write(&self.cfg.path, built.rules.as_bytes())?;
        if let Some(p) = &self.cfg.sid_msg_map {
            crate::fsutil::atomic_write(p, built.sid_msg_map.as_bytes())?;
        }
        if let Some(p) = &self.cfg.classification {
            crate::fsutil::atomic_write(p, built.classification.as_bytes())?;
        }
        tracing::info!(
            "rules_file: wrote {} ({} rules: {} enabled, {} disabled)",
            self.cfg.path.display(),
            built.counts.total,
            built.counts.enabled,
            built.counts.disabled
        );
        if let Some(cmd) = &self.cfg.reload_command {
            // The fingerprint is kept only after a successful reload, so a failed reload is
            // tried again on the next run.
            run_shell(cmd).with_context(|| "sinks.rules_file.reload_command")?;
        }
        crate::fsutil::atomic_write(&state, format!("{fp}\n").as_bytes())?;
        Ok(Written {
            written: true,
            counts: built.counts,
        })
    }

    /// Run `test_command` on the new file, written beside the old one; a failure keeps the
    /// old file.
    fn test(&self, cmd: &str, rules: &str) -> anyhow::Result<()> {
        let dir = self
            .cfg
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".etferry-test-")
            .suffix(".rules")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
        std::fs::write(tmp.path(), rules)
            .with_context(|| format!("cannot write {}", tmp.path().display()))?;
        let quoted = format!("'{}'", tmp.path().to_string_lossy().replace('\'', r"'\''"));
        run_shell(&cmd.replace("{path}", &quoted)).with_context(|| {
            format!(
                "sinks.rules_file.test_command rejected the new rules; {} keeps the previous rules",
                self.cfg.path.display()
            )
        })
    }
}

/// Run `cmd` with `sh -c`; a non-zero exit is an error carrying the end of its output.
fn run_shell(cmd: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
    anyhow::bail!("{cmd:?} exited with {}: {tail}", out.status)
}

impl Sink for RulesFileSink {
    fn name(&self) -> &str {
        "rules_file"
    }

    fn whole_store(&self) -> bool {
        true
    }

    fn export(&mut self, items: &[ExportItem]) -> anyhow::Result<ExportOutcome> {
        self.write(false)?;
        Ok(ExportOutcome {
            confirmed: (0..items.len()).collect(),
            failed: Vec::new(),
        })
    }
}
