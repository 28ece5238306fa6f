//! Test support for `etferry sync`: one temp site (etferry.yaml, password file, state) wired to
//! the ET-like server of `fetch_support` and the ThreatQ simulator of `threatq_sim`. The test
//! crate declares `mod fetch_support; mod threatq_sim; mod sync_support;`.
#![allow(dead_code)]

use std::path::PathBuf;

use crate::fetch_support::{self, Run, Server, SURI};
use crate::threatq_sim::{Sim, CLIENT_ID, EMAIL, PASSWORD};

pub const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/et-open-sample/rules"
);
pub const SURI_SOURCE: &str = "et-open-suricata-5.0";
pub const SNORT_SOURCE: &str = "et-open-snort-2.9.0";

pub struct SyncSite {
    pub dir: tempfile::TempDir,
    pub srv: Server,
    pub sim: Sim,
}

impl SyncSite {
    /// A site whose upstream serves `archive` as the Suricata 5.0 ET Open archive (with its
    /// .md5, without version.txt) and whose etferry.yaml has that one source.
    pub fn with_archive(archive: Vec<u8>, extra: &str) -> SyncSite {
        let site = SyncSite::bare();
        site.serve(fetch_support::SURI, archive);
        site.write_config(&site.source("suricata-5.0"), extra);
        site
    }

    /// Server and simulator started, nothing written.
    pub fn bare() -> SyncSite {
        let srv = Server::start();
        // The .md5 is what tells a change here; version.txt would hide the tests' edits.
        srv.remove("/open/suricata-5.0/version.txt");
        srv.remove("/open/snort-2.9.0/version.txt");
        SyncSite {
            dir: tempfile::tempdir().unwrap(),
            srv,
            sim: Sim::start(),
        }
    }

    /// Serve `archive` (and its md5) at `path` of the ET-like server.
    pub fn serve(&self, path: &str, archive: Vec<u8>) {
        self.srv.put_archive(path, archive);
    }

    /// An et-open source of `engine` on the ET-like server, as a `sources:` entry.
    pub fn source(&self, engine: &str) -> String {
        format!(
            "  - {{ruleset: et-open, engine: {engine}, base_url: \"{}\"}}\n",
            self.srv.base
        )
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The config directory (`-c DIR` finds etferry.yaml there).
    pub fn conf(&self) -> PathBuf {
        self.path("conf")
    }

    pub fn state(&self) -> PathBuf {
        self.path("state")
    }

    pub fn store(&self) -> PathBuf {
        self.path("state/etferry.db")
    }

    /// Write conf/etferry.yaml (fast timeouts and retries) and conf/threatq.pass.
    pub fn write_config(&self, sources: &str, extra: &str) {
        std::fs::create_dir_all(self.conf()).unwrap();
        let text = format!(
            "state: ../state\nstore: ../state/etferry.db\nmin_interval: 15m\n\
             http: {{connect_timeout: 2s, read_timeout: 2s, total_timeout: 20s, retries: 1, \
             backoff_base: 10ms, backoff_max: 50ms}}\n{extra}sources:\n{sources}\
             sinks:\n  threatq:\n    host: {}\n    client_id: {CLIENT_ID}\n    email: {EMAIL}\n    \
             password_file: threatq.pass\n    batch_size: 500\n    concurrency: 2\n    \
             batch_pause: 0s\n    batch_pause_max: 0s\n    timeout: 2s\n    \
             retry: {{attempts: 2, base: 10ms, max_delay: 50ms}}\n",
            self.sim.url
        );
        std::fs::write(self.conf().join("etferry.yaml"), text).unwrap();
        std::fs::write(self.conf().join("threatq.pass"), PASSWORD).unwrap();
        #[cfg(unix)]
        for f in ["etferry.yaml", "threatq.pass"] {
            use std::os::unix::fs::PermissionsExt;
            let p = self.conf().join(f);
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    /// `etferry sync -c conf/ ARGS`.
    pub fn sync(&self, args: &[&str]) -> Run {
        self.sync_env(args, &[])
    }

    pub fn sync_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let conf = self.conf();
        let mut all = vec!["sync", "-c", conf.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut c = fetch_support::command(&all);
        for (k, v) in env {
            c.env(k, v);
        }
        Run(c.output().unwrap())
    }

    /// Another command on the sync config (`status`, `report`, `rules`, `export`).
    pub fn run(&self, args: &[&str]) -> Run {
        let conf = self.conf();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-c", conf.to_str().unwrap()]);
        Run(fetch_support::etferry(&all))
    }

    /// `status --json`, the entry of one source.
    pub fn source_status(&self, name: &str) -> serde_json::Value {
        let o = self.run(&["status", "--json"]);
        assert_eq!(o.code(), 0, "{}", o.all());
        let v: serde_json::Value = serde_json::from_str(&o.stdout()).unwrap();
        v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// Signatures in the simulator by status.
    pub fn sim_counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for s in self.sim.signatures() {
            *m.entry(s.status).or_insert(0) += 1;
        }
        m
    }

    /// What the simulator holds, canonical: value, status and sorted attributes per signature.
    pub fn sim_dump(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .sim
            .signatures()
            .iter()
            .map(|s| {
                let mut a: Vec<String> = s
                    .attributes
                    .iter()
                    .map(|a| format!("{}={}", a.name, a.value))
                    .collect();
                a.sort();
                format!("{}|{}|{}|{}", s.name, s.status, s.value, a.join(","))
            })
            .collect();
        v.sort();
        v
    }

    /// A canonical dump of the store (rules, history, indicators, sources, bundles, provenance).
    pub fn dump(&self) -> Vec<String> {
        let c = rusqlite::Connection::open(self.store()).unwrap();
        let mut out = Vec::new();
        for q in [
            "SELECT source, gid, sid, rev, text_hash, enabled, removed, file, bundle FROM rules ORDER BY 1,2,3",
            "SELECT source, gid, sid, bundle, change, rev, enabled FROM rule_history ORDER BY 1,2,3,4,5",
            "SELECT source, value, kind, section FROM indicators ORDER BY 1,2,4",
            "SELECT name, last_sequence, last_bundle FROM sources ORDER BY 1",
            "SELECT id, stage, status FROM bundles ORDER BY 1",
            // The server's port differs from site to site: only the path of the URL is compared.
            "SELECT source, bundle, md5, substr(url, instr(substr(url, 8), '/') + 7) FROM downloads ORDER BY 1, 2",
            "SELECT sink, source, gid, sid, rev, text_hash, enabled, removed, status, last_error FROM exports ORDER BY 1,2,3,4",
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

/// The fixture sample's rules files as `(rules/<name>, bytes)`, sorted by name.
pub fn sample_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(SAMPLE)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            (
                format!("rules/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read(p).unwrap(),
            )
        })
        .collect()
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

/// `sid:N;` of a rule line.
pub fn sid_of(line: &str) -> u32 {
    line.split("sid:")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Path of the Suricata archive on the server (re-exported for tests).
pub const SURI_PATH: &str = SURI;
