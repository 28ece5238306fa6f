//! `etferry watch`: notify events plus a periodic rescan of the inbox (removable and network
//! mounts may send no events). A bundle is taken only when its manifest and signature exist and
//! every listed file has its listed size, unchanged for the debounce time. A bare archive file
//! (`.tar.gz`, `.tgz`, `.zip`, `.rules`) is taken once its size, time and `.md5` held still for
//! the debounce time. A symbolic link in the inbox is never followed: it is refused once (exit 4
//! in the log) and left where it is; anything refused and left in the inbox is not taken again
//! until it changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::config::WatchConfig;
use super::pipeline::{is_bare_archive, md5_beside, Ingestor, Options, Outcome};
use crate::bundle::{Manifest, MANIFEST, SIGNATURE};
use crate::exit::{exit_for, Exit};

/// Test hook: set to disable filesystem events, so only the periodic rescan finds bundles.
pub const NO_NOTIFY_ENV: &str = "ETFERRY_TEST_NO_NOTIFY";

/// What a bundle directory looked like at the last scan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<(String, u64)>);

struct Candidate {
    fp: Fingerprint,
    since: Instant,
}

/// Is `dir` a complete bundle? Returns what it looks like (to see it hold still) or `None`.
fn fingerprint(dir: &Path, require_signature: bool) -> Option<Fingerprint> {
    if let Some(fp) = link_fingerprint(dir) {
        return Some(fp);
    }
    let mbytes = crate::fsutil::read_medium(dir, MANIFEST, crate::bundle::MANIFEST_CAP).ok()?;
    let sig = std::fs::metadata(dir.join(SIGNATURE)).ok();
    if require_signature && sig.is_none() {
        return None;
    }
    let mut fp = vec![
        (MANIFEST.to_string(), mbytes.len() as u64),
        (SIGNATURE.to_string(), sig.map(|s| s.len()).unwrap_or(0)),
    ];
    // A manifest still being copied does not parse yet; one that stays unparsable for the
    // debounce time is taken anyway, so that it is rejected with a reason instead of lingering.
    let Ok(m) = serde_json::from_slice::<Manifest>(&mbytes) else {
        return Some(Fingerprint(fp));
    };
    for f in &m.files {
        let len = std::fs::metadata(dir.join(&f.path)).ok()?.len();
        if len != f.size {
            return None;
        }
        fp.push((f.path.clone(), len));
    }
    Some(Fingerprint(fp))
}

/// A symbolic link looks like its own metadata, never like what it points to.
fn link_fingerprint(p: &Path) -> Option<Fingerprint> {
    let m = std::fs::symlink_metadata(p).ok()?;
    if !m.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(p).unwrap_or_default();
    Some(Fingerprint(vec![(
        format!("link:{}", target.display()),
        m.len(),
    )]))
}

/// Bundle directories in the inbox (hidden names are temp dirs of a copy in progress), and
/// links that are not bare archive names (they are refused, not followed).
fn inbox_dirs(inbox: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(inbox) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| match e.file_type() {
                Ok(t) if t.is_dir() => true,
                Ok(t) if t.is_symlink() => {
                    let n = e.file_name().to_string_lossy().to_ascii_lowercase();
                    !is_bare_archive(&e.path()) && !n.ends_with(".md5")
                }
                _ => false,
            })
            .map(|e| e.path())
            .collect(),
        Err(e) => {
            tracing::warn!("cannot read inbox {}: {e}", crate::safe_name::path(inbox));
            Vec::new()
        }
    };
    // Sequence order within a source: ids end in the 8-digit sequence.
    v.sort();
    v
}

/// Bare archive files in the inbox (`.tar.gz`, `.tgz`, `.zip`, `.rules`; hidden names skipped).
fn inbox_archives(inbox: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(inbox) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_type()
                    .map(|t| t.is_file() || t.is_symlink())
                    .unwrap_or(false)
            })
            .map(|e| e.path())
            .filter(|p| is_bare_archive(p))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// A dropped file (and its `.md5`) as it looks now: a copy still running changes size or time.
fn file_fingerprint(p: &Path) -> Option<Fingerprint> {
    let mut fp = Vec::new();
    for (i, f) in [p.to_path_buf(), md5_beside(p)].iter().enumerate() {
        // Links are described by themselves, not by their targets.
        match std::fs::symlink_metadata(f) {
            Ok(m) => {
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                fp.push((format!("{i}:{t}"), m.len()));
            }
            Err(_) if i == 1 => {}
            Err(_) => return None,
        }
    }
    Some(Fingerprint(fp))
}

/// Run until `stop` is set (SIGTERM / SIGINT). Returns `Ok` then.
pub fn watch(cfg: WatchConfig, stop: Arc<AtomicBool>) -> anyhow::Result<Exit> {
    if std::fs::symlink_metadata(&cfg.inbox).is_ok_and(|m| !m.is_dir()) && !cfg.inbox.is_dir() {
        return Err(crate::exit::usage(format!(
            "inbox {} is not a directory",
            crate::safe_name::path(&cfg.inbox)
        )));
    }
    std::fs::create_dir_all(&cfg.inbox).map_err(|e| {
        crate::exit::usage(format!(
            "inbox {}: cannot create the directory: {e}",
            crate::safe_name::path(&cfg.inbox)
        ))
    })?;
    let (tx, rx) = mpsc::channel::<()>();
    let _watcher = if std::env::var_os(NO_NOTIFY_ENV).is_some() {
        None
    } else {
        use notify::Watcher;
        let tx = tx.clone();
        match notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
            let _ = tx.send(());
        }) {
            Ok(mut w) => match w.watch(&cfg.inbox, notify::RecursiveMode::Recursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!(
                        "no filesystem events for {} ({e}); relying on the rescan every {}",
                        cfg.inbox.display(),
                        cfg.rescan_interval
                    );
                    None
                }
            },
            Err(e) => {
                tracing::warn!("no filesystem events ({e}); relying on the rescan");
                None
            }
        }
    };
    eprintln!(
        "etferry watch: watching {} (rescan every {}, debounce {})",
        cfg.inbox.display(),
        cfg.rescan_interval,
        cfg.debounce
    );
    let rescan = cfg.rescan_interval.get();
    let debounce = cfg.debounce.get();
    let tick = Duration::from_millis(100);
    let mut candidates: HashMap<PathBuf, Candidate> = HashMap::new();
    // Entries processed and still in the inbox (refused links, bundles left for the operator):
    // not taken again until they change. A local fault is retried after the rescan interval.
    let mut left: HashMap<PathBuf, (Fingerprint, Option<Instant>)> = HashMap::new();
    let mut next_scan = Instant::now();
    let mut dirty = true;
    while !stop.load(Ordering::SeqCst) {
        match rx.recv_timeout(tick) {
            Ok(()) => {
                dirty = true;
                while rx.try_recv().is_ok() {}
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        let now = Instant::now();
        let waiting = candidates
            .values()
            .any(|c| now.duration_since(c.since) >= debounce);
        if !(dirty || waiting || now >= next_scan) {
            continue;
        }
        if now >= next_scan {
            next_scan = now + rescan;
        }
        dirty = false;
        let dirs = inbox_dirs(&cfg.inbox);
        let files = inbox_archives(&cfg.inbox);
        candidates.retain(|p, _| dirs.contains(p) || files.contains(p));
        left.retain(|p, _| dirs.contains(p) || files.contains(p));
        let mut ready = Vec::new();
        let seen: Vec<(PathBuf, Option<Fingerprint>)> = dirs
            .into_iter()
            .map(|d| {
                let fp = fingerprint(&d, cfg.require_signature);
                (d, fp)
            })
            .chain(files.into_iter().map(|f| {
                let fp = file_fingerprint(&f);
                (f, fp)
            }))
            .collect();
        for (d, fp) in seen {
            if let (Some(fp), Some((was, until))) = (&fp, left.get(&d)) {
                if fp == was && until.is_none_or(|t| now < t) {
                    continue;
                }
                left.remove(&d);
            }
            match fp {
                None => {
                    candidates.remove(&d);
                }
                Some(fp) => {
                    let c = candidates.entry(d.clone()).or_insert(Candidate {
                        fp: fp.clone(),
                        since: now,
                    });
                    if c.fp != fp {
                        c.fp = fp;
                        c.since = now;
                    } else if now.duration_since(c.since) >= debounce {
                        ready.push(d);
                    }
                }
            }
        }
        if ready.is_empty() {
            continue;
        }
        let mut ing = match Ingestor::open(cfg.clone()) {
            Ok(i) => i,
            Err(e) if exit_for(&e) == Exit::Locked => {
                tracing::info!("{e:#}; retrying");
                continue;
            }
            Err(e) => return Err(e),
        };
        // SIGTERM reaches the pipeline between stages.
        ing.set_stop_flag(stop.clone());
        for d in ready {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let opts = Options {
                remove_source: true,
                ..Options::default()
            };
            let res = ing.process(&d, opts);
            let was = candidates.remove(&d).map(|c| c.fp);
            let retry = match &res {
                Ok(_) => None,
                Err(_) => Some(Instant::now() + rescan),
            };
            if let Some(fp) = was {
                if std::fs::symlink_metadata(&d).is_ok() {
                    left.insert(d.clone(), (fp, retry));
                }
            }
            match res {
                Ok(o) => {
                    crate::cmd::ingest::print_outcome(&o);
                    if matches!(o, Outcome::Abandoned) {
                        left.remove(&d);
                        break;
                    }
                }
                Err(e) => eprintln!(
                    "etferry watch: {}: {}",
                    crate::safe_name::path(&d),
                    crate::safe_name::escape(&format!("{e:#}"))
                ),
            }
        }
    }
    eprintln!("etferry watch: stopping");
    Ok(Exit::Ok)
}
