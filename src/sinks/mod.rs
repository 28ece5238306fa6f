//! Sinks receive the changes the store says are pending for them. The embedded store is the
//! system of record; every other sink implements [`Sink`], and nothing is marked exported before
//! the sink confirmed it.

pub mod rules_file;
pub mod stix;
pub mod threatq;

/// One rule as a sink receives it: the current stored version plus what it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportItem {
    /// Source name, e.g. `et-open-suricata-5.0`.
    pub source: String,
    /// Catalog id: `et-open`, `et-open-nogpl`, `et-pro`, `et-blockrules`, `custom`.
    pub ruleset: String,
    /// Engine flavour, e.g. `suricata-5.0`; `None` for block rules.
    pub engine: Option<String>,
    pub gid: u32,
    pub sid: u32,
    pub rev: u32,
    /// `msg`, unescaped.
    pub msg: String,
    /// The rule text without any leading `#`.
    pub text: String,
    /// Shipped enabled by ET (standard) or disabled (non-standard).
    pub enabled: bool,
    /// The rule disappeared from its ruleset.
    pub removed: bool,
    /// Status name to set (already chosen from standard / non-standard / removed config).
    pub status: String,
    pub classtype: Option<String>,
    /// Rules file inside the ruleset, e.g. `rules/emerging-info.rules`.
    pub file: String,
    /// `reference:` values as (type, value), e.g. ("url", "example.org/x").
    pub references: Vec<(String, String)>,
    /// ET metadata entries in order, repeated keys kept.
    pub metadata: Vec<(String, String)>,
    /// Revision and text last confirmed by this sink, when it had an older version.
    pub previous_rev: Option<u32>,
    pub previous_text: Option<String>,
}

/// What a sink confirmed, by index into the slice it was given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    pub confirmed: Vec<usize>,
    /// Items the sink did not confirm, with the reason; they stay pending.
    pub failed: Vec<(usize, String)>,
    /// Requests the sink made for this export, and the objects it sent (for ThreatQ, a new
    /// revision also sends its superseded predecessor, so this can exceed the item count).
    pub requests: u64,
    pub sent: u64,
    /// Set when the sink sent nothing on purpose (the ThreatQ connector is switched off): every
    /// item stays pending and the run is not a failure.
    pub paused: Option<String>,
}

/// One block-list IP or network as a sink receives it: every list and ruleset that names it now,
/// or none when it left every list (`removed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndicatorItem {
    /// `1.2.3.4` or `10.0.0.0/8`.
    pub value: String,
    /// `ip` or `cidr`.
    pub kind: String,
    /// List names (`botcc`, `compromised-ips`, `Spamhaus DROP Nets`), sorted.
    pub lists: Vec<String>,
    /// Catalog ids of the rulesets that carry it (`et-blockrules`, `et-open`), sorted.
    pub rulesets: Vec<String>,
    /// Status name to set: the indicator status, or `removed_status` once it left every list.
    pub status: String,
    pub removed: bool,
}

/// The one line a run prints per sink, with or without a terminal:
/// `threatq: sent 24,827 signatures in 50 requests (0 failed, 0 pending) in 112 s`.
/// `failed` are the items the sink did not confirm this time; `pending` what stays pending for
/// the next run (all of them when the export as a whole failed).
pub fn summary_line(
    sink: &str,
    out: Option<&ExportOutcome>,
    items: usize,
    elapsed: std::time::Duration,
) -> String {
    summary_of(sink, "signature", out, items, elapsed)
}

/// [`summary_line`] for indicators: `threatq: sent 1,873 indicators in 4 requests (…)`; a paused
/// sink says why and how much stays pending.
pub fn summary_of(
    sink: &str,
    noun: &str,
    out: Option<&ExportOutcome>,
    items: usize,
    elapsed: std::time::Duration,
) -> String {
    if let Some(why) = out.and_then(|o| o.paused.as_deref()) {
        return format!(
            "{sink}: paused, {why}: sent nothing ({} {noun}{} stay pending)",
            thousands(items as u64),
            if items == 1 { "" } else { "s" }
        );
    }
    let (sent, requests, failed, pending) = match out {
        Some(o) => (o.sent, o.requests, o.failed.len(), o.failed.len()),
        None => (0, 0, 0, items),
    };
    let secs = elapsed.as_secs_f64();
    let time = if secs < 10.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.0} s")
    };
    format!(
        "{sink}: sent {} {noun}{} in {} request{} ({} failed, {} pending) in {time}",
        thousands(sent),
        if sent == 1 { "" } else { "s" },
        thousands(requests),
        if requests == 1 { "" } else { "s" },
        thousands(failed as u64),
        thousands(pending as u64),
    )
}

pub use crate::human::thousands;

/// A destination for rule changes.
pub trait Sink {
    /// Stable name used for the per-sink export state in the store (e.g. `threatq`).
    fn name(&self) -> &str;
    /// Send `items`; return which were confirmed. An `Err` means nothing was confirmed.
    fn export(&mut self, items: &[ExportItem]) -> anyhow::Result<ExportOutcome>;
    /// A sink that rewrites a whole output from the store (rules file, STIX) is called after
    /// every stored bundle even with nothing pending, since its own inputs (policy files, a
    /// non-standard rule's change) may have changed; it decides itself whether to rewrite.
    fn whole_store(&self) -> bool {
        false
    }
    /// Whether the sink takes block-list indicators ([`Sink::export_indicators`]).
    fn takes_indicators(&self) -> bool {
        false
    }
    /// Send indicator changes; called right after [`Sink::export`] of the same run (which may
    /// have had no rules), so a sink can treat the two as one run.
    fn export_indicators(&mut self, _items: &[IndicatorItem]) -> anyhow::Result<ExportOutcome> {
        Ok(ExportOutcome::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_reads_like_the_issue_says() {
        let out = ExportOutcome {
            confirmed: (0..24_827).collect(),
            failed: vec![],
            requests: 50,
            sent: 24_827,
            paused: None,
        };
        assert_eq!(
            summary_line(
                "threatq",
                Some(&out),
                24_827,
                std::time::Duration::from_secs(112)
            ),
            "threatq: sent 24,827 signatures in 50 requests (0 failed, 0 pending) in 112 s"
        );
        assert_eq!(
            summary_line("threatq", None, 3, std::time::Duration::from_millis(420)),
            "threatq: sent 0 signatures in 0 requests (0 failed, 3 pending) in 0.4 s"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
