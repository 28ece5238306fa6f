//! `fetch.yaml`: the DMZ side's configuration (strict: unknown keys and bad values are errors that
//! name the file and key).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::catalog;
use crate::config::{
    base_dir, load_role, read_secret_env, read_secret_file, resolve, ByteSize, Dur,
};
use crate::exit::usage;
use crate::secret::Secret;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchFile {
    pub spool: PathBuf,
    pub state: PathBuf,
    pub signing_key: PathBuf,
    #[serde(default)]
    pub signing_key_password_file: Option<PathBuf>,
    #[serde(default)]
    pub signing_key_password_env: Option<String>,
    #[serde(default = "default_lifetime")]
    pub bundle_lifetime: Dur,
    #[serde(default = "default_keep")]
    pub keep_bundles: usize,
    #[serde(default = "default_min_interval")]
    pub min_interval: Dur,
    #[serde(default = "default_true")]
    pub heartbeat: bool,
    #[serde(default)]
    pub http: HttpConfig,
    pub sources: Vec<SourceFile>,
}

fn default_lifetime() -> Dur {
    Dur(Duration::from_secs(14 * 86400))
}
fn default_keep() -> usize {
    30
}
fn default_min_interval() -> Dur {
    Dur(Duration::from_secs(15 * 60))
}
fn default_true() -> bool {
    true
}

/// `http:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Proxy URL, may hold `user:password@`. Environment proxies apply when this is absent.
    #[serde(default)]
    pub proxy: Option<String>,
    /// PEM file with extra trusted CA certificates.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    #[serde(default = "d_connect")]
    pub connect_timeout: Dur,
    /// Idle read timeout.
    #[serde(default = "d_read")]
    pub read_timeout: Dur,
    #[serde(default = "d_total")]
    pub total_timeout: Dur,
    /// Retries after the first attempt for transient failures and md5 mismatches.
    #[serde(default = "d_retries")]
    pub retries: u32,
    /// First backoff delay (doubled per retry, with jitter). Small values are for tests.
    #[serde(default = "d_backoff")]
    pub backoff_base: Dur,
    /// Upper bound of one backoff delay.
    #[serde(default = "d_backoff_max")]
    pub backoff_max: Dur,
    /// Longest Retry-After honoured within a run; longer ones become a cool-down instead.
    #[serde(default = "d_backoff_max")]
    pub max_retry_after: Dur,
    /// Largest archive or rules-file body accepted; a bigger one fails the source, nothing is
    /// published. (`version.txt` and `.md5` have their own small fixed cap.)
    #[serde(default = "d_max_download")]
    pub max_download_size: ByteSize,
    /// Longest cool-down a `Retry-After` can set: ten years from a hostile server reads as this.
    #[serde(default = "d_max_cool_down")]
    pub max_cool_down: Dur,
}

fn d_max_download() -> ByteSize {
    // ET Pro's largest archives are tens of MiB; 256 MiB leaves room and bounds the disk used.
    ByteSize(256 << 20)
}
fn d_max_cool_down() -> Dur {
    Dur(Duration::from_secs(24 * 3600))
}

fn d_connect() -> Dur {
    Dur(Duration::from_secs(10))
}
fn d_read() -> Dur {
    Dur(Duration::from_secs(60))
}
fn d_total() -> Dur {
    Dur(Duration::from_secs(600))
}
fn d_retries() -> u32 {
    3
}
fn d_backoff() -> Dur {
    Dur(Duration::from_secs(2))
}
fn d_backoff_max() -> Dur {
    Dur(Duration::from_secs(60))
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            proxy: None,
            ca_bundle: None,
            connect_timeout: d_connect(),
            read_timeout: d_read(),
            total_timeout: d_total(),
            retries: d_retries(),
            backoff_base: d_backoff(),
            backoff_max: d_backoff_max(),
            max_retry_after: d_backoff_max(),
            max_download_size: d_max_download(),
            max_cool_down: d_max_cool_down(),
        }
    }
}

/// One entry of `sources:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    pub ruleset: String,
    #[serde(default)]
    pub engine: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub oinkcode_file: Option<PathBuf>,
    #[serde(default)]
    pub oinkcode_env: Option<String>,
    /// `custom` only.
    #[serde(default)]
    pub url: Option<String>,
    /// `custom` only.
    #[serde(default)]
    pub checksum_url: Option<String>,
    /// Hosts a redirect may lead to besides the source's own (a mirror's CDN). https is never
    /// downgraded to http, and the oinkcode never goes to another host, allowed or not.
    #[serde(default)]
    pub allow_redirect_hosts: Vec<String>,
}

/// A validated source, secrets read.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub ruleset: String,
    pub engine: Option<String>,
    pub plan: catalog::Plan,
    /// Secrets to mask in every message about this source.
    pub secrets: Vec<Secret>,
    pub redirects: super::redirect::Policy,
}

/// The validated configuration with paths resolved.
#[derive(Debug)]
pub struct FetchConfig {
    pub path: PathBuf,
    pub spool: PathBuf,
    pub state: PathBuf,
    pub signing_key: PathBuf,
    pub signing_key_password: Option<Secret>,
    pub bundle_lifetime: Duration,
    pub keep_bundles: usize,
    pub min_interval: Duration,
    pub heartbeat: bool,
    pub http: HttpConfig,
    /// Proxy password, masked in messages.
    pub proxy_secret: Option<Secret>,
    pub sources: Vec<Source>,
}

impl FetchConfig {
    /// Load and validate `path`. Every problem is a usage error (exit 2) naming the file and key.
    pub fn load(path: &Path) -> anyhow::Result<FetchConfig> {
        crate::config::warn_if_world_readable(path);
        let f: FetchFile = load_role(path, "fetch.yaml")?;
        Self::from_file(path, f)
    }

    pub(crate) fn from_file(path: &Path, f: FetchFile) -> anyhow::Result<FetchConfig> {
        let base = base_dir(path);
        let bad = |key: String, what: String| {
            usage(format!("config {}, key `{key}`: {what}", path.display()))
        };
        if f.sources.is_empty() {
            return Err(bad(
                "sources".into(),
                "at least one source is needed".into(),
            ));
        }
        if f.keep_bundles == 0 {
            return Err(bad("keep_bundles".into(), "must be at least 1".into()));
        }
        let signing_key_password = match (&f.signing_key_password_file, &f.signing_key_password_env)
        {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "signing_key_password_file".into(),
                    "give signing_key_password_file or signing_key_password_env, not both".into(),
                ))
            }
            (Some(p), None) => Some(read_secret_file(&resolve(&base, p))?),
            (None, Some(v)) => Some(read_secret_env(v)?),
            (None, None) => None,
        };
        let proxy_secret = match &f.http.proxy {
            Some(p) => {
                let parsed = reqwest::Url::parse(p).map_err(|e| {
                    bad(
                        "http.proxy".into(),
                        format!("{e}; write e.g. http://user:password@proxy.example:3128"),
                    )
                })?;
                parsed.password().map(|pw| Secret::new(pw.to_string()))
            }
            None => None,
        };
        let mut http = f.http.clone();
        http.ca_bundle = http.ca_bundle.map(|p| resolve(&base, &p));

        let mut sources = Vec::new();
        for (i, s) in f.sources.iter().enumerate() {
            let key = |k: &str| format!("sources[{i}].{k}");
            let src = build_source(&base, s, &key).map_err(|(k, what)| bad(k, what))?;
            if sources.iter().any(|o: &Source| o.name == src.name) {
                return Err(bad(
                    key("name"),
                    format!("source name {} is used twice; give one a `name`", src.name),
                ));
            }
            sources.push(src);
        }
        Ok(FetchConfig {
            path: path.to_path_buf(),
            spool: resolve(&base, &f.spool),
            state: resolve(&base, &f.state),
            signing_key: resolve(&base, &f.signing_key),
            signing_key_password,
            bundle_lifetime: f.bundle_lifetime.get(),
            keep_bundles: f.keep_bundles,
            min_interval: f.min_interval.get(),
            heartbeat: f.heartbeat,
            http,
            proxy_secret,
            sources,
        })
    }

    /// Load the signing key with the configured password (`fetch` and `config check` share this,
    /// so a missing key or an encrypted key without its password fails both).
    pub fn load_signing_key(&self) -> anyhow::Result<crate::bundle::SigningKey> {
        crate::bundle::SigningKey::load(&self.signing_key, self.signing_key_password.as_ref())
            .map_err(|e| {
                usage(format!(
                    "config {}, key `signing_key`: {e:#}",
                    self.path.display()
                ))
            })
    }

    /// Every secret of the config (for redaction of messages that are not about one source).
    pub fn all_secrets(&self) -> Vec<&Secret> {
        self.sources
            .iter()
            .flat_map(|s| s.secrets.iter())
            .chain(self.proxy_secret.iter())
            .collect()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

fn build_source(
    base: &Path,
    s: &SourceFile,
    key: &dyn Fn(&str) -> String,
) -> Result<Source, (String, String)> {
    let r = s.ruleset.as_str();
    if !catalog::RULESETS.contains(&r) {
        return Err((
            key("ruleset"),
            format!(
                "unknown ruleset {r:?}; allowed: {}",
                catalog::RULESETS.join(", ")
            ),
        ));
    }
    let needs_engine = matches!(r, "et-open" | "et-open-nogpl" | "et-pro");
    match (&s.engine, needs_engine) {
        (None, true) => {
            return Err((
                key("engine"),
                "missing; write e.g. suricata-7.0.3, suricata-5.0, snort-2.9.0 or snort-edge"
                    .into(),
            ))
        }
        (Some(e), true) if !catalog::valid_engine(e) => {
            return Err((
                key("engine"),
                format!(
                "{e:?} is not an ET flavour; allowed: suricata-X.Y[.Z], snort-2.9.0, snort-edge"
            ),
            ))
        }
        (Some(_), false) => return Err((key("engine"), format!("ruleset {r} takes no engine"))),
        _ => {}
    }
    let wants_code = r == "et-pro";
    let oinkcode = match (&s.oinkcode_file, &s.oinkcode_env) {
        (Some(_), Some(_)) => {
            return Err((
                key("oinkcode_file"),
                "give oinkcode_file or oinkcode_env, not both".into(),
            ))
        }
        (Some(p), None) => Some(
            read_secret_file(&resolve(base, p))
                .map_err(|e| (key("oinkcode_file"), format!("{e:#}")))?,
        ),
        (None, Some(v)) => {
            Some(read_secret_env(v).map_err(|e| (key("oinkcode_env"), format!("{e:#}")))?)
        }
        (None, None) => None,
    };
    if wants_code && oinkcode.is_none() {
        return Err((
            key("oinkcode_file"),
            "et-pro needs oinkcode_file or oinkcode_env".into(),
        ));
    }
    if !wants_code && oinkcode.is_some() {
        return Err((
            key("oinkcode_file"),
            format!("ruleset {r} takes no oinkcode"),
        ));
    }
    if let Some(code) = &oinkcode {
        // It becomes a URL path segment: refuse anything that could change the URL's shape.
        if !code.expose().bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err((
                key("oinkcode_file"),
                "the oinkcode must be letters and digits only".into(),
            ));
        }
    }
    for (k, v) in [
        ("base_url", &s.base_url),
        ("url", &s.url),
        ("checksum_url", &s.checksum_url),
    ] {
        if let Some(u) = v {
            match reqwest::Url::parse(u) {
                Ok(p) if p.scheme() == "http" || p.scheme() == "https" => {}
                _ => return Err((key(k), format!("{u:?} is not an http(s) URL"))),
            }
        }
    }
    for (j, h) in s.allow_redirect_hosts.iter().enumerate() {
        let plain = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !plain {
            return Err((
                key(&format!("allow_redirect_hosts[{j}]")),
                format!("{h:?} is not a host name; write e.g. cdn.example.net (no scheme, port or path)"),
            ));
        }
    }
    let plan = if r == "custom" {
        if s.base_url.is_some() {
            return Err((
                key("base_url"),
                "custom sources take `url`, not base_url".into(),
            ));
        }
        let Some(url) = &s.url else {
            return Err((key("url"), "custom sources need a url".into()));
        };
        catalog::Plan::Archive {
            url: crate::secret::SafeUrl::new(url.clone(), &[]),
            checksum_url: s
                .checksum_url
                .as_ref()
                .map(|c| crate::secret::SafeUrl::new(c.clone(), &[])),
            version_url: None,
            engine_versioned: false,
        }
    } else {
        if s.url.is_some() || s.checksum_url.is_some() {
            return Err((
                key("url"),
                format!("ruleset {r} takes its URLs from the catalog; use base_url for a mirror"),
            ));
        }
        catalog::plan(
            r,
            s.engine.as_deref(),
            s.base_url.as_deref(),
            oinkcode.as_ref(),
        )
        .ok_or_else(|| (key("ruleset"), format!("no catalog entry for {r}")))?
    };
    let name = match (&s.name, r) {
        (Some(n), _) => n.clone(),
        (None, "custom") => return Err((key("name"), "custom sources need a name".into())),
        (None, _) => match &s.engine {
            Some(e) => format!("{r}-{e}"),
            None => r.to_string(),
        },
    };
    if !valid_name(&name) {
        return Err((
            key("name"),
            format!("{name:?}: use letters, digits, '-', '_' and '.' only"),
        ));
    }
    Ok(Source {
        name,
        ruleset: r.to_string(),
        engine: s.engine.clone(),
        plan,
        secrets: oinkcode.into_iter().collect(),
        redirects: super::redirect::Policy {
            allow_hosts: s.allow_redirect_hosts.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<FetchConfig> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fetch.yaml");
        std::fs::write(&p, text).unwrap();
        FetchConfig::load(&p)
    }

    #[test]
    fn names_default_to_ruleset_and_engine_and_paths_resolve() {
        let c = load(
            "spool: ../out\nstate: st\nsigning_key: k/bundle.key\nsources:\n  - ruleset: et-open\n    engine: suricata-7.0.3\n  - ruleset: et-blockrules\n",
        )
        .unwrap();
        assert_eq!(c.sources[0].name, "et-open-suricata-7.0.3");
        assert_eq!(c.sources[1].name, "et-blockrules");
        assert!(c.spool.ends_with("../out"));
        assert!(c.state.is_absolute());
        assert!(c.heartbeat);
        assert_eq!(c.keep_bundles, 30);
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_allowed() {
        let head = "spool: o\nstate: s\nsigning_key: k\n";
        let cases = [
            (
                "sources:\n  - ruleset: et-closed\n",
                "sources[0].ruleset",
                "et-open-nogpl",
            ),
            (
                "sources:\n  - ruleset: et-open\n    engine: suricata\n",
                "sources[0].engine",
                "snort-2.9.0",
            ),
            (
                "sources:\n  - ruleset: et-open\n",
                "sources[0].engine",
                "suricata-7.0.3",
            ),
            (
                "sources:\n  - ruleset: et-pro\n    engine: snort-2.9.0\n",
                "sources[0].oinkcode_file",
                "oinkcode_env",
            ),
            (
                "sources:\n  - ruleset: custom\n    url: ftp://x/y\n    name: h\n",
                "sources[0].url",
                "http",
            ),
            (
                "http:\n  retries: many\nsources: []\n",
                "http.retries",
                "invalid",
            ),
            ("sourcess: []\n", "sourcess", "sources"),
        ];
        for (tail, key, hint) in cases {
            let err = load(&format!("{head}{tail}")).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("fetch.yaml"), "{msg}");
            assert!(msg.contains(key), "{key}: {msg}");
            assert!(msg.contains(hint), "{hint}: {msg}");
            assert_eq!(
                crate::exit::exit_for(&err),
                crate::exit::Exit::Usage,
                "{msg}"
            );
        }
    }

    #[test]
    fn shipped_example_config_matches_the_schema() {
        let text = include_str!("../../config/fetch.yaml");
        let f: FetchFile = crate::config::parse_yaml(Path::new("config/fetch.yaml"), text).unwrap();
        assert_eq!(f.sources.len(), 4);
        assert_eq!(
            f.sources[1].oinkcode_file.as_deref(),
            Some(Path::new("/etc/etferry/oinkcode"))
        );
        // Every source validates once its secret is available.
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("oinkcode");
        std::fs::write(&code, "0123456789abcdef\n").unwrap();
        let mut f = f;
        f.signing_key_password_file = None;
        f.sources[1].oinkcode_file = Some(code);
        let c = FetchConfig::from_file(&dir.path().join("fetch.yaml"), f).unwrap();
        let names: Vec<&str> = c.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "et-open-suricata-7.0.3",
                "et-pro-snort-2.9.0",
                "et-blockrules",
                "hunting"
            ]
        );
    }
}
