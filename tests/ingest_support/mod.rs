//! Shared helpers for the ingest tests: a temp spool with a fresh signing key per test, a
//! watch.yaml, signed bundles built with the bundle module, and the binary.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use etferry::bundle::{self, Manifest, SigningKey, SourceInfo};

#[path = "../corpus_support/mod.rs"]
pub mod corpus_support;

/// A file or folder of the real ET corpus (tests/corpus, unpacked on demand).
pub fn corpus(rel: &str) -> PathBuf {
    corpus_support::root().join(rel)
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub key: SigningKey,
    pub config: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        Env::with_config("")
    }

    /// A spool and a watch.yaml; `extra` is appended to the config (YAML lines).
    pub fn with_config(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (skp, _pkp) = bundle::keygen(&dir.path().join("keys"), None).unwrap();
        let key = SigningKey::load(&skp, None).unwrap();
        for d in ["spool/inbox", "spool/outbox", "config"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let config = dir.path().join("config/watch.yaml");
        let mut text = String::from(
            "inbox: ../spool/inbox\nwork: ../spool/work\ndone: ../spool/done\nfailed: ../spool/failed\n\
             store: ../spool/etferry.db\ntrusted_keys: [../keys/bundle.pub]\n",
        );
        if !extra.contains("rescan_interval:") {
            text.push_str("rescan_interval: 200ms\n");
        }
        if !extra.contains("debounce:") {
            text.push_str("debounce: 300ms\n");
        }
        text.push_str(extra);
        std::fs::write(&config, text).unwrap();
        Env { dir, key, config }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn inbox(&self) -> PathBuf {
        self.path("spool/inbox")
    }

    pub fn store_path(&self) -> PathBuf {
        self.path("spool/etferry.db")
    }

    /// Publish a signed bundle into `spool_dir` (the outbox unless given).
    pub fn bundle_in(
        &self,
        spool_dir: &Path,
        source: &str,
        ruleset: &str,
        seq: u64,
        files: &[(String, Vec<u8>)],
    ) -> PathBuf {
        let m = Manifest::new(
            SourceInfo {
                name: source.into(),
                ruleset: ruleset.into(),
                engine: Some("suricata-5.0".into()),
                url: "https://rules.emergingthreats.net/open/suricata-5.0/emerging.rules.tar.gz"
                    .into(),
            },
            seq,
            Utc::now(),
            std::time::Duration::from_secs(14 * 86400),
        );
        bundle::publish(spool_dir, m, files, &self.key).unwrap()
    }

    /// A signed et-open bundle of source `src` in the outbox.
    pub fn bundle(&self, src: &str, seq: u64, files: &[(String, Vec<u8>)]) -> PathBuf {
        self.bundle_in(&self.path("spool/outbox"), src, "et-open", seq, files)
    }

    /// Run the binary with this env's config.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_etferry"));
        c.arg("-c").arg(&self.config).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        Output {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn ingest(&self, bundle: &Path) -> Output {
        self.run(&["ingest", bundle.to_str().unwrap()])
    }

    /// `status --json` parsed.
    pub fn status(&self) -> serde_json::Value {
        let o = self.run(&["status", "--json"]);
        assert_eq!(o.code, Some(0), "{o:?}");
        serde_json::from_str(&o.stdout).unwrap()
    }

    /// The status entry of one source.
    pub fn source_status(&self, name: &str) -> serde_json::Value {
        self.status()["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// A canonical dump of the store's rules, history, indicators and sources (for equality).
    pub fn dump(&self) -> Vec<String> {
        let c = rusqlite::Connection::open(self.store_path()).unwrap();
        let mut out = Vec::new();
        for q in [
            "SELECT source, gid, sid, rev, text_hash, enabled, removed, file, bundle FROM rules ORDER BY 1,2,3",
            "SELECT source, gid, sid, bundle, change, rev, enabled FROM rule_history ORDER BY 1,2,3,4,5",
            "SELECT source, value, kind, section FROM indicators ORDER BY 1,2,4",
            "SELECT name, last_sequence, last_bundle FROM sources ORDER BY 1",
            "SELECT id, stage, status FROM bundles ORDER BY 1",
        ] {
            let mut st = c.prepare(q).unwrap();
            let n = st.column_count();
            let rows = st
                .query_map([], |r| {
                    let mut v = Vec::new();
                    for i in 0..n {
                        let x: rusqlite::types::Value = r.get(i)?;
                        v.push(format!("{x:?}"));
                    }
                    Ok(v.join("|"))
                })
                .unwrap();
            for r in rows {
                out.push(r.unwrap());
            }
        }
        out
    }
}

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Read a corpus file.
pub fn read(rel: &str) -> Vec<u8> {
    std::fs::read(corpus(rel)).unwrap()
}

/// A tar.gz of every file under `dir` (paths `rules/<name>`), fast compression.
pub fn targz_of_dir(dir: &Path) -> Vec<u8> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let entries: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| {
            (
                format!("rules/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    targz(&entries)
}

/// A tar.gz holding regular files.
pub fn targz(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// Write raw bytes as a tar header + data with an arbitrary (possibly unsafe) name and type.
pub fn raw_tar_entry(
    out: &mut Vec<u8>,
    name: &str,
    kind: tar::EntryType,
    link: Option<&str>,
    data: &[u8],
) {
    let mut h = tar::Header::new_old();
    {
        let bytes = h.as_old_mut();
        bytes.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            bytes.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// Finish a raw tar (two zero blocks) and gzip it.
pub fn gzip_tar(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend(std::iter::repeat_n(0u8, 1024));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// A small valid rules file with `n` enabled rules starting at `sid`.
pub fn small_rules(sid: u32, n: u32) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "alert tcp any any -> any any (msg:\"ET TEST rule {i}\"; content:\"x{i}\"; classtype:misc-activity; sid:{}; rev:1;)\n",
            sid + i
        ));
    }
    s.into_bytes()
}

/// Copy a directory tree (a courier carrying a bundle).
pub fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dest.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

/// Wait until `cond` holds, up to `secs` seconds.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cond()
}

/// `etferry watch` as a child process; killed on drop if still running.
pub struct Watch {
    pub child: std::process::Child,
}

impl Watch {
    pub fn start(env: &Env, vars: &[(&str, &str)]) -> Watch {
        let mut c = Command::new(env!("CARGO_BIN_EXE_etferry"));
        c.arg("-c").arg(&env.config).arg("watch");
        for (k, v) in vars {
            c.env(k, v);
        }
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        Watch {
            child: c.spawn().unwrap(),
        }
    }

    /// SIGTERM, then the exit code and output.
    pub fn terminate(mut self) -> Output {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let o = child.wait_with_output().unwrap();
        Output {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
