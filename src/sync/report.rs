//! What a `sync` run did: one [`Line`] per source (or pending download), the totals, the human
//! summary on stdout and `<state>/last-sync.json`.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::exit::Exit;

/// What happened to one source (or to a pending download of an earlier run) in this run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Line {
    pub source: String,
    /// `new`, `unchanged`, `heartbeat`, `skipped`, `cooling_down`, `failed`, or `pending` (a
    /// download of an earlier run, finished now).
    pub download: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub downloaded_bytes: u64,
    /// Archive / rule-file bytes received (0 when change detection said "unchanged").
    pub archive_bytes: u64,
    /// `stored`, `held`, `superseded`, `rejected`, `dry-run`, `stopped`, `already stored`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The change report's summary line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Signed bundle published into the spool (`publish:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The source failed in this run (exit 1).
    pub failed: bool,
}

impl Line {
    pub(super) fn new(source: &str, download: &str) -> Line {
        Line {
            source: source.to_string(),
            download: download.to_string(),
            ..Line::default()
        }
    }

    pub(super) fn fail(mut self, reason: String) -> Line {
        self.failed = true;
        self.reason = Some(reason);
        self
    }
}

/// The whole run (`<state>/last-sync.json`).
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub config: String,
    pub lines: Vec<Line>,
    pub downloaded_bytes: u64,
    pub archive_bytes: u64,
    /// Changes the sinks confirmed in this run.
    pub exported: usize,
    /// Changes still pending for a sink after the run.
    pub pending_exports: usize,
    pub exit: u8,
    #[serde(skip)]
    pub exit_status: Exit,
    #[serde(skip)]
    pub dry_run_reports: Vec<crate::ingest::diff::Report>,
}

impl SyncReport {
    /// The human summary printed on stdout.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            let what = match l.download.as_str() {
                "new" => format!(
                    "new download {} ({} archive bytes)",
                    l.id.as_deref().unwrap_or("?"),
                    l.archive_bytes
                ),
                "pending" => format!("pending download {}", l.id.as_deref().unwrap_or("?")),
                "heartbeat" => format!(
                    "unchanged ({} archive bytes); heartbeat published",
                    l.archive_bytes
                ),
                "unchanged" => format!("unchanged ({} archive bytes)", l.archive_bytes),
                other => other.replace('_', " "),
            };
            let mut s = format!("{}: {what}", l.source);
            if let Some(p) = &l.published {
                s.push_str(&format!("; published {p}"));
            }
            match (&l.outcome, &l.summary) {
                (Some(_), Some(sum)) => s.push_str(&format!("\n  {sum}")),
                (Some(o), None) => s.push_str(&format!("; {o}")),
                _ => {}
            }
            if let Some(r) = &l.reason {
                let tag = if l.failed {
                    "FAILED"
                } else if l.outcome.as_deref() == Some("held") {
                    "HELD"
                } else {
                    "note"
                };
                s.push_str(&format!("\n  {tag}: {r}"));
            }
            out.push_str(&s);
            out.push('\n');
        }
        let count = |o: &str| {
            self.lines
                .iter()
                .filter(|l| l.outcome.as_deref() == Some(o))
                .count()
        };
        out.push_str(&format!(
            "{} stored, {} unchanged, {} held, {} failed; downloaded {} bytes ({} archive bytes); \
             sinks: {} changes sent, {} pending\n",
            count("stored"),
            self.lines
                .iter()
                .filter(|l| matches!(l.download.as_str(), "unchanged" | "heartbeat"))
                .count(),
            count("held"),
            self.lines.iter().filter(|l| l.failed).count(),
            self.downloaded_bytes,
            self.archive_bytes,
            self.exported,
            self.pending_exports
        ));
        out
    }

    /// Write `last-sync.json` in the state dir.
    pub fn write(&self, state_dir: &Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        crate::fsutil::atomic_write(&state_dir.join("last-sync.json"), &json)
    }
}
