//! The HTTP client: password grant and refresh, one call with retries, Retry-After, one re-login
//! on 401, the per-run circuit breaker (`retry.max_total_wait`), and never a followed redirect.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use super::config::RetryConfig;
use super::retry::{backoff, classify, retry_after, transient, Verdict};
use crate::secret::{redact, Secret};

pub(super) struct Tokens {
    pub(super) access: Secret,
    pub(super) refresh: Option<Secret>,
    pub(super) obtained: Instant,
    pub(super) lifetime: Duration,
    pub(super) generation: u64,
}

/// Why a call failed.
#[derive(Debug)]
pub(super) enum CallError {
    /// Credentials refused after one fresh login: nothing else will work either.
    Auth(String),
    /// ThreatQ misbehaves in a way that repeating will not fix this run (no token in a login
    /// answer, 401 right after a fresh login, a redirect, the circuit breaker): stop sending,
    /// keep everything pending. Not a config error: ingest still stores (exit 3).
    Stop(String),
    Failed(String),
}

impl CallError {
    pub(super) fn message(&self) -> &str {
        match self {
            CallError::Auth(m) | CallError::Stop(m) | CallError::Failed(m) => m,
        }
    }
}

/// Counters of one sink's life, for reports and the benchmark.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub consume_requests: u64,
    pub signatures_sent: u64,
    pub retries: u64,
    pub logins: u64,
    pub refreshes: u64,
    pub attributes_deleted: u64,
    pub indicator_requests: u64,
    pub indicators_sent: u64,
}

pub(super) struct Api {
    pub(super) http: Client,
    pub(super) base: Url,
    pub(super) client_id: String,
    pub(super) email: String,
    pub(super) password: Secret,
    pub(super) lifetime_override: Option<Duration>,
    pub(super) retry: RetryConfig,
    pub(super) tokens: Mutex<Option<Tokens>>,
    /// Tokens handed out so far, for redaction.
    pub(super) known: Mutex<Vec<Secret>>,
    pub(super) stats: Mutex<Stats>,
    /// Time spent waiting on retries this run, and whether that tripped the circuit breaker.
    pub(super) waited: Mutex<Duration>,
    pub(super) tripped: Mutex<Option<String>>,
}

impl Api {
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// The password and every token seen (not the token lock: it is held during logins).
    pub(super) fn secrets(&self) -> Vec<Secret> {
        let mut v = vec![self.password.clone()];
        if let Ok(k) = self.known.lock() {
            v.extend(k.iter().cloned());
        }
        v
    }

    /// Shorten and redact a response body for a message.
    pub(super) fn excerpt(&self, body: &str) -> String {
        let secrets = self.secrets();
        let refs: Vec<&Secret> = secrets.iter().collect();
        // Redact before cutting: a cut through a secret would leave its prefix unmasked.
        redact(body.trim(), &refs).chars().take(300).collect()
    }

    /// A transport error in words an operator can act on (refused, timeout, TLS), with its
    /// causes, redacted. reqwest's own text is only "error sending request".
    pub(super) fn transport_text(&self, e: &reqwest::Error) -> String {
        let mut causes: Vec<String> = Vec::new();
        let mut refused = false;
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cur {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
            }
            let t = c.to_string();
            if !causes.iter().any(|p| p.contains(&t)) {
                causes.push(t);
            }
            cur = c.source();
        }
        let all = causes.join(": ");
        let lower = all.to_ascii_lowercase();
        let kind = if e.is_timeout() {
            "timed out (sinks.threatq.timeout)".to_string()
        } else if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
            // rustls's words when no TLS record comes back at all.
            "TLS error: the server answers in plain http on this https URL (check the scheme and port of sinks.threatq.host)"
                .to_string()
        } else if refused || lower.contains("connection refused") {
            "connection refused (is ThreatQ running on that host and port?)".to_string()
        } else if [
            "certificate",
            "tls",
            "handshake",
            "corrupt message",
            "alert",
        ]
        .iter()
        .any(|k| lower.contains(k))
        {
            // rustls's words: "invalid peer certificate", "received corrupt message" (no TLS on
            // the other side), "received fatal alert".
            "TLS error (for an internal CA or a self-signed ThreatQ set sinks.threatq.ca_bundle)"
                .to_string()
        } else if e.is_connect() {
            "cannot connect".to_string()
        } else {
            "request failed".to_string()
        };
        self.excerpt(&format!("{kind}: {all}"))
    }

    /// Wait `d` before a retry, unless that would take this run's waiting past `max_total_wait`:
    /// then trip the circuit breaker (every later call fails at once).
    pub(super) fn wait(&self, d: Duration, why: &str) -> Result<(), CallError> {
        self.check_breaker()?;
        let max = self.retry.max_total_wait.get();
        let total = {
            let mut w = self
                .waited
                .lock()
                .map_err(|_| CallError::Failed("wait lock poisoned".into()))?;
            *w += d;
            *w
        };
        if total > max {
            let msg = format!(
                "ThreatQ {} keeps answering {why}: stopped after waiting {} in total this run (sinks.threatq.retry.max_total_wait {}); the rest stays pending",
                self.base,
                humantime::format_duration(Duration::from_secs((total - d).as_secs())),
                humantime::format_duration(max)
            );
            if let Ok(mut t) = self.tripped.lock() {
                t.get_or_insert_with(|| msg.clone());
            }
            return Err(CallError::Stop(msg));
        }
        self.bump(|s| s.retries += 1);
        std::thread::sleep(d);
        Ok(())
    }

    pub(super) fn reset_breaker(&self) {
        if let Ok(mut w) = self.waited.lock() {
            *w = Duration::ZERO;
        }
        if let Ok(mut t) = self.tripped.lock() {
            *t = None;
        }
    }

    pub(super) fn check_breaker(&self) -> Result<(), CallError> {
        match self.tripped.lock().ok().and_then(|t| t.clone()) {
            Some(msg) => Err(CallError::Stop(msg)),
            None => Ok(()),
        }
    }

    /// A 3xx from ThreatQ: never followed (a body or header with a secret would go along, maybe
    /// to another host or to plain http); the error names where it pointed, secrets masked.
    pub(super) fn redirected(&self, what: &str, status: u16, location: Option<&str>) -> CallError {
        let secrets = self.secrets();
        let refs: Vec<&Secret> = secrets.iter().collect();
        let to = location
            .map(|l| redact(l, &refs))
            .unwrap_or_else(|| "(no Location)".into());
        CallError::Stop(format!(
            "{what}: ThreatQ {} answered HTTP {status} redirecting to {to}; etferry never follows a redirect from ThreatQ (credentials or a token would go along): set sinks.threatq.host to the address that answers",
            self.base
        ))
    }

    pub(super) fn bump(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// Password grant in the SDK form (§1.2): grant type and client id in the query, credentials
    /// in a JSON body.
    pub(super) fn login(&self, generation: u64) -> Result<Tokens, CallError> {
        let mut url = Url::parse(&self.url("/api/token"))
            .map_err(|e| CallError::Failed(format!("bad ThreatQ URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("grant_type", "password")
            .append_pair("client_id", &self.client_id);
        let body = json!({"email": self.email, "password": self.password.expose()});
        self.bump(|s| s.logins += 1);
        let v = self.token_call(url, None, &body, "log in")?;
        self.tokens_from(&v, generation)
    }

    /// Refresh grant (§1.2): a new access and refresh token.
    pub(super) fn refresh(&self, t: &Tokens) -> Result<Tokens, CallError> {
        let rt = t
            .refresh
            .as_ref()
            .ok_or_else(|| CallError::Failed("no refresh token".into()))?;
        let mut url = Url::parse(&self.url("/api/token"))
            .map_err(|e| CallError::Failed(format!("bad ThreatQ URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", rt.expose());
        self.bump(|s| s.refreshes += 1);
        let v = self.token_call(url, Some(&t.access), &json!({}), "refresh the token")?;
        self.tokens_from(&v, t.generation + 1)
    }

    pub(super) fn token_call(
        &self,
        url: Url,
        bearer: Option<&Secret>,
        body: &Value,
        what: &str,
    ) -> Result<Value, CallError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.bump(|s| s.requests += 1);
            let mut rb = self.http.post(url.clone()).json(body);
            if let Some(b) = bearer {
                rb = rb.bearer_auth(b.expose());
            }
            let sent = rb.send().and_then(|r| {
                let status = r.status();
                let hint = retry_after(r.headers().get(reqwest::header::RETRY_AFTER));
                let location = r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                // A timeout or a cut while reading the answer is a transport failure like any
                // other: retried, and reported as what it is (not as "not JSON").
                Ok((status, hint, location, r.text()?))
            });
            let (status, hint, text) = match sent {
                Ok((status, _, location, _)) if status.is_redirection() => {
                    return Err(self.redirected(what, status.as_u16(), location.as_deref()))
                }
                Ok((status, hint, _, text)) => (Some(status), hint, text),
                Err(e) => {
                    let e = e.without_url();
                    if transient(&e) && attempt < self.retry.attempts {
                        self.wait(backoff(&self.retry, attempt, None), "with transport errors")?;
                        continue;
                    }
                    return Err(CallError::Failed(format!(
                        "cannot {what} at ThreatQ {}: {}",
                        self.base,
                        self.transport_text(&e)
                    )));
                }
            };
            let status = status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match classify(status.as_u16()) {
                Verdict::Done => {
                    return serde_json::from_str(&text).map_err(|e| {
                        CallError::Failed(format!("ThreatQ token answer is not JSON: {e}"))
                    })
                }
                Verdict::Retry if attempt < self.retry.attempts => {
                    self.wait(
                        backoff(&self.retry, attempt, hint),
                        &format!("HTTP {}", status.as_u16()),
                    )?;
                }
                Verdict::Reauth | Verdict::Fail
                    if status.as_u16() == 400 || status.as_u16() == 401 =>
                {
                    let advice = if what == "log in" {
                        "login refused: check client_id, e-mail and password".to_string()
                    } else {
                        format!("refused to {what}")
                    };
                    return Err(CallError::Auth(format!(
                        "ThreatQ {}: {advice} (HTTP {} for {}, client_id {}): {}",
                        self.base,
                        status.as_u16(),
                        self.email,
                        self.client_id,
                        self.excerpt(&text)
                    )));
                }
                _ => {
                    return Err(CallError::Failed(format!(
                        "cannot {what} at ThreatQ {}: HTTP {} {}",
                        self.base,
                        status.as_u16(),
                        self.excerpt(&text)
                    )))
                }
            }
        }
    }

    pub(super) fn tokens_from(&self, v: &Value, generation: u64) -> Result<Tokens, CallError> {
        // The SDK reads the fields at the top level; accept a `data` wrapper too.
        let o = v.get("data").filter(|d| d.is_object()).unwrap_or(v);
        let access = o
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                CallError::Stop(format!(
                    "ThreatQ {} answered the login without an access_token",
                    self.base
                ))
            })?;
        let refresh = o
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(Secret::new);
        if let Ok(mut k) = self.known.lock() {
            k.push(Secret::new(access));
            k.extend(refresh.clone());
        }
        let lifetime = o
            .get("expires_in")
            .and_then(|e| {
                e.as_u64()
                    .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
            })
            .map(Duration::from_secs)
            .or(self.lifetime_override)
            .unwrap_or(Duration::from_secs(30 * 60));
        Ok(Tokens {
            access: Secret::new(access),
            refresh,
            obtained: Instant::now(),
            lifetime,
            generation,
        })
    }

    /// A usable access token; refreshes shortly before expiry (falling back to a fresh login).
    pub(super) fn bearer(&self) -> Result<(Secret, u64), CallError> {
        let mut g = self
            .tokens
            .lock()
            .map_err(|_| CallError::Failed("token lock poisoned".into()))?;
        let stale = match g.as_ref() {
            None => true,
            Some(t) => {
                let margin = (t.lifetime / 10).min(Duration::from_secs(60));
                t.obtained.elapsed() + margin >= t.lifetime
            }
        };
        if stale {
            let next = match g.as_ref() {
                Some(t) if t.refresh.is_some() => match self.refresh(t) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::info!(
                            "ThreatQ token refresh failed ({}); logging in again",
                            e.message()
                        );
                        self.login(t.generation + 1)?
                    }
                },
                Some(t) => self.login(t.generation + 1)?,
                None => self.login(1)?,
            };
            *g = Some(next);
        }
        let t = g
            .as_ref()
            .ok_or_else(|| CallError::Failed("no ThreatQ token".into()))?;
        Ok((t.access.clone(), t.generation))
    }

    /// After a 401: log in again unless another worker already did.
    pub(super) fn reauth(&self, failed_generation: u64) -> Result<(), CallError> {
        let mut g = self
            .tokens
            .lock()
            .map_err(|_| CallError::Failed("token lock poisoned".into()))?;
        if g.as_ref().map(|t| t.generation) == Some(failed_generation) {
            *g = Some(self.login(failed_generation + 1)?);
        }
        Ok(())
    }

    /// One API call with retries, Retry-After, and one re-login on 401. Returns the parsed body.
    pub(super) fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let mut attempt = 0;
        let mut reauthed = false;
        loop {
            attempt += 1;
            self.check_breaker()?;
            let (token, generation) = self.bearer()?;
            self.bump(|s| s.requests += 1);
            let mut rb = self
                .http
                .request(method.clone(), self.url(path))
                .bearer_auth(token.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let what = format!("{method} {path}");
            let resp = match rb.send() {
                Ok(r) => r,
                Err(e) => {
                    let e = e.without_url();
                    if transient(&e) && attempt < self.retry.attempts {
                        tracing::debug!("{what}: {e}; retrying");
                        self.wait(backoff(&self.retry, attempt, None), "with transport errors")?;
                        continue;
                    }
                    return Err(CallError::Failed(format!(
                        "{what} at ThreatQ {}: {} (after {attempt} attempts)",
                        self.base,
                        self.transport_text(&e)
                    )));
                }
            };
            let status = resp.status().as_u16();
            let hint = retry_after(resp.headers().get(reqwest::header::RETRY_AFTER));
            if resp.status().is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok());
                return Err(self.redirected(&what, status, location));
            }
            let text = match resp.text() {
                Ok(t) => t,
                Err(e) => {
                    let e = e.without_url();
                    if attempt < self.retry.attempts {
                        self.wait(backoff(&self.retry, attempt, None), "with transport errors")?;
                        continue;
                    }
                    return Err(CallError::Failed(format!(
                        "{what} at ThreatQ {}: reading the answer: {} (after {attempt} attempts)",
                        self.base,
                        self.transport_text(&e)
                    )));
                }
            };
            match classify(status) {
                Verdict::Done => {
                    if status == 204 || text.trim().is_empty() {
                        return Ok(Value::Null);
                    }
                    let v: Value = match serde_json::from_str(&text) {
                        Ok(v) => v,
                        Err(e) if attempt < self.retry.attempts => {
                            tracing::debug!("{what}: answer is not JSON ({e}); retrying");
                            self.wait(backoff(&self.retry, attempt, None), "with garbled answers")?;
                            continue;
                        }
                        Err(e) => {
                            return Err(CallError::Failed(format!(
                                "{what}: answer is not JSON ({e}): {}",
                                self.excerpt(&text)
                            )))
                        }
                    };
                    // The SDK treats a 2xx answer with an `errors` key as a failure (§1.1).
                    if let Some(errs) = v.get("errors") {
                        return Err(CallError::Failed(format!(
                            "{what}: ThreatQ reported errors: {}",
                            self.excerpt(&errs.to_string())
                        )));
                    }
                    return Ok(v);
                }
                Verdict::Reauth if !reauthed => {
                    tracing::info!("{what}: HTTP 401, logging in again");
                    reauthed = true;
                    attempt -= 1;
                    self.reauth(generation)?;
                }
                Verdict::Reauth => {
                    return Err(CallError::Stop(format!(
                        "{what}: ThreatQ {} still answers 401 after a fresh login; check the API user's permissions",
                        self.base
                    )))
                }
                Verdict::Retry if attempt < self.retry.attempts => {
                    tracing::debug!("{what}: HTTP {status}; retrying");
                    self.wait(backoff(&self.retry, attempt, hint), &format!("HTTP {status}"))?;
                }
                Verdict::Retry => {
                    return Err(CallError::Failed(format!(
                        "{what}: HTTP {status} after {attempt} attempts: {}",
                        self.excerpt(&text)
                    )))
                }
                Verdict::Fail => {
                    let advice = if status == 413 {
                        " (lower sinks.threatq.batch_size)"
                    } else {
                        ""
                    };
                    return Err(CallError::Failed(format!(
                        "{what}: HTTP {status}{advice}: {}",
                        self.excerpt(&text)
                    )));
                }
            }
        }
    }
}
