//! The one place that builds HTTP requests to upstream: client settings (timeouts, proxy, CA,
//! user agent), the retry policy, and bounded retries with exponential backoff and jitter.

use std::cell::Cell;
use std::io::Read;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH};

use super::config::HttpConfig;
use crate::secret::{redact, SafeUrl, Secret};

/// Largest body we hold in memory; ET Pro archives are far below this.
const MAX_BODY: u64 = 2 << 30;

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with this status.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// Connect, idle-read or total timeout.
    Timeout,
    /// Could not connect (refused, DNS, proxy unreachable).
    Connect,
    /// The body ended early or the connection was reset mid-body.
    Body,
    /// Anything else (TLS, invalid URL, ...): not worth repeating.
    Other,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Retry,
    GiveUp,
    /// Upstream asked us to stay away this long; persist and honour it on later runs.
    CoolDown(Duration),
}

/// The retry policy, in one place: transient failures are retried, permanent ones are not, and an
/// explicit "come back later" (429/403 with Retry-After) becomes a persisted cool-down.
pub fn decide(f: &Failure) -> Decision {
    match f {
        Failure::Status {
            code: 429 | 403,
            retry_after: Some(d),
        } => Decision::CoolDown(*d),
        Failure::Status { code, .. } => match code {
            408 | 425 | 429 | 500 | 502 | 503 | 504 => Decision::Retry,
            _ => Decision::GiveUp,
        },
        Failure::Timeout | Failure::Connect | Failure::Body => Decision::Retry,
        Failure::Other => Decision::GiveUp,
    }
}

/// A failed request after all attempts. `message` is already redacted.
#[derive(Debug, Clone)]
pub struct HttpError {
    pub failure: Failure,
    pub message: String,
    pub attempts: u32,
    pub cool_down: Option<Duration>,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

impl HttpError {
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.failure,
            Failure::Status {
                code: 404 | 410,
                ..
            }
        )
    }
}

/// A successful (2xx) or 304 response, body read completely.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_length: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Response {
    pub fn not_modified(&self) -> bool {
        self.status == 304
    }
}

/// Validators for a conditional GET.
#[derive(Debug, Clone, Default)]
pub struct Conditional {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// The HTTP client of one run.
pub struct Http {
    client: Client,
    cfg: HttpConfig,
    secrets: Vec<Secret>,
    downloaded: Cell<u64>,
    archive: Cell<u64>,
}

/// What a request fetches, for the byte counters of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `version.txt`, `.md5`: change detection.
    Meta,
    /// Archives and rule / IP-list files: the payload.
    Archive,
}

impl Http {
    /// Build the client. `secrets` are masked in every message (oinkcodes, proxy password).
    pub fn new(cfg: &HttpConfig, secrets: Vec<Secret>) -> anyhow::Result<Http> {
        let mut b = Client::builder()
            .user_agent(concat!("etferry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.connect_timeout.get())
            // The blocking client applies this to each read: an idle-read timeout.
            .timeout(cfg.read_timeout.get())
            .https_only(false);
        if let Some(p) = &cfg.proxy {
            // Credentials in the URL become Proxy-Authorization (basic). Environment proxies are
            // replaced by this one, but NO_PROXY from the environment is still honoured.
            let proxy = reqwest::Proxy::all(p.as_str())
                .map_err(|e| anyhow::anyhow!("http.proxy: {}", e.without_url()))?
                .no_proxy(reqwest::NoProxy::from_env());
            b = b.proxy(proxy);
        }
        if let Some(ca) = &cfg.ca_bundle {
            let pem = std::fs::read(ca).map_err(|e| {
                crate::exit::usage(format!("cannot read http.ca_bundle {}: {e}", ca.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| crate::exit::usage(format!("http.ca_bundle {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(crate::exit::usage(format!(
                    "http.ca_bundle {} holds no PEM certificate",
                    ca.display()
                )));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(Http {
            client,
            cfg: cfg.clone(),
            secrets,
            downloaded: Cell::new(0),
            archive: Cell::new(0),
        })
    }

    /// Body bytes received so far in this run (including failed attempts).
    pub fn downloaded(&self) -> u64 {
        self.downloaded.get()
    }

    /// Payload (archive, rule-file) body bytes received so far, including failed attempts.
    pub fn archive_downloaded(&self) -> u64 {
        self.archive.get()
    }

    /// Retries allowed after the first attempt.
    pub fn retries(&self) -> u32 {
        self.cfg.retries
    }

    /// The backoff delay before retry number `n` (1-based): base·2^(n-1), capped, with jitter.
    pub fn backoff(&self, n: u32) -> Duration {
        let base = self.cfg.backoff_base.get();
        let exp = base.saturating_mul(1u32 << (n.saturating_sub(1)).min(16));
        let capped = exp.min(self.cfg.backoff_max.get());
        // Full delay between 50 % and 100 %: spreads clients without ever waiting zero.
        let f: f64 = rand::thread_rng().gen_range(0.5..=1.0);
        capped.mul_f64(f)
    }

    /// GET `url` with bounded retries. 2xx and 304 are returned; anything else is an error.
    pub fn get(
        &self,
        url: &SafeUrl,
        cond: &Conditional,
        kind: Kind,
    ) -> Result<Response, HttpError> {
        self.retrying(url, || self.get_once(url, cond, kind))
    }

    /// Is `url` there? A HEAD, or a GET of its first byte when the server refuses HEAD (405, 501);
    /// the body is never read, so an archive is not downloaded. Same retries as [`Http::get`].
    /// Returns the status (2xx) and the size the server announces.
    pub fn probe(&self, url: &SafeUrl) -> Result<(u16, Option<u64>), HttpError> {
        self.retrying(url, || self.probe_once(url))
    }

    /// Run `once` until it succeeds or [`decide`] says stop; messages are prefixed with the URL.
    fn retrying<T>(
        &self,
        url: &SafeUrl,
        once: impl Fn() -> Result<T, (Failure, String)>,
    ) -> Result<T, HttpError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (failure, message) = match once() {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            let decision = decide(&failure);
            let message = format!("{url}: {message}");
            match decision {
                Decision::Retry if attempt <= self.cfg.retries => {
                    let d = self.backoff(attempt);
                    tracing::info!(
                        "{message}; retry {attempt} of {} in {d:?}",
                        self.cfg.retries
                    );
                    std::thread::sleep(d);
                }
                Decision::CoolDown(d) => {
                    return Err(HttpError {
                        failure,
                        message,
                        attempts: attempt,
                        cool_down: Some(d),
                    })
                }
                _ => {
                    let message = if attempt > 1 {
                        format!("{message} (after {attempt} attempts)")
                    } else {
                        message
                    };
                    return Err(HttpError {
                        failure,
                        message,
                        attempts: attempt,
                        cool_down: None,
                    });
                }
            }
        }
    }

    fn probe_once(&self, url: &SafeUrl) -> Result<(u16, Option<u64>), (Failure, String)> {
        let resp = self
            .client
            .head(url.expose())
            .send()
            .map_err(|e| self.classify(&e))?;
        let resp = match resp.status().as_u16() {
            405 | 501 => self
                .client
                .get(url.expose())
                .header(reqwest::header::RANGE, "bytes=0-0")
                .send()
                .map_err(|e| self.classify(&e))?,
            _ => resp,
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            return Err(status_failure(&resp, retry_after));
        }
        // A ranged answer's Content-Length is the range; Content-Range carries the full size.
        let size = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|n| n.trim().parse().ok())
            .or_else(|| {
                // The header, not the body size: a HEAD answer has no body.
                resp.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|n| n.trim().parse().ok())
                    .filter(|_| status != 206)
            });
        // Dropping `resp` closes the connection without reading the body.
        Ok((status, size))
    }

    fn get_once(
        &self,
        url: &SafeUrl,
        cond: &Conditional,
        kind: Kind,
    ) -> Result<Response, (Failure, String)> {
        let started = Instant::now();
        let mut headers = HeaderMap::new();
        if let Some(v) = cond
            .etag
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(IF_NONE_MATCH, v);
        }
        if let Some(v) = cond
            .last_modified
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(IF_MODIFIED_SINCE, v);
        }
        let mut resp = self
            .client
            .get(url.expose())
            .headers(headers)
            .send()
            .map_err(|e| self.classify(&e))?;
        let status = resp.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let retry_after = header(reqwest::header::RETRY_AFTER).and_then(|v| parse_retry_after(&v));
        let content_length = resp.content_length();
        if status == 304 {
            return Ok(Response {
                status,
                body: Vec::new(),
                content_length,
                etag,
                last_modified,
            });
        }
        if !(200..300).contains(&status) {
            return Err(status_failure(&resp, retry_after));
        }
        if content_length.is_some_and(|n| n > MAX_BODY) {
            return Err((
                Failure::Other,
                format!(
                    "body of {} bytes is larger than the {MAX_BODY}-byte limit",
                    content_length.unwrap_or(0)
                ),
            ));
        }
        let total = self.cfg.total_timeout.get();
        let bar = match kind {
            Kind::Archive => crate::progress::bytes(content_length, file_label(url)),
            Kind::Meta => crate::progress::hidden(),
        };
        let mut body = Vec::with_capacity(content_length.unwrap_or(0).min(64 << 20) as usize);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if started.elapsed() > total {
                return Err((
                    Failure::Timeout,
                    format!(
                        "download took longer than total_timeout {} ({} bytes received)",
                        humantime::format_duration(total),
                        body.len()
                    ),
                ));
            }
            match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.downloaded.set(self.downloaded.get() + n as u64);
                    if kind == Kind::Archive {
                        self.archive.set(self.archive.get() + n as u64);
                    }
                    body.extend_from_slice(&buf[..n]);
                    bar.inc(n as u64);
                    if body.len() as u64 > MAX_BODY {
                        return Err((Failure::Other, "body larger than the limit".into()));
                    }
                }
                Err(e) => {
                    let timed_out = e.kind() == std::io::ErrorKind::TimedOut
                        || self.chain_text(&e).contains("timed out");
                    let (f, what) = if timed_out {
                        (Failure::Timeout, "no data within read_timeout")
                    } else {
                        (Failure::Body, "connection broke mid-body")
                    };
                    return Err((
                        f,
                        format!("{what} after {} bytes: {}", body.len(), self.chain_text(&e)),
                    ));
                }
            }
        }
        Ok(Response {
            status,
            body,
            content_length,
            etag,
            last_modified,
        })
    }

    fn classify(&self, e: &reqwest::Error) -> (Failure, String) {
        let f = if e.is_timeout() {
            Failure::Timeout
        } else if e.is_connect() {
            Failure::Connect
        } else if e.is_body() || e.is_request() {
            // Request errors are mostly I/O on an established connection (reset, early close).
            Failure::Body
        } else {
            Failure::Other
        };
        (f, self.chain_text(e))
    }

    /// An error and its causes on one line, with every secret masked. reqwest puts the URL (with the
    /// oinkcode) into its messages; it is masked here too.
    fn chain_text(&self, e: &(dyn std::error::Error + 'static)) -> String {
        let mut parts = Vec::new();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cur {
            let s = c.to_string();
            if !parts.iter().any(|p: &String| p.contains(&s)) {
                parts.push(s);
            }
            cur = c.source();
        }
        let secrets: Vec<&Secret> = self.secrets.iter().collect();
        redact(&parts.join(": "), &secrets)
    }
}

/// The last path segment of a URL as shown (the oinkcode is never in it), for a progress bar.
fn file_label(url: &SafeUrl) -> String {
    let shown = url.shown().split(['?', '#']).next().unwrap_or("");
    shown.rsplit('/').next().unwrap_or(shown).to_string()
}

/// A non-2xx answer as a failure, with its Retry-After.
fn status_failure(
    resp: &reqwest::blocking::Response,
    retry_after: Option<std::time::Duration>,
) -> (Failure, String) {
    let code = resp.status().as_u16();
    let reason = resp.status().canonical_reason().unwrap_or("");
    (
        Failure::Status { code, retry_after },
        format!("HTTP {code} {reason}"),
    )
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_table() {
        let ra = Some(Duration::from_secs(120));
        let st = |code, retry_after| Failure::Status { code, retry_after };
        let table = [
            (st(500, None), Decision::Retry),
            (st(502, None), Decision::Retry),
            (st(503, None), Decision::Retry),
            (st(504, None), Decision::Retry),
            (st(408, None), Decision::Retry),
            (st(429, None), Decision::Retry),
            (st(429, ra), Decision::CoolDown(Duration::from_secs(120))),
            (st(403, ra), Decision::CoolDown(Duration::from_secs(120))),
            (st(403, None), Decision::GiveUp),
            (st(404, None), Decision::GiveUp),
            (st(410, None), Decision::GiveUp),
            (st(401, None), Decision::GiveUp),
            (st(407, None), Decision::GiveUp),
            (st(400, None), Decision::GiveUp),
            (st(501, None), Decision::GiveUp),
            (Failure::Timeout, Decision::Retry),
            (Failure::Connect, Decision::Retry),
            (Failure::Body, Decision::Retry),
            (Failure::Other, Decision::GiveUp),
        ];
        for (f, want) in table {
            assert_eq!(decide(&f), want, "{f:?}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let cfg = HttpConfig {
            backoff_base: crate::config::Dur(Duration::from_millis(100)),
            backoff_max: crate::config::Dur(Duration::from_millis(350)),
            ..HttpConfig::default()
        };
        let h = Http::new(&cfg, vec![]).unwrap();
        for _ in 0..20 {
            let d1 = h.backoff(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d2 = h.backoff(2);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d9 = h.backoff(9);
            assert!(d9 >= Duration::from_millis(175) && d9 <= Duration::from_millis(350));
        }
    }

    #[test]
    fn retry_after_in_seconds_or_date() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(300)).to_rfc2822();
        let d = parse_retry_after(&later).unwrap();
        assert!(d > Duration::from_secs(290) && d <= Duration::from_secs(300));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
