//! The ThreatQ sink: the only module that talks to ThreatQ. It logs in with the password grant,
//! resolves signature type and status ids by name, and upserts signatures through
//! `POST /api/signatures/consume` in batches, with bounded retries. The API as used, and the open
//! questions each made a config key: `docs/threatq.md`.
//!
//! Invariant: an item is reported `confirmed` only when ThreatQ answered it with an id (and, for a
//! changed rule, its stale single-value attributes are gone). Everything else is `failed` and
//! stays pending in the store.

mod client;
mod config;
mod connect;
mod connector;
mod indicators;
mod mapping;
mod related;
mod retry;
mod sink;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use client::Stats;
pub use config::{
    ConnectorConfig, DisabledValue, Relations, RetryConfig, RevChange, SourceField, ThreatQConfig,
    Tlp, DEFAULT_ATTRIBUTES,
};
pub use mapping::attributes_for;
pub use retry::{classify, Verdict};
pub use sink::{plan, Plan, ThreatQSink};

use crate::sinks::{ExportItem, ExportOutcome, IndicatorItem, Sink};

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
            Ok(Box::new(Unreachable(format!("{e:#}"), cfg.indicators)))
        }
    }
}

/// Stands in for a ThreatQ that could not be reached at start: every export fails, nothing is
/// confirmed.
struct Unreachable(String, bool);

impl Sink for Unreachable {
    fn name(&self) -> &str {
        "threatq"
    }
    fn export(&mut self, _items: &[ExportItem]) -> anyhow::Result<ExportOutcome> {
        Err(anyhow::anyhow!("ThreatQ not reachable: {}", self.0))
    }
    fn takes_indicators(&self) -> bool {
        self.1
    }
    fn export_indicators(&mut self, _items: &[IndicatorItem]) -> anyhow::Result<ExportOutcome> {
        Err(anyhow::anyhow!("ThreatQ not reachable: {}", self.0))
    }
}
