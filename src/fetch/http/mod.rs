//! The one place that builds HTTP requests to upstream: client settings (timeouts, proxy, CA,
//! user agent), the retry policy, and bounded retries with exponential backoff and jitter.

mod transfer;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::blocking::Client;

use super::config::HttpConfig;
use super::redirect;
use crate::secret::{redact, SafeUrl, Secret};
pub use transfer::{Conditional, Response, Spooled};

/// Largest `version.txt` or `.md5`: both are one short line; anything bigger is not one.
pub const META_MAX: u64 = 16 << 10;

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
        // `Retry-After: 0` or a date in the past means "retry now", not "cool down for 0 s".
        Failure::Status {
            code: 429 | 403,
            retry_after: Some(d),
        } if !d.is_zero() => Decision::CoolDown(*d),
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

/// The HTTP client of one run.
pub struct Http {
    client: Client,
    cfg: HttpConfig,
    secrets: Vec<Secret>,
    downloaded: Cell<u64>,
    archive: Cell<u64>,
    /// The redirect policy of the source being fetched (see [`Http::set_redirect_policy`]).
    policy: RefCell<redirect::Policy>,
    /// Where archive bodies are spooled (the system temp dir when unset).
    temp_dir: Option<PathBuf>,
}

/// What a request fetches: decides the body cap and the byte counters of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `version.txt`, `.md5`: change detection, at most [`META_MAX`] bytes.
    Meta,
    /// Archives and rule / IP-list files: the payload, at most `http.max_download_size`.
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
            // Redirects are followed by `send`, one checked hop at a time (see `redirect`).
            .redirect(reqwest::redirect::Policy::none())
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
            policy: RefCell::new(redirect::Policy::default()),
            temp_dir: None,
        })
    }

    /// Spool archive bodies into `dir` (e.g. the state dir) instead of the system temp dir.
    pub fn with_temp_dir(mut self, dir: &Path) -> Http {
        self.temp_dir = Some(dir.to_path_buf());
        self
    }

    /// The redirect policy for the following requests (set per source).
    pub fn set_redirect_policy(&self, p: redirect::Policy) {
        *self.policy.borrow_mut() = p;
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

    /// When a download starting now must be over: `total_timeout` bounds every attempt, backoff
    /// and retry of it together.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.cfg.total_timeout.get()
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

    /// GET `url` into memory with bounded retries, all within one `total_timeout`. 2xx and 304
    /// are returned; anything else is an error.
    pub fn get(
        &self,
        url: &SafeUrl,
        cond: &Conditional,
        kind: Kind,
    ) -> Result<Response, HttpError> {
        self.get_until(url, cond, kind, self.deadline())
    }

    /// [`Http::get`] that must be over by `deadline`.
    pub fn get_until(
        &self,
        url: &SafeUrl,
        cond: &Conditional,
        kind: Kind,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        self.retrying(url, deadline, |d| self.get_once(url, cond, kind, d, false))
    }

    /// GET an archive, into a temp file (hashed as it arrives) unless it announces a small size,
    /// capped by `max_download_size`,
    /// over by `deadline` with its retries.
    pub fn download(
        &self,
        url: &SafeUrl,
        cond: &Conditional,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        self.retrying(url, deadline, |d| {
            self.get_once(url, cond, Kind::Archive, d, true)
        })
    }

    /// Is `url` there? A HEAD, or a GET of its first byte when the server refuses HEAD (405, 501);
    /// the body is never read, so an archive is not downloaded. Same retries as [`Http::get`].
    /// Returns the status (2xx) and the size the server announces.
    pub fn probe(&self, url: &SafeUrl) -> Result<(u16, Option<u64>), HttpError> {
        self.retrying(url, self.deadline(), |d| self.probe_once(url, d))
    }

    /// Run `once` until it succeeds, [`decide`] says stop, or `deadline` passes; messages are
    /// prefixed with the URL.
    fn retrying<T>(
        &self,
        url: &SafeUrl,
        deadline: Instant,
        once: impl Fn(Instant) -> Result<T, (Failure, String)>,
    ) -> Result<T, HttpError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (failure, message) = match once(deadline) {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            let decision = decide(&failure);
            let message = format!("{url}: {message}");
            let left = deadline.saturating_duration_since(Instant::now());
            let d = self.backoff(attempt);
            match decision {
                Decision::Retry if attempt <= self.cfg.retries && d < left => {
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
                    let mut message = message;
                    if decision == Decision::Retry && attempt <= self.cfg.retries {
                        message.push_str(&format!(
                            "; no retry: total_timeout {} is spent",
                            humantime::format_duration(self.cfg.total_timeout.get())
                        ));
                    }
                    if attempt > 1 {
                        message.push_str(&format!(" (after {attempt} attempts)"));
                    }
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
        let text = self.chain_text(e);
        let lower = text.to_ascii_lowercase();
        // rustls's words when the other side sends no TLS record at all.
        if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
            return (
                f,
                format!("{text} (the server answers in plain http on this https URL: check the scheme and port)"),
            );
        }
        // With a proxy set, the client only ever connects to the proxy.
        if let (Failure::Connect, Some(p)) = (&f, &self.cfg.proxy) {
            let secrets: Vec<&Secret> = self.secrets.iter().collect();
            return (
                f,
                format!(
                    "cannot connect to the proxy {} (http.proxy): {text}",
                    redact(p, &secrets)
                ),
            );
        }
        (f, text)
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

/// `Retry-After` as seconds or an HTTP date. A number too large for any clock reads as "very
/// long" (the caller caps it), never as "now"; a date in the past is zero ("retry now").
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            v.parse::<u64>()
                .map(Duration::from_secs)
                .unwrap_or(Duration::MAX),
        );
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
            (st(429, Some(Duration::ZERO)), Decision::Retry),
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
        // Overflow is "as long as allowed", a past date is "now".
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::MAX)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        let far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
        assert!(far > Duration::from_secs(7000 * 365 * 86400), "{far:?}");
    }
}
