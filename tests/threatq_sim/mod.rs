//! A ThreatQ API simulator for tests: a real HTTP server on 127.0.0.1 (tiny_http) that implements
//! the calls of the ThreatQ API reference (docs/threatq.md summarises it) the sink uses, records every request, and
//! injects faults on demand. Not part of the product binary. `server` is the HTTP side (auth,
//! tokens, faults, routes), `consume` what the upserts do to the simulated instance.
//!
//! Assumptions it encodes (as the reference does): `/consume` upserts keyed on a hash of the value
//! (or, switchable, on the name, to act like an instance that updates in place), attributes are
//! multi-valued, every answer is wrapped in `data`, and every call needs a valid bearer token.
//!
//! Related objects (docs/threatq.md, "Indicators and relations"): `POST /api/indicators/consume`
//! upserts indicators keyed on (type, value) with `type` and `status` by name; a signature's inline
//! `indicators: [{value, type}]` links (or creates) indicators; `POST /api/malware/consume`
//! upserts malware by value; `GET /api/attack_pattern?value=` looks attack patterns up (only the
//! test adds them, as ThreatQ's MITRE feed would); inline `malware` / `attack_pattern` relations
//! are `[{"id"}]` of existing objects, else the item is rejected. `/api/connectors`: look-up by
//! name, `is_active` in whatever form the test stored, `PUT /api/connectors/{id}` that takes
//! `last_import_at` (`YYYY-MM-DD HH:MM:SS`) and `last_import_count`.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tiny_http::{Header, Response, Server};

mod consume;
pub mod corpus;
mod server;

pub const EMAIL: &str = "etferry@example.org";
pub const PASSWORD: &str = "s3cret-Pa55word!";
pub const CLIENT_ID: &str = "4c0a5f1e2d";

/// A fault applied to the next `/api/signatures/consume` request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and Retry-After seconds) without storing anything.
    Status { code: u16, retry_after: Option<u64> },
    /// Store, but answer only after this delay.
    Slow(Duration),
    /// Store, then break the connection with a garbled answer (the client cannot know the
    /// outcome).
    Drop,
    /// 200 with an `errors` key, nothing stored.
    ErrorsKey,
    /// Every access token expires just before this request (401 mid-run).
    ExpireTokens,
    /// Answer with this redirect status and `Location`, nothing stored.
    Redirect(u16, String),
}

/// A fault applied to the next `POST /api/token`.
#[derive(Debug, Clone)]
pub enum TokenFault {
    /// Answer with this redirect status and `Location` (a ThreatQ, or a proxy, pointing away).
    Redirect(u16, String),
    /// 200 with a JSON answer that holds no access token.
    NoToken,
    /// The normal answer, but its body stalls after a few bytes for this long.
    Stall(Duration),
}

/// How `/consume` finds an existing signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBy {
    /// Hash of the value (the reference's assumption): a new rev is a new signature.
    ValueHash,
    /// The name (an instance that updates in place): exercises stale-attribute removal.
    Name,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub expires_in: Option<u64>,
    pub indicator_types: Vec<&'static str>,
    pub types: Vec<&'static str>,
    pub statuses: Vec<&'static str>,
    /// `GET /api/signature/statuses` exists; else only `/api/objects` lists them.
    pub statuses_endpoint: bool,
    pub key_by: KeyBy,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            expires_in: Some(1800),
            indicator_types: vec![
                "CIDR Block",
                "Email Address",
                "FQDN",
                "IP Address",
                "MD5",
                "URL",
            ],
            types: vec![
                "Bro",
                "Custom",
                "Cybox",
                "OpenIOC",
                "Regex",
                "Snort",
                "STIX Indicator Pattern",
                "YARA",
            ],
            statuses: vec![
                "Active",
                "Expired",
                "Inactive",
                "Non-malicious",
                "Review",
                "Whitelisted",
            ],
            statuses_endpoint: true,
            key_by: KeyBy::ValueHash,
        }
    }
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    /// Signatures in a consume body.
    pub items: usize,
    pub status: u16,
}

#[derive(Debug, Clone)]
pub struct Attr {
    pub id: u64,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct Sig {
    pub id: u64,
    pub name: String,
    pub value: String,
    pub type_id: u64,
    pub status: String,
    pub sources: Vec<Value>,
    pub published_at: Option<String>,
    pub attributes: Vec<Attr>,
    /// How many consume entries touched it.
    pub writes: u32,
    /// Related indicator values, malware ids and attack pattern ids.
    pub indicators: Vec<String>,
    pub malware: Vec<u64>,
    pub attack_patterns: Vec<u64>,
}

/// An indicator (`/api/indicators/consume`, or created by a signature's inline relation).
#[derive(Debug, Clone)]
pub struct Ind {
    pub id: u64,
    pub value: String,
    pub kind: String,
    /// Empty while only a signature's relation created it.
    pub status: String,
    pub sources: Vec<Value>,
    pub attributes: Vec<Attr>,
    pub writes: u32,
}

impl Ind {
    pub fn attr(&self, name: &str) -> Vec<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name == name)
            .map(|a| a.value.as_str())
            .collect()
    }
}

/// A malware or attack pattern object.
#[derive(Debug, Clone)]
pub struct Obj {
    pub id: u64,
    pub value: String,
}

impl Sig {
    pub fn attr(&self, name: &str) -> Vec<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name == name)
            .map(|a| a.value.as_str())
            .collect()
    }
}

#[derive(Default)]
struct State {
    cfg: Option<SimConfig>,
    tokens: HashMap<String, Instant>,
    refresh: HashSet<String>,
    sigs: Vec<Sig>,
    index: HashMap<String, usize>,
    log: Vec<Recorded>,
    faults: VecDeque<Fault>,
    /// Values containing `sid:N;` for these SIDs get a per-item error.
    reject_sids: HashSet<u32>,
    /// Every consume answers 500 while set.
    down: bool,
    /// Password logins fail (the account was changed on the server).
    refuse_logins: bool,
    token_faults: VecDeque<TokenFault>,
    /// Every call but `/api/token` answers 401, fresh token or not.
    refuse_tokens: bool,
    next_id: u64,
    inds: Vec<Ind>,
    malware: Vec<Obj>,
    attack_patterns: Vec<Obj>,
    connectors: Vec<Value>,
    connector_puts: Vec<Value>,
}

pub struct Sim {
    pub url: String,
    state: Arc<Mutex<State>>,
    server: Arc<Server>,
    threads: Vec<JoinHandle<()>>,
}

static TOKEN_SEQ: AtomicU64 = AtomicU64::new(1);

impl Sim {
    pub fn start() -> Sim {
        Sim::with(SimConfig::default())
    }

    pub fn with(cfg: SimConfig) -> Sim {
        let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let state = Arc::new(Mutex::new(State {
            cfg: Some(cfg),
            next_id: 1,
            ..State::default()
        }));
        let threads = (0..4)
            .map(|_| {
                let server = server.clone();
                let state = state.clone();
                std::thread::spawn(move || {
                    while let Ok(req) = server.recv() {
                        server::handle(&state, req);
                    }
                })
            })
            .collect();
        Sim {
            url,
            state,
            server,
            threads,
        }
    }

    pub fn push_fault(&self, f: Fault) {
        self.state.lock().unwrap().faults.push_back(f);
    }
    pub fn reject_sids(&self, sids: &[u32]) {
        self.state.lock().unwrap().reject_sids = sids.iter().copied().collect();
    }
    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }
    pub fn push_token_fault(&self, f: TokenFault) {
        self.state.lock().unwrap().token_faults.push_back(f);
    }
    pub fn refuse_tokens(&self, refuse: bool) {
        self.state.lock().unwrap().refuse_tokens = refuse;
    }
    pub fn refuse_logins(&self, refuse: bool) {
        self.state.lock().unwrap().refuse_logins = refuse;
    }
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }
    pub fn signatures(&self) -> Vec<Sig> {
        self.state.lock().unwrap().sigs.clone()
    }
    /// The signature whose value carries `sid:N;` and is not superseded, by status filter.
    pub fn by_sid(&self, sid: u32) -> Vec<Sig> {
        let needle = format!("sid:{sid};");
        self.signatures()
            .into_iter()
            .filter(|s| s.value.contains(&needle))
            .collect()
    }
    pub fn indicators(&self) -> Vec<Ind> {
        self.state.lock().unwrap().inds.clone()
    }
    pub fn malware(&self) -> Vec<Obj> {
        self.state.lock().unwrap().malware.clone()
    }
    /// An attack pattern as ThreatQ's MITRE feed would have made it; returns its id.
    pub fn add_attack_pattern(&self, value: &str) -> u64 {
        let mut st = self.state.lock().unwrap();
        let id = st.next_id;
        st.next_id += 1;
        st.attack_patterns.push(Obj {
            id,
            value: value.to_string(),
        });
        id
    }
    /// A connector row (Settings → Incoming Feeds) with this `is_active` value; returns its id.
    pub fn add_connector(&self, name: &str, is_active: Value) -> u64 {
        let mut st = self.state.lock().unwrap();
        let id = st.next_id;
        st.next_id += 1;
        st.connectors.push(json!({
            "id": id, "name": name, "namespace": "tq_conn_emerging_threats",
            "is_active": is_active, "custom_fields": {}, "last_import_at": null,
            "last_import_count": null
        }));
        id
    }
    pub fn set_connector_active(&self, id: u64, is_active: Value) {
        let mut st = self.state.lock().unwrap();
        for c in st.connectors.iter_mut() {
            if c["id"] == json!(id) {
                c["is_active"] = is_active.clone();
            }
        }
    }
    /// Attack patterns beyond those the test added (etferry must never create one).
    pub fn attack_patterns_created(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.starts_with("/api/attack_pattern"))
            .count()
    }
    pub fn connectors(&self) -> Vec<Value> {
        self.state.lock().unwrap().connectors.clone()
    }
    /// Bodies of accepted `PUT /api/connectors/{id}`.
    pub fn connector_puts(&self) -> Vec<Value> {
        self.state.lock().unwrap().connector_puts.clone()
    }
    /// Indicator consume requests and the indicators they carried.
    pub fn indicators_consumed(&self) -> (usize, usize) {
        let log = self.requests();
        let c: Vec<_> = log
            .iter()
            .filter(|r| r.path == "/api/indicators/consume")
            .collect();
        (c.len(), c.iter().map(|r| r.items).sum())
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().log.clone()
    }
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
    /// Consume requests and the signatures they carried.
    pub fn consumed(&self) -> (usize, usize) {
        let log = self.requests();
        let c: Vec<_> = log
            .iter()
            .filter(|r| r.path == "/api/signatures/consume")
            .collect();
        (c.len(), c.iter().map(|r| r.items).sum())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
