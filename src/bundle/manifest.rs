//! The manifest, format `etferry-bundle/1`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Format tag written into every manifest and required by the reader.
pub const FORMAT: &str = "etferry-bundle/1";

/// What a bundle says about itself. Unknown fields are tolerated (newer producers may add some);
/// the `format` tag must match exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// `<source name>-<sequence:08>`.
    pub bundle_id: String,
    pub source: SourceInfo,
    /// Per-source, strictly increasing.
    pub sequence: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub upstream: Upstream,
    /// Payload files, paths relative to the bundle directory. Filled in by `publish`.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Set on a heartbeat bundle: upstream had nothing new since this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged_since: Option<DateTime<Utc>>,
    /// Producing tool and version, e.g. `etferry 0.1.0`.
    pub producer: String,
}

/// Where the payload came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Source name, e.g. `et-open-suricata-7.0.3`.
    pub name: String,
    /// Catalog id: `et-open`, `et-open-nogpl`, `et-pro`, `et-blockrules`, `custom`.
    pub ruleset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Upstream URL with any secret redacted.
    pub url: String,
}

/// Upstream facts recorded at download time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// `version.txt` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Published md5 (lowercase hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_published: Option<String>,
    /// Whether the download matched the published md5 (`None`: none published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_matched: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// Where the payload came from when a redirect was followed (secrets masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_url: Option<String>,
}

/// One payload file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

/// The bundle id of a source's bundle with this sequence.
pub fn bundle_id(source_name: &str, sequence: u64) -> String {
    format!("{source_name}-{sequence:08}")
}

impl Manifest {
    /// A manifest for a new bundle, valid for `lifetime`; `files` are filled in by `publish`.
    pub fn new(
        source: SourceInfo,
        sequence: u64,
        created_at: DateTime<Utc>,
        lifetime: std::time::Duration,
    ) -> Manifest {
        let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
        let expires_at = created_at
            .checked_add_signed(lifetime)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Manifest {
            format: FORMAT.to_string(),
            bundle_id: bundle_id(&source.name, sequence),
            source,
            sequence,
            created_at,
            expires_at,
            upstream: Upstream::default(),
            files: Vec::new(),
            unchanged_since: None,
            producer: format!("etferry {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// A heartbeat says "upstream had nothing new"; it carries no payload.
    pub fn is_heartbeat(&self) -> bool {
        self.unchanged_since.is_some()
    }
}

/// The files an unverified manifest lists, to know what to copy off the medium before the
/// signature is checked. Nothing here is trusted: verification reads the manifest again.
pub fn listed_files(manifest_bytes: &[u8]) -> Option<Vec<FileEntry>> {
    serde_json::from_slice::<Manifest>(manifest_bytes)
        .ok()
        .map(|m| m.files)
}
