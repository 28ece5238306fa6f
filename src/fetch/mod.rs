//! fetch: the DMZ side. The only module that talks HTTP to upstream. Per source: cool-down and
//! `min_interval` checks, change detection (version.txt → .md5 → conditional GET → GET), the
//! verification gate, then a signed bundle (or heartbeat) via `bundle::publish`.

pub mod config;
mod cooldown;
pub mod gate;
pub mod http;
pub mod redirect;
pub mod report;
pub mod state;

use std::path::Path;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::bundle::{self, Manifest, SigningKey, SourceInfo, Upstream};
use crate::catalog::Plan;
use crate::secret::{redact, SafeUrl, Secret};
use config::{FetchConfig, Source};
use cooldown::CoolDown;
use gate::{GateError, PublishedMd5};
use http::{Conditional, Http, HttpError, Kind};
pub use report::{RunReport, SourceReport, Status};
use state::{FileState, SourceState, StateDir};

/// Options of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Ignore `min_interval`.
    pub now: bool,
}

/// Run every source once. Takes the run lock (exit 75 when held), loads the signing key, and
/// returns the report (already written to the state dir). A failing source does not stop the others.
pub fn run(cfg: &FetchConfig, opts: RunOptions) -> anyhow::Result<RunReport> {
    let state = StateDir::new(&cfg.state);
    let _lock = crate::fsutil::RunLock::acquire(&state.lock_path())?;
    let key = cfg.load_signing_key()?;
    let secrets: Vec<Secret> = cfg.all_secrets().into_iter().cloned().collect();
    // Archive bodies are spooled beside the state, not in a possibly small /tmp.
    let http = Http::new(&cfg.http, secrets.clone())?.with_temp_dir(&cfg.state);
    let started_at = Utc::now();
    let mut sources = Vec::new();
    for src in &cfg.sources {
        let before = (http.downloaded(), http.archive_downloaded());
        http.set_redirect_policy(src.redirects.clone());
        let ctx = Ctx {
            cfg,
            http: &http,
            key: Some(&key),
            state: &state,
            now: Utc::now(),
            opts,
        };
        let mut rep = ctx.source(src);
        rep.downloaded_bytes = http.downloaded() - before.0;
        rep.archive_bytes = http.archive_downloaded() - before.1;
        let secret_refs: Vec<&Secret> = secrets.iter().collect();
        if let Some(r) = &rep.reason {
            rep.reason = Some(redact(r, &secret_refs));
        }
        match rep.status {
            Status::Failed => tracing::error!(
                "{}: {}",
                rep.source,
                rep.reason.as_deref().unwrap_or("failed")
            ),
            _ => tracing::info!("{}: {:?}", rep.source, rep.status),
        }
        sources.push(rep);
    }
    let report = RunReport::new(started_at, Utc::now(), &cfg.path, sources);
    report.write(&cfg.state)?;
    Ok(report)
}

/// One source's run: change detection, download and gate (shared with `sync`), then publishing.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a FetchConfig,
    pub http: &'a Http,
    /// `None` for a `sync` without `publish:`: nothing is signed.
    pub key: Option<&'a SigningKey>,
    pub state: &'a StateDir,
    pub now: DateTime<Utc>,
    pub opts: RunOptions,
}

/// A source-level failure with its message (secrets are masked before it reaches the report).
pub(crate) struct Fail(pub String);

impl From<HttpError> for Fail {
    fn from(e: HttpError) -> Self {
        Fail(e.message)
    }
}

impl From<anyhow::Error> for Fail {
    fn from(e: anyhow::Error) -> Self {
        Fail(format!("{e:#}"))
    }
}

/// The result of change detection and download. `st` is the source's state as it should be
/// saved once the download has been dealt with (published, or stored by `sync`).
pub(crate) enum Fetched {
    Unchanged {
        st: SourceState,
    },
    New {
        st: SourceState,
        payload: Vec<(String, Vec<u8>)>,
        upstream: Upstream,
    },
}

impl Ctx<'_> {
    fn source(&self, src: &Source) -> SourceReport {
        let mut rep = SourceReport::new(&src.name);
        let fetched = match self.download(src, &mut rep) {
            Some(f) => f,
            None => return rep,
        };
        match self.publish(src, fetched, &mut rep) {
            Ok(()) => rep,
            Err(Fail(msg)) => rep.failed(msg),
        }
    }

    /// Cool-down and `min_interval` checks, change detection, download and the verification
    /// gate. `None` when the source is skipped, cooling down or failed (`rep` says which).
    pub(crate) fn download(&self, src: &Source, rep: &mut SourceReport) -> Option<Fetched> {
        let st = match self.state.load(&src.name) {
            Ok(st) => st,
            Err(e) => {
                *rep = rep.clone().failed(format!("{e:#}"));
                return None;
            }
        };
        let st = match self.cool_down(src, st) {
            Ok(st) => st,
            Err(CoolDown::Active { until, reason }) => {
                rep.status = Status::CoolingDown;
                rep.reason = Some(format!(
                    "upstream asked us to wait ({reason}); cooling down until {} (--now overrides it)",
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ));
                return None;
            }
            Err(CoolDown::Unsaved(msg)) => {
                *rep = rep.clone().failed(msg);
                return None;
            }
        };
        if !self.opts.now {
            if let Some(last) = st.last_check {
                let next = last
                    + chrono::Duration::from_std(self.cfg.min_interval)
                        .unwrap_or(chrono::Duration::zero());
                if next > self.now {
                    rep.status = Status::Skipped;
                    rep.reason = Some(format!(
                        "checked at {} (min_interval {}); next check after {} or with --now",
                        last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        humantime::format_duration(self.cfg.min_interval),
                        next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ));
                    return None;
                }
            }
        }
        let fetched = match &src.plan {
            Plan::Archive {
                url,
                checksum_url,
                version_url,
                engine_versioned,
            } => self.fetch_archive(
                src,
                st.clone(),
                url,
                checksum_url.as_ref(),
                version_url.as_ref(),
                *engine_versioned,
            ),
            Plan::Files(files) => self.fetch_files(src, st.clone(), files),
        };
        match fetched {
            Ok(f) => Some(f),
            Err(Fail(msg)) => {
                *rep = rep.clone().failed(msg);
                None
            }
        }
    }

    fn get(&self, src: &Source, url: &SafeUrl, cond: &Conditional) -> Result<http::Response, Fail> {
        self.http
            .get(url, cond, Kind::Archive)
            .map_err(|e| self.http_fail(src, e))
    }

    /// A GET whose 404 means "not published" (version.txt, .md5). Both are one short text line:
    /// a binary body is refused here, before any archive is downloaded.
    fn get_optional(&self, src: &Source, url: &SafeUrl) -> Result<Option<http::Response>, Fail> {
        match self.http.get(url, &Conditional::default(), Kind::Meta) {
            Ok(r) if r.body.contains(&0) || std::str::from_utf8(&r.body).is_err() => {
                Err(Fail(format!(
                    "{url}: the body ({} bytes) is binary, not a version.txt or .md5 line; nothing was published",
                    r.body.len()
                )))
            }
            Ok(r) => Ok(Some(r)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(self.http_fail(src, e)),
        }
    }

    fn fetch_archive(
        &self,
        src: &Source,
        mut st: SourceState,
        url: &SafeUrl,
        checksum_url: Option<&SafeUrl>,
        version_url: Option<&SafeUrl>,
        engine_versioned: bool,
    ) -> Result<Fetched, Fail> {
        let file = payload_name(url)?;
        let have_bundle = st.last_sequence > 0 && st.md5.is_some();

        let version = match version_url {
            Some(u) => self.get_optional(src, u)?.map(|r| {
                String::from_utf8_lossy(&r.body)
                    .trim()
                    .chars()
                    .take(64)
                    .collect::<String>()
            }),
            None => None,
        };
        if have_bundle && version.is_some() && version == st.version {
            return Ok(Fetched::Unchanged { st });
        }

        let mut published = self.published_md5(src, checksum_url)?;
        if let PublishedMd5::Hex(h) = &published {
            if have_bundle && st.md5.as_deref() == Some(h.as_str()) {
                st.version = version;
                return Ok(Fetched::Unchanged { st });
            }
        }
        // Validators only when no checksum tells us more: a changed .md5 means download.
        let prev = st.files.get(&file).cloned().unwrap_or_default();
        let cond = if have_bundle && matches!(published, PublishedMd5::None) {
            Conditional {
                etag: prev.etag.clone(),
                last_modified: prev.last_modified.clone(),
            }
        } else {
            Conditional::default()
        };

        // One total_timeout for every download of this archive, md5-mismatch retries included.
        let deadline = self.http.deadline();
        let mut attempt = 0;
        loop {
            let mut r = match self.http.download(url, &cond, deadline) {
                Ok(r) => r,
                Err(e) if e.is_not_found() && engine_versioned => {
                    return Err(Fail(format!(
                        "{}; engine version {} is not published upstream for {} (check the engine in the config against the flavours ET publishes)",
                        e.message,
                        src.engine.as_deref().unwrap_or("?"),
                        src.ruleset
                    )))
                }
                Err(e)
                    if src.ruleset == "et-pro"
                        && matches!(e.failure, http::Failure::Status { code: 401 | 403, retry_after: None }) =>
                {
                    return Err(Fail(format!(
                        "{}; ET Pro refused the oinkcode (check oinkcode_file / oinkcode_env and the subscription)",
                        e.message
                    )))
                }
                Err(e) => return Err(self.http_fail(src, e)),
            };
            if r.not_modified() {
                st.version = version;
                return Ok(Fetched::Unchanged { st });
            }
            // Size and md5 first, from the spooled copy: a wrong body is never read into memory.
            let body = match r.spooled.as_mut() {
                Some(sp) => gate::check_digest(sp.len, &sp.md5, r.content_length, &published)
                    .and_then(|()| {
                        sp.read_all().map_err(|e| {
                            GateError::Content(format!("cannot read back the download: {e}"))
                        })
                    }),
                None => Ok(std::mem::take(&mut r.body)),
            };
            let checked = body.and_then(|body| {
                gate::check_archive(&file, &body, r.content_length, &published).map(|p| (p, body))
            });
            match checked {
                Ok((passed, body)) => {
                    let upstream = Upstream {
                        version: version.clone(),
                        md5_published: match &published {
                            PublishedMd5::Hex(h) => Some(h.clone()),
                            _ => None,
                        },
                        md5_matched: passed.md5_matched,
                        etag: r.etag.clone(),
                        last_modified: r.last_modified.clone(),
                        final_url: r.final_url.clone(),
                    };
                    st.version = version;
                    st.md5 = Some(passed.md5);
                    st.files.insert(
                        file.clone(),
                        FileState {
                            etag: r.etag,
                            last_modified: r.last_modified,
                            sha256: Some(hex::encode(Sha256::digest(&body))),
                        },
                    );
                    return Ok(Fetched::New {
                        st,
                        payload: vec![(file, body)],
                        upstream,
                    });
                }
                Err(e @ (GateError::Md5Mismatch { .. } | GateError::Size { .. }))
                    if attempt < self.http.retries()
                        && std::time::Instant::now() + self.http.backoff(attempt + 1)
                            < deadline =>
                {
                    attempt += 1;
                    let d = self.http.backoff(attempt);
                    tracing::warn!(
                        "{}: {url}: {e}; download {} of {} in {d:?}",
                        src.name,
                        attempt + 1,
                        self.http.retries() + 1
                    );
                    std::thread::sleep(d);
                    // The archive may have been replaced between the two downloads.
                    published = self.published_md5(src, checksum_url)?;
                }
                Err(e) => {
                    let tries = if attempt > 0 {
                        format!(" (after {} downloads)", attempt + 1)
                    } else {
                        String::new()
                    };
                    // reqwest here does not decode Content-Encoding: the md5 is of the bytes as
                    // sent, and a mirror that gzips the .tar.gz again explains a mismatch.
                    let encoding = match (&e, r.content_encoding.as_deref()) {
                        (GateError::Md5Mismatch { .. }, Some(enc))
                            if !enc.eq_ignore_ascii_case("identity") =>
                        {
                            format!(
                                " (the server sent Content-Encoding: {enc}; the body was kept as sent, not decoded)"
                            )
                        }
                        _ => String::new(),
                    };
                    return Err(Fail(format!(
                        "{url}: verification failed{tries}: {e}{encoding}; nothing was published"
                    )));
                }
            }
        }
    }

    fn published_md5(
        &self,
        src: &Source,
        checksum_url: Option<&SafeUrl>,
    ) -> Result<PublishedMd5, Fail> {
        Ok(match checksum_url {
            Some(u) => match self.get_optional(src, u)? {
                Some(r) => gate::published_md5(&r.body),
                None => PublishedMd5::None,
            },
            None => PublishedMd5::None,
        })
    }

    fn fetch_files(
        &self,
        src: &Source,
        mut st: SourceState,
        files: &[(String, SafeUrl)],
    ) -> Result<Fetched, Fail> {
        let have_bundle = st.last_sequence > 0 && !st.files.is_empty();
        let mut got: Vec<(String, Option<http::Response>)> = Vec::new();
        let mut changed = false;
        for (rel, url) in files {
            let prev = st.files.get(rel).cloned().unwrap_or_default();
            let cond = if have_bundle {
                Conditional {
                    etag: prev.etag.clone(),
                    last_modified: prev.last_modified.clone(),
                }
            } else {
                Conditional::default()
            };
            let r = self.get(src, url, &cond)?;
            if r.not_modified() {
                got.push((rel.clone(), None));
                continue;
            }
            let sha = hex::encode(Sha256::digest(&r.body));
            if prev.sha256.as_deref() != Some(sha.as_str()) || !have_bundle {
                changed = true;
            }
            got.push((rel.clone(), Some(r)));
        }
        if !changed && have_bundle {
            return Ok(Fetched::Unchanged { st });
        }
        let mut payload = Vec::new();
        for ((rel, r), (_, url)) in got.into_iter().zip(files) {
            // A file that was not modified must still travel in full: each bundle is complete.
            let r = match r {
                Some(r) => r,
                None => self.get(src, url, &Conditional::default())?,
            };
            gate::check_plain(&rel, &r.body, r.content_length).map_err(|e| {
                Fail(format!(
                    "{url}: verification failed: {e}; nothing was published"
                ))
            })?;
            st.files.insert(
                rel.clone(),
                FileState {
                    etag: r.etag,
                    last_modified: r.last_modified,
                    sha256: Some(hex::encode(Sha256::digest(&r.body))),
                },
            );
            payload.push((rel, r.body));
        }
        Ok(Fetched::New {
            st,
            payload,
            upstream: Upstream::default(),
        })
    }

    /// Publish a bundle (or a heartbeat when upstream is unchanged and heartbeats are on) and
    /// save the source's state. With heartbeats off, an unchanged source only has its state saved.
    pub(crate) fn publish(
        &self,
        src: &Source,
        fetched: Fetched,
        rep: &mut SourceReport,
    ) -> Result<(), Fail> {
        let (mut st, payload, upstream, heartbeat) = match fetched {
            Fetched::Unchanged { mut st } => {
                st.last_check = Some(self.now);
                if !self.cfg.heartbeat || self.key.is_none() {
                    self.state.save(&src.name, &st)?;
                    rep.status = Status::Unchanged;
                    return Ok(());
                }
                let upstream = Upstream {
                    version: st.version.clone(),
                    md5_published: None,
                    md5_matched: None,
                    etag: None,
                    last_modified: None,
                    final_url: None,
                };
                (st, Vec::new(), upstream, true)
            }
            Fetched::New {
                st,
                payload,
                upstream,
            } => (st, payload, upstream, false),
        };
        // Reserve the sequence before publishing: a failed publish skips it (and says so) rather
        // than ever handing the same number to two different bundles.
        let seq = self.next_sequence(src, &st)?;
        let mut reserved = self.state.load(&src.name)?;
        reserved.last_sequence = seq;
        self.state.save(&src.name, &reserved)?;

        let unchanged_since = heartbeat.then(|| st.last_changed.unwrap_or(self.now));
        let bytes: u64 = payload.iter().map(|(_, b)| b.len() as u64).sum();
        let dir = self.sign_and_publish(src, seq, upstream, unchanged_since, &payload)?;
        st.last_sequence = seq;
        st.last_check = Some(self.now);
        st.cool_down_until = None;
        st.cool_down_reason = None;
        if !heartbeat {
            st.last_changed = Some(self.now);
        }
        self.state.save(&src.name, &st)?;
        rep.status = if heartbeat {
            Status::Heartbeat
        } else {
            Status::New
        };
        rep.bundle = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        rep.sequence = Some(seq);
        rep.files = payload.len();
        rep.bytes = bytes;
        Ok(())
    }

    /// The next sequence of `src`: past both the state and the spool (a lost state file must
    /// never hand out a number a published bundle already has).
    pub(crate) fn next_sequence(&self, src: &Source, st: &SourceState) -> Result<u64, Fail> {
        let spool_max = if self.key.is_some() {
            bundle::list_bundles(&self.cfg.spool, &src.name)?
                .last()
                .map(|(s, _)| *s)
                .unwrap_or(0)
        } else {
            0
        };
        Ok(st.last_sequence.max(spool_max) + 1)
    }

    /// Sign and publish bundle `seq` of `src` into the spool, then apply the retention. A
    /// heartbeat has `unchanged_since` and no payload.
    pub(crate) fn sign_and_publish(
        &self,
        src: &Source,
        seq: u64,
        upstream: Upstream,
        unchanged_since: Option<DateTime<Utc>>,
        payload: &[(String, Vec<u8>)],
    ) -> Result<std::path::PathBuf, Fail> {
        let Some(key) = self.key else {
            return Err(Fail("no signing key: nothing can be published".into()));
        };
        let info = SourceInfo {
            name: src.name.clone(),
            ruleset: src.ruleset.clone(),
            engine: src.engine.clone(),
            url: shown_url(src),
        };
        let mut manifest = Manifest::new(info, seq, self.now, self.cfg.bundle_lifetime);
        manifest.upstream = upstream;
        manifest.unchanged_since = unchanged_since;
        let dir = bundle::publish(&self.cfg.spool, manifest, payload, key).map_err(|e| {
            Fail(format!(
                "cannot publish bundle {}: {e:#}; sequence {seq} is skipped, earlier bundles are untouched",
                bundle::bundle_id(&src.name, seq)
            ))
        })?;
        if let Err(e) = bundle::prune(&self.cfg.spool, &src.name, self.cfg.keep_bundles) {
            tracing::warn!("{}: retention: {e:#}", src.name);
        }
        Ok(dir)
    }
}

/// The source's upstream URL as manifests and reports show it (oinkcode redacted).
pub fn shown_url(src: &Source) -> String {
    match &src.plan {
        Plan::Archive { url, .. } => url.shown().to_string(),
        Plan::Files(files) => files
            .first()
            .map(|(rel, u)| u.shown().trim_end_matches(rel.as_str()).to_string())
            .unwrap_or_default(),
    }
}

/// The payload file name: the last path segment of the URL, without a query.
fn payload_name(url: &SafeUrl) -> Result<String, Fail> {
    let no_query = url.expose().split(['?', '#']).next().unwrap_or("");
    let name = no_query.rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == "." || name == ".." || name.starts_with("manifest.json") {
        return Err(Fail(format!("{url}: the URL does not end in a file name")));
    }
    Ok(name.to_string())
}

/// Convenience for the CLI: load the config at `path` and run.
pub fn run_config(path: &Path, opts: RunOptions) -> anyhow::Result<RunReport> {
    let cfg = FetchConfig::load(path)?;
    run(&cfg, opts)
}
