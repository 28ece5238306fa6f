//! One attempt of a request: redirects followed hop by hop under the source's policy, the body
//! read under its per-kind cap and the run's deadline, into memory or a hashed temp file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

use md5::{Digest, Md5};
use reqwest::header::{HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH};
use sha2::Sha256;

use super::{file_label, parse_retry_after, status_failure, Failure, Http, Kind, META_MAX};
use crate::fetch::redirect;
use crate::secret::{redact, SafeUrl, Secret};

/// The error for a body over its cap.
fn over_cap(kind: Kind, cap: u64, n: u64, verb: &str) -> String {
    let (what, key) = match kind {
        Kind::Meta => ("a version.txt or .md5", "a fixed limit"),
        Kind::Archive => ("a download", "http.max_download_size"),
    };
    format!(
        "the server {verb} a body of {n} bytes, more than the {cap} bytes allowed for {what} ({key}); nothing is published"
    )
}

/// A successful (2xx) or 304 response, body read completely (in memory, or spooled to a temp file
/// by [`Http::download`]).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The body when it was read into memory (empty when spooled).
    pub body: Vec<u8>,
    /// The body when it was spooled to a temp file.
    pub spooled: Option<Spooled>,
    pub content_length: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// `Content-Encoding` as sent; the body is kept exactly as received (no decoding).
    pub content_encoding: Option<String>,
    /// The URL the body came from (secrets masked), when a redirect was followed.
    pub final_url: Option<String>,
}

impl Response {
    pub fn not_modified(&self) -> bool {
        self.status == 304
    }
}

/// A body written to an unnamed temp file as it arrived, hashed on the way, so that memory stays
/// flat whatever the server sends.
#[derive(Debug)]
pub struct Spooled {
    file: std::fs::File,
    pub len: u64,
    /// Lowercase hex md5 and sha256 of the body.
    pub md5: String,
    pub sha256: String,
}

impl Spooled {
    /// The whole body, read back from the temp file.
    pub fn read_all(&mut self) -> std::io::Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(0))?;
        let mut v = Vec::with_capacity(self.len.min(1 << 30) as usize);
        (&self.file).take(self.len).read_to_end(&mut v)?;
        Ok(v)
    }
}

/// Where a body goes while it is read.
enum Sink {
    Memory(Vec<u8>),
    // Boxed: the hashers' state is large, and a sink lives once per request.
    File(Box<FileSink>),
}

struct FileSink {
    out: std::io::BufWriter<std::fs::File>,
    md5: Md5,
    sha: Sha256,
}

impl Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Memory(v) => v.extend_from_slice(b),
            Sink::File(f) => {
                f.out.write_all(b)?;
                f.md5.update(b);
                f.sha.update(b);
            }
        }
        Ok(())
    }
}

/// Validators for a conditional GET.
#[derive(Debug, Clone, Default)]
pub struct Conditional {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Conditional {
    fn any(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }
}

/// Largest announced archive kept in memory instead of a temp file.
const IN_MEMORY_MAX: u64 = 16 << 20;

impl Http {
    /// Send a request built by `build` for each URL, following redirects that [`redirect::check`]
    /// allows. Returns the answer and, when a redirect was followed, the final URL.
    pub(super) fn send(
        &self,
        url: &SafeUrl,
        deadline: Instant,
        build: impl Fn(&str) -> reqwest::blocking::RequestBuilder,
    ) -> Result<(reqwest::blocking::Response, Option<reqwest::Url>), (Failure, String)> {
        let start = reqwest::Url::parse(url.expose())
            .map_err(|e| (Failure::Other, format!("invalid URL: {e}")))?;
        let secrets: Vec<&Secret> = self.secrets.iter().collect();
        let mut cur = start.clone();
        for _ in 0..=redirect::MAX_HOPS {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err((Failure::Timeout, self.total_spent(0)));
            }
            let resp = build(cur.as_str())
                .timeout(self.cfg.read_timeout.get().min(left))
                .send()
                .map_err(|e| self.classify(&e))?;
            if !resp.status().is_redirection() || resp.status().as_u16() == 304 {
                let moved = (cur != start).then_some(cur);
                return Ok((resp, moved));
            }
            let code = resp.status().as_u16();
            let Some(loc) = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Err((
                    Failure::Other,
                    format!("HTTP {code} redirect without a Location"),
                ));
            };
            let next = cur.join(loc).map_err(|e| {
                (
                    Failure::Other,
                    format!(
                        "HTTP {code} redirect to an invalid Location {:?}: {e}",
                        redact(loc, &secrets)
                    ),
                )
            })?;
            redirect::check(&start, &cur, &next, &self.policy.borrow(), &secrets)
                .map_err(|m| (Failure::Other, format!("HTTP {code}: {m}")))?;
            cur = next;
        }
        Err((
            Failure::Other,
            format!(
                "more than {} redirects (a loop?); last Location {}",
                redirect::MAX_HOPS,
                redact(cur.as_str(), &secrets)
            ),
        ))
    }

    fn total_spent(&self, received: u64) -> String {
        format!(
            "download took longer than total_timeout {} ({received} bytes received)",
            humantime::format_duration(self.cfg.total_timeout.get())
        )
    }

    pub(super) fn probe_once(
        &self,
        url: &SafeUrl,
        deadline: Instant,
    ) -> Result<(u16, Option<u64>), (Failure, String)> {
        let (resp, _) = self.send(url, deadline, |u| self.client.head(u))?;
        let resp = match resp.status().as_u16() {
            405 | 501 => {
                self.send(url, deadline, |u| {
                    self.client
                        .get(u)
                        .header(reqwest::header::RANGE, "bytes=0-0")
                })?
                .0
            }
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

    /// The largest body accepted for `kind`.
    pub fn cap(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Meta => META_MAX,
            Kind::Archive => self.cfg.max_download_size.0,
        }
    }

    pub(super) fn get_once(
        &self,
        url: &SafeUrl,
        cond: &Conditional,
        kind: Kind,
        deadline: Instant,
        spool: bool,
    ) -> Result<Response, (Failure, String)> {
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
        let (mut resp, moved) = self.send(url, deadline, |u| {
            self.client.get(u).headers(headers.clone())
        })?;
        let secrets: Vec<&Secret> = self.secrets.iter().collect();
        let final_url = moved.map(|u| redact(u.as_str(), &secrets));
        let status = resp.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let content_encoding = header(reqwest::header::CONTENT_ENCODING);
        let retry_after = header(reqwest::header::RETRY_AFTER).and_then(|v| parse_retry_after(&v));
        let content_length = resp.content_length();
        if status == 304 {
            if !cond.any() {
                // Nothing was asked to be compared: "unchanged" since what? A first download
                // must never turn into a heartbeat.
                return Err((
                    Failure::Other,
                    "HTTP 304 Not Modified to a request that sent no validators (If-None-Match / If-Modified-Since); refusing to read it as \"unchanged\"".into(),
                ));
            }
            return Ok(Response {
                status,
                body: Vec::new(),
                spooled: None,
                content_length,
                etag,
                last_modified,
                content_encoding,
                final_url,
            });
        }
        if !(200..300).contains(&status) {
            return Err(status_failure(&resp, retry_after));
        }
        let cap = self.cap(kind);
        if let Some(n) = content_length.filter(|n| *n > cap) {
            return Err((Failure::Other, over_cap(kind, cap, n, "announces")));
        }
        let bar = match kind {
            Kind::Archive => crate::progress::bytes(content_length, file_label(url)),
            Kind::Meta => crate::progress::hidden(),
        };
        // A small announced body stays in memory (hyper stops at Content-Length); an unknown or
        // large one goes to disk so that memory stays flat whatever the server sends.
        let spool = spool && content_length.is_none_or(|n| n > IN_MEMORY_MAX);
        let mut sink = if spool {
            let f = match &self.temp_dir {
                Some(d) => tempfile::tempfile_in(d),
                None => tempfile::tempfile(),
            }
            .map_err(|e| (Failure::Other, format!("cannot create a temp file: {e}")))?;
            Sink::File(Box::new(FileSink {
                out: std::io::BufWriter::with_capacity(1 << 20, f),
                md5: Md5::new(),
                sha: Sha256::new(),
            }))
        } else {
            Sink::Memory(Vec::with_capacity(
                content_length.unwrap_or(0).min(64 << 20) as usize,
            ))
        };
        let mut received: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if Instant::now() > deadline {
                return Err((Failure::Timeout, self.total_spent(received)));
            }
            match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.downloaded.set(self.downloaded.get() + n as u64);
                    if kind == Kind::Archive {
                        self.archive.set(self.archive.get() + n as u64);
                    }
                    received += n as u64;
                    if received > cap {
                        return Err((Failure::Other, over_cap(kind, cap, received, "sent")));
                    }
                    sink.write(&buf[..n]).map_err(|e| {
                        (Failure::Other, format!("cannot write the temp file: {e}"))
                    })?;
                    bar.inc(n as u64);
                }
                Err(e) => {
                    let timed_out = e.kind() == std::io::ErrorKind::TimedOut
                        || self.chain_text(&e).contains("timed out");
                    let (f, what) = if timed_out && Instant::now() >= deadline {
                        return Err((Failure::Timeout, self.total_spent(received)));
                    } else if timed_out {
                        (Failure::Timeout, "no data within read_timeout")
                    } else {
                        (Failure::Body, "connection broke mid-body")
                    };
                    return Err((
                        f,
                        format!("{what} after {received} bytes: {}", self.chain_text(&e)),
                    ));
                }
            }
        }
        let (body, spooled) = match sink {
            Sink::Memory(v) => (v, None),
            Sink::File(f) => {
                let FileSink { out, md5, sha } = *f;
                let file = out
                    .into_inner()
                    .map_err(|e| (Failure::Other, format!("cannot write the temp file: {e}")))?;
                let s = Spooled {
                    file,
                    len: received,
                    md5: hex::encode(md5.finalize()),
                    sha256: hex::encode(sha.finalize()),
                };
                (Vec::new(), Some(s))
            }
        };
        Ok(Response {
            status,
            body,
            spooled,
            content_length,
            etag,
            last_modified,
            content_encoding,
            final_url,
        })
    }
}
