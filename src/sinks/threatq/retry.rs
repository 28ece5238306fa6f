//! The retry policy: which answers are retried, after how long (one function, table-tested).

use std::time::Duration;

use rand::Rng;

use super::config::RetryConfig;

/// What to do with an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// Transient: wait and send again.
    Retry,
    /// Token rejected: log in again once, then send again.
    Reauth,
    /// Will not get better by repeating (validation, permission, not found, too large).
    Fail,
}

/// The retry policy by status code. 429 and 5xx are transient (no limits are documented, §1.7);
/// 408 is a proxy's timeout. Repeating a consume is safe because ThreatQ upserts by value.
pub fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Done,
        401 => Verdict::Reauth,
        408 | 429 | 500 | 502 | 503 | 504 => Verdict::Retry,
        _ => Verdict::Fail,
    }
}

/// Transport errors worth a retry: timeouts, refused or dropped connections, a cut-off answer.
pub(super) fn transient(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode()
}

pub(super) fn retry_after(h: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let s = h?.to_str().ok()?.trim();
    // Digits too large for u64 mean "very long" (capped by max_delay), not "no hint".
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Some(s.parse().map(Duration::from_secs).unwrap_or(Duration::MAX));
    }
    let when = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

pub(super) fn backoff(retry: &RetryConfig, attempt: u32, hint: Option<Duration>) -> Duration {
    let cap = retry.max_delay.get();
    if let Some(h) = hint {
        return h.min(cap);
    }
    let exp = retry
        .base
        .get()
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let jitter = rand::thread_rng().gen_range(0.5..=1.0);
    exp.mul_f64(jitter).min(cap)
}
