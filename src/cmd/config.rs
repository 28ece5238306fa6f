//! `etferry config check [FILE] [--online]`: validate a fetch.yaml or watch.yaml with the same
//! loaders the commands use, so a config that passes here is one the service will accept. With
//! `--online` it also talks to what the config points at, through the same client code the
//! commands use: a ThreatQ login and one authenticated read per sink, and a HEAD of each
//! source's `.md5` (never the archive itself).

use std::path::{Path, PathBuf};

use crate::cli::Global;
use crate::exit::{exit_for, usage, Exit};
use crate::fetch::config::{FetchConfig, Source};
use crate::fetch::http::{Failure, Http, Kind};
use crate::ingest::WatchConfig;
use crate::secret::{SafeUrl, Secret};
use crate::sinks::threatq::ThreatQSink;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do: `check`
    #[arg(value_parser = ["check"])]
    pub action: String,
    /// Config file (default: -c, else $ETFERRY_CONFIG, ./config or /etc/etferry: its fetch.yaml, watch.yaml and etferry.yaml)
    pub file: Option<PathBuf>,
    /// Also test the connections: ThreatQ login (watch.yaml), upstream URLs (fetch.yaml), both
    /// (etferry.yaml)
    #[arg(long)]
    pub online: bool,
}

/// Which role a config file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Fetch,
    Watch,
    /// etferry.yaml of `sync`: both parts.
    Sync,
}

fn role_of(path: &Path) -> anyhow::Result<Role> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.contains("fetch") {
        return Ok(Role::Fetch);
    }
    if name.contains("watch") {
        return Ok(Role::Watch);
    }
    if crate::sync::config::is_sync_config(path) {
        return Ok(Role::Sync);
    }
    // Otherwise look at the keys: only fetch.yaml has `sources`, only watch.yaml has `inbox`.
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read config {}: {e}", path.display())))?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| usage(format!("config {}: {e}", path.display())))?;
    if v.get("sources").is_some() {
        Ok(Role::Fetch)
    } else if v.get("inbox").is_some() {
        Ok(Role::Watch)
    } else {
        Err(usage(format!(
            "config {}: cannot tell whether it is a fetch.yaml (has `sources`) or a watch.yaml (has `inbox`)",
            path.display()
        )))
    }
}

/// The offline check; with `online`, then the connection checks. An offline problem is an `Err`;
/// online failures are printed (naming the file and the source or sink) and give the exit code.
fn check(path: &Path, online: bool) -> anyhow::Result<Exit> {
    match role_of(path)? {
        // FetchConfig::load warns about a world-readable file itself.
        Role::Fetch => {
            let cfg = FetchConfig::load(path)?;
            // What `fetch` loads before its first download.
            cfg.load_signing_key()?;
            println!(
                "{}: OK (fetch.yaml, {} source(s))",
                path.display(),
                cfg.sources.len()
            );
            if online {
                return online_fetch(path, &cfg);
            }
        }
        Role::Watch => {
            crate::config::warn_if_world_readable(path);
            let cfg = WatchConfig::load(path)?;
            // What `ingest`, `watch` and `export` load before the first bundle.
            cfg.check_files()?;
            let sinks = cfg.sinks.names();
            println!(
                "{}: OK (watch.yaml, rulesets {}, sinks: {})",
                path.display(),
                cfg.rulesets.join(", "),
                if sinks.is_empty() {
                    "store only".to_string()
                } else {
                    sinks.join(", ")
                }
            );
            if online {
                return Ok(online_watch(path, &cfg));
            }
        }
        // SyncConfig::load warns about a world-readable file itself.
        Role::Sync => {
            let cfg = crate::sync::SyncConfig::load(path)?;
            let sinks = cfg.watch.sinks.names();
            println!(
                "{}: OK (etferry.yaml, {} source(s), sinks: {}{})",
                path.display(),
                cfg.fetch.sources.len(),
                if sinks.is_empty() {
                    "store only".to_string()
                } else {
                    sinks.join(", ")
                },
                if cfg.publish {
                    ", publishes signed bundles"
                } else {
                    ""
                }
            );
            if online {
                // The upstream URLs as fetch.yaml's check does, then the ThreatQ login.
                let up = online_fetch(path, &cfg.fetch)?;
                return Ok(up.worst(online_watch(path, &cfg.watch)));
            }
        }
    }
    Ok(Exit::Ok)
}

/// Log in to each configured sink and read what the sink reads at start (signature types and
/// statuses). Refused credentials or a missing type or status exit 2, as `ingest` and `watch`
/// stop on them; an unreachable ThreatQ exits 3, as `ingest` does when its changes stay pending.
fn online_watch(path: &Path, cfg: &WatchConfig) -> Exit {
    let Some(tq) = &cfg.sinks.threatq else {
        println!("  no sink configured (store only): nothing to check online");
        return Exit::Ok;
    };
    let mut tq = tq.clone();
    // One try per request: a check reports what it sees now instead of backing off for minutes.
    tq.retry.attempts = 1;
    let policy = cfg.export_policy();
    let statuses = policy.statuses_in_use();
    let connected = ThreatQSink::connect(&tq, Path::new(".")).and_then(|sink| {
        sink.require_statuses(&statuses)?;
        Ok(sink)
    });
    match connected {
        Ok(sink) => {
            let quoted = |v: &[&str]| {
                v.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join("/")
            };
            println!(
                "  threatq {}: login OK (client_id {}, {}), signature type {} found, status {} found",
                sink.host(),
                tq.client_id,
                tq.email,
                quoted(&sink.signature_types()),
                quoted(&statuses)
            );
            for n in sink.notes() {
                println!("  note: {n}");
            }
            Exit::Ok
        }
        Err(e) => {
            eprintln!("{}: sinks.threatq ({}): {e:#}", path.display(), tq.host);
            match exit_for(&e) {
                Exit::Usage => Exit::Usage,
                _ => Exit::Partial,
            }
        }
    }
}

/// The URLs a check of `src` asks for: the `.md5` of the archive (or the archive itself when no
/// checksum is published), each file of a multi-file source.
fn probe_urls(src: &Source) -> Vec<(&SafeUrl, Option<&SafeUrl>)> {
    match &src.plan {
        crate::catalog::Plan::Archive {
            url,
            checksum_url: Some(md5),
            ..
        } => vec![(md5, Some(url))],
        crate::catalog::Plan::Archive { url, .. } => vec![(url, None)],
        crate::catalog::Plan::Files(files) => files.iter().map(|(_, u)| (u, None)).collect(),
    }
}

/// HEAD (or a one-byte GET) of each source's `.md5` through the fetch client, with the config's
/// proxy and CA bundle. Never downloads an archive. A failure exits 1, as `fetch` does.
fn online_fetch(path: &Path, cfg: &FetchConfig) -> anyhow::Result<Exit> {
    let mut http_cfg = cfg.http.clone();
    // One try per URL (see online_watch).
    http_cfg.retries = 0;
    let secrets: Vec<Secret> = cfg.all_secrets().into_iter().cloned().collect();
    let http = Http::new(&http_cfg, secrets)?;
    let size = |n: Option<u64>| n.map(|n| format!(", {n} bytes")).unwrap_or_default();
    let mut exit = Exit::Ok;
    for src in &cfg.sources {
        http.set_redirect_policy(src.redirects.clone());
        for (url, archive) in probe_urls(src) {
            let err = match http.probe(url) {
                Ok((status, n)) => {
                    // The same caps as fetch: an announced size over them fails there, so here.
                    let kind = if archive.is_some() {
                        Kind::Meta
                    } else {
                        Kind::Archive
                    };
                    match n.filter(|n| *n > http.cap(kind)) {
                        Some(n) => {
                            eprintln!(
                                "{}: source {}: {url}: HTTP {status} announces {n} bytes, more than the {} allowed for {}; fetch would refuse it",
                                path.display(),
                                src.name,
                                http.cap(kind),
                                if kind == Kind::Meta { "a .md5" } else { "a download (http.max_download_size)" }
                            );
                            exit = exit.worst(Exit::Error);
                        }
                        None => println!("  {} {url}: HTTP {status}{}", src.name, size(n)),
                    }
                    continue;
                }
                Err(e) => e,
            };
            // No `.md5` is allowed (fetch then goes without one) as long as the archive is there.
            if let (Some(archive), true) = (archive, err.is_not_found()) {
                if let Ok((status, n)) = http.probe(archive) {
                    println!(
                        "  {} {url}: not published (HTTP 404); {archive}: HTTP {status}{} (fetch will go without an md5)",
                        src.name,
                        size(n)
                    );
                    continue;
                }
            }
            let advice = match &err.failure {
                Failure::Status { code: 404 | 410, .. } if src.engine.is_some() => format!(
                    "; is engine {} published for {}? (check the engine and base_url)",
                    src.engine.as_deref().unwrap_or("?"),
                    src.ruleset
                ),
                Failure::Status { code: 401 | 403, .. } if src.ruleset == "et-pro" => {
                    "; ET Pro refused the oinkcode (check oinkcode_file / oinkcode_env and the subscription)"
                        .to_string()
                }
                Failure::Connect => "; connection failed (check the host, http.proxy, the firewall)".into(),
                Failure::Timeout => "; timed out (http.connect_timeout / read_timeout)".into(),
                _ => String::new(),
            };
            eprintln!(
                "{}: source {}: {}{advice}",
                path.display(),
                src.name,
                err.message
            );
            exit = exit.worst(Exit::Error);
        }
    }
    Ok(exit)
}

/// Check one file, or both default configs.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    // Absolute once, so relative paths inside resolve the same way the commands resolve them.
    let c = crate::config::config_arg(g.config.as_deref());
    let files: Vec<PathBuf> = match args.file {
        Some(f) => vec![f],
        None => {
            let named_file = c.is_file()
                || matches!(c.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
            if named_file {
                vec![c.clone()]
            } else {
                // A directory (or where one should be): the role files it holds.
                ["fetch.yaml", "watch.yaml", "etferry.yaml"]
                    .iter()
                    .map(|n| c.join(n))
                    .filter(|p| p.exists())
                    .collect()
            }
        }
    };
    let files: Vec<PathBuf> = files.iter().map(|f| crate::config::absolute(f)).collect();
    if files.is_empty() {
        return Err(usage(format!(
            "no fetch.yaml, watch.yaml or etferry.yaml in {}; give one: etferry config check FILE",
            c.display()
        )));
    }
    let mut exit = Exit::Ok;
    for f in &files {
        if !f.exists() {
            return Err(usage(format!("config file {} not found", f.display())));
        }
        match check(f, args.online) {
            Ok(e) => exit = exit.worst(e),
            Err(e) => {
                // Most messages name the file already; say where only when they do not.
                let msg = format!("{e:#}");
                if msg.contains(&f.display().to_string()) {
                    eprintln!("{msg}");
                } else {
                    eprintln!("{}: {msg}", f.display());
                }
                exit = exit.worst(exit_for(&e));
            }
        }
    }
    Ok(exit)
}
