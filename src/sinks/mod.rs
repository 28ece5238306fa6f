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
}

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
}
