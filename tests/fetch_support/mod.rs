//! Test support for `etferry fetch`: a local ET-like HTTP server on 127.0.0.1 built from
//! `tests/corpus`, with fault switches and a request log; a tiny forward proxy; helpers to run
//! the binary.
#![allow(dead_code)]

mod proxy;
mod server;
pub mod tls;

// Each test crate uses some of these, never all.
#[allow(unused_imports)]
pub use proxy::Proxy;
#[allow(unused_imports)]
pub use server::{md5_hex, Fault, Logged, Server};

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Test crates include several support modules, each with its own copy of this one.
#[allow(clippy::duplicate_mod)]
#[path = "../corpus_support/mod.rs"]
pub mod corpus_support;

/// Where the server keeps the ET downloads the tests use.
pub const SURI: &str = "/open/suricata-5.0/emerging.rules.tar.gz";
pub const SNORT: &str = "/open/snort-2.9.0/emerging.rules.tar.gz";
pub const PRO: &str = "/0123456789abcdef0123/snort-2.9.0/etpro.rules.tar.gz";
pub const OINKCODE: &str = "0123456789abcdef0123";

/// A file or folder of the real ET corpus (tests/corpus, unpacked on demand).
pub fn corpus_path(rel: &str) -> PathBuf {
    corpus_support::root().join(rel)
}

pub fn corpus(rel: &str) -> Vec<u8> {
    std::fs::read(corpus_path(rel)).unwrap()
}

/// A temp site: keys, config, spool, state.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let out = etferry(&[
            "keygen",
            "--out",
            dir.path().join("keys").to_str().unwrap(),
            "--unencrypted",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Site { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn spool(&self) -> PathBuf {
        self.path("spool")
    }

    pub fn state(&self) -> PathBuf {
        self.path("state")
    }

    pub fn pubkey(&self) -> PathBuf {
        self.path("keys/bundle.pub")
    }

    /// Write `fetch.yaml` with fast timeouts, given the `sources:` block and extra `http:` lines.
    pub fn config(&self, sources: &str, http_extra: &str) -> PathBuf {
        let text = format!(
            "spool: spool\nstate: state\nsigning_key: keys/bundle.key\nbundle_lifetime: 14d\n\
             keep_bundles: 30\nmin_interval: 15m\nheartbeat: true\nhttp:\n  connect_timeout: 2s\n  \
             read_timeout: 2s\n  total_timeout: 20s\n  retries: 2\n  backoff_base: 10ms\n  \
             backoff_max: 50ms\n{http_extra}sources:\n{sources}"
        );
        let p = self.path("fetch.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Standard sources against `srv`.
    pub fn standard(&self, srv: &Server) -> PathBuf {
        self.config(&standard_sources(srv), "")
    }

    /// `etferry fetch -c fetch.yaml --now`.
    pub fn fetch(&self) -> Run {
        Run(etferry(&[
            "fetch",
            "-c",
            self.path("fetch.yaml").to_str().unwrap(),
            "--now",
        ]))
    }

    /// Published bundle directory names, sorted.
    pub fn bundles(&self) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(self.spool()) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => vec![],
        };
        v.sort();
        v
    }

    pub fn last_report(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.state().join("last-run.json")).unwrap()).unwrap()
    }

    /// Bundles verify with `etferry verify` (exit 0).
    pub fn verify_all(&self) {
        let names = self.bundles();
        let mut args = vec![
            "verify".to_string(),
            "--key".into(),
            self.pubkey().to_string_lossy().into_owned(),
        ];
        args.extend(
            names
                .iter()
                .map(|n| self.spool().join(n).to_string_lossy().into_owned()),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = etferry(&refs);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Snapshot of every file under the spool (path → bytes), to prove earlier bundles are intact.
    pub fn spool_snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut v = Vec::new();
        if self.spool().exists() {
            for e in walkdir::WalkDir::new(self.spool()) {
                let e = e.unwrap();
                if e.file_type().is_file() {
                    v.push((
                        e.path()
                            .strip_prefix(self.spool())
                            .unwrap()
                            .display()
                            .to_string(),
                        std::fs::read(e.path()).unwrap(),
                    ));
                }
            }
        }
        v.sort();
        v
    }
}

pub fn standard_sources(srv: &Server) -> String {
    format!(
        "  - ruleset: et-open\n    engine: suricata-5.0\n    base_url: {b}\n  \
         - ruleset: et-open\n    engine: snort-2.9.0\n    base_url: {b}\n  \
         - ruleset: et-blockrules\n    base_url: {b}\n",
        b = srv.base
    )
}

/// Output of one run, with helpers.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout(), self.stderr())
    }
}

/// Run the etferry binary with no proxy settings from the environment.
pub fn etferry(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etferry"));
    c.args(args);
    for v in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "ETFERRY_LOG",
    ] {
        c.env_remove(v);
    }
    c
}

/// A small real tar.gz: the first `n` rule files of the 2024 Suricata 5.0 corpus (an "upstream
/// change" with real content).
pub fn small_archive(n: usize) -> Vec<u8> {
    let dir = corpus_path("et-open-suricata-5.0-2024-04-21/rules");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rules"))
        .collect();
    names.sort();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for name in names.iter().take(n) {
        tar.append_path_with_name(dir.join(name), format!("rules/{name}"))
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}
