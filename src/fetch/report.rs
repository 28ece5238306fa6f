//! The run report: JSON in the state dir and a short human summary.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What happened to one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// New content: a bundle with payload was published.
    New,
    /// Upstream unchanged; a heartbeat bundle was published.
    Heartbeat,
    /// Upstream unchanged; heartbeats are off.
    Unchanged,
    /// Checked less than `min_interval` ago.
    Skipped,
    /// Upstream asked us to wait (Retry-After); not contacted.
    CoolingDown,
    Failed,
}

/// One source's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    pub source: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// Payload files in the bundle.
    pub files: usize,
    /// Payload bytes in the bundle.
    pub bytes: u64,
    /// Every body byte received for this source (version.txt, .md5, archives, failed attempts).
    pub downloaded_bytes: u64,
    /// Archive / rule-file bytes received (0 when change detection said "unchanged").
    pub archive_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SourceReport {
    pub fn new(source: &str) -> SourceReport {
        SourceReport {
            source: source.to_string(),
            status: Status::Failed,
            bundle: None,
            sequence: None,
            files: 0,
            bytes: 0,
            downloaded_bytes: 0,
            archive_bytes: 0,
            reason: None,
        }
    }

    pub fn failed(mut self, reason: String) -> SourceReport {
        self.status = Status::Failed;
        self.reason = Some(reason);
        self
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub config: String,
    pub sources: Vec<SourceReport>,
    pub downloaded_bytes: u64,
    pub archive_bytes: u64,
    pub new_bundles: usize,
    pub heartbeats: usize,
    pub failed: usize,
    /// Sources not contacted because upstream asked us to wait: the run did not do its job
    /// for them, so it exits 1 too.
    pub cooling_down: usize,
}

impl RunReport {
    pub fn new(
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        config: &Path,
        sources: Vec<SourceReport>,
    ) -> RunReport {
        let count = |s: Status| sources.iter().filter(|r| r.status == s).count();
        RunReport {
            started_at,
            finished_at,
            config: config.display().to_string(),
            downloaded_bytes: sources.iter().map(|s| s.downloaded_bytes).sum(),
            archive_bytes: sources.iter().map(|s| s.archive_bytes).sum(),
            new_bundles: count(Status::New),
            heartbeats: count(Status::Heartbeat),
            failed: count(Status::Failed),
            cooling_down: count(Status::CoolingDown),
            sources,
        }
    }

    /// Write `reports/fetch-<time>.json` and `last-run.json` in the state dir; keep 100 reports.
    pub fn write(&self, state_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        let dir = state_dir.join("reports");
        let path = dir.join(format!(
            "fetch-{}.json",
            self.started_at.format("%Y%m%dT%H%M%S%.3fZ")
        ));
        crate::fsutil::atomic_write(&path, &json)?;
        crate::fsutil::atomic_write(&state_dir.join("last-run.json"), &json)?;
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut names: Vec<_> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("fetch-") && n.ends_with(".json"))
                })
                .collect();
            names.sort();
            let excess = names.len().saturating_sub(100);
            for p in names.into_iter().take(excess) {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(path)
    }

    /// The human summary printed on stdout.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for s in &self.sources {
            let line = match s.status {
                Status::New => format!(
                    "new bundle {} (sequence {}, {} files, {} bytes)",
                    s.bundle.as_deref().unwrap_or("?"),
                    s.sequence.unwrap_or(0),
                    s.files,
                    s.bytes
                ),
                Status::Heartbeat => format!(
                    "unchanged; heartbeat {} (sequence {})",
                    s.bundle.as_deref().unwrap_or("?"),
                    s.sequence.unwrap_or(0)
                ),
                Status::Unchanged => "unchanged".to_string(),
                Status::Skipped => format!("skipped: {}", s.reason.as_deref().unwrap_or("")),
                Status::CoolingDown => {
                    format!("cooling down: {}", s.reason.as_deref().unwrap_or(""))
                }
                Status::Failed => format!("FAILED: {}", s.reason.as_deref().unwrap_or("")),
            };
            out.push_str(&format!("{}: {line}\n", s.source));
        }
        let cooling = if self.cooling_down > 0 {
            format!(", {} cooling down", self.cooling_down)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{} new, {} heartbeat, {} failed{cooling}; downloaded {} bytes ({} archive bytes)\n",
            self.new_bundles,
            self.heartbeats,
            self.failed,
            self.downloaded_bytes,
            self.archive_bytes
        ));
        out
    }
}
