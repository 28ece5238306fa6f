//! Fetch state, one JSON file per source in the state dir, written atomically: change-detection
//! facts, the bundle sequence, cool-downs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What we remember about one upstream file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The state of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// Highest sequence ever handed out (published or reserved by a publish that failed).
    #[serde(default)]
    pub last_sequence: u64,
    #[serde(default)]
    pub last_check: Option<DateTime<Utc>>,
    /// When the content last changed (created_at of the last bundle with payload).
    #[serde(default)]
    pub last_changed: Option<DateTime<Utc>>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub md5: Option<String>,
    /// Per upstream file (path inside the bundle).
    #[serde(default)]
    pub files: BTreeMap<String, FileState>,
    #[serde(default)]
    pub cool_down_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub cool_down_reason: Option<String>,
    /// The source's URL (as shown) when the cool-down was set: a cool-down asked for by one
    /// server says nothing about another, so a changed `base_url` ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cool_down_url: Option<String>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: &Path) -> StateDir {
        StateDir {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, source: &str) -> PathBuf {
        self.dir.join("sources").join(format!("{source}.json"))
    }

    /// Lock file of fetch runs.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("fetch.lock")
    }

    /// Load a source's state; missing means a first run. A corrupt file is an error: silently
    /// starting over would reuse sequences.
    pub fn load(&self, source: &str) -> anyhow::Result<SourceState> {
        let p = self.path(source);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| {
                format!(
                    "fetch state {} is corrupt; fix or remove it (the sequence is recovered from the spool)",
                    p.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SourceState::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read fetch state {}", p.display())),
        }
    }

    /// Save atomically.
    pub fn save(&self, source: &str, st: &SourceState) -> anyhow::Result<()> {
        let mut b = serde_json::to_vec_pretty(st)?;
        b.push(b'\n');
        crate::fsutil::atomic_write(&self.path(source), &b)
    }
}
