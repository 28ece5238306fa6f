//! The embedded store (SQLite, bundled, WAL): the system of record on the air-gapped side.
//!
//! It keeps, per source, every rule with its current version and a history row per change, the
//! indicators from the plain IP lists, the bundles with their journal, the last accepted sequence,
//! the last bare archive accepted per source (version and sha256, the replay protection of archives
//! dropped by hand), and the per-sink export state. Storing one bundle is one transaction
//! ([`Store::begin_bundle`]: rows written as the rules are parsed, the rest and the commit at the
//! end); the same transaction moves the bundle's journal to `stored`, so a rerun after a crash
//! either redoes the whole bundle or skips straight to the export stage.
//!
//! One file per concern, each with its own `impl Store` block: `schema` (tables, `Store::open`,
//! the version check, manifests), `rules` (rules, what the diff reads), `writer` (one bundle's transaction), `bundles` (bundles
//! and journal, sources, heartbeats, archive imports, downloads), `payload` (texts read back from
//! the stored payload), `exports` (per-sink export state), `indicators` (block-list indicators).

use chrono::{DateTime, Utc};
use rusqlite::Connection;

mod bundles;
mod exports;
mod indicators;
mod payload;
mod rules;
mod schema;
mod writer;

pub use bundles::{gzip_json, ArchiveImport, BundleRow, Provenance, SourceRow};
pub use exports::ExportPolicy;
pub use indicators::IndicatorPolicy;
pub use payload::{TextRef, TextWants, Texts};
pub use rules::{
    labels_in, rules_in, text_hash, Label, NewRule, StoreBatch, StoredRule, StoredRules, TextHash,
};
pub use schema::SCHEMA_VERSION;
pub use writer::{BundleTx, Change};

/// An IP or CIDR from a plain IP list, with the list's section name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Indicator {
    pub value: String,
    /// `ip` or `cidr`.
    pub kind: String,
    pub section: String,
    pub file: String,
}

/// The embedded store.
pub struct Store {
    conn: Connection,
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Store {
    /// Raw connection, for tests and read-only queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}
