//! A ThreatQ API simulator for tests: a real HTTP server on 127.0.0.1 (tiny_http) that implements
//! the calls of the ThreatQ API reference (docs/threatq.md summarises it) the sink uses, records every request, and
//! injects faults on demand. Not part of the product binary.
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

pub mod corpus;

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
                        handle(&state, req);
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

fn json_response(code: u16, v: &Value) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(serde_json::to_vec(v).unwrap())
        .with_status_code(code)
        .with_header(Header::from_bytes("Content-Type", "application/json").unwrap())
}

fn new_token(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:x}",
        TOKEN_SEQ.fetch_add(1, Ordering::SeqCst),
        rand_u64()
    )
}

fn rand_u64() -> u64 {
    let mut h = Sha256::new();
    h.update(format!(
        "{:?}{:?}",
        Instant::now(),
        std::thread::current().id()
    ));
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap())
}

fn query_map(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.to_string(), urldecode(v)))
        })
        .collect()
}

fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(state: &Arc<Mutex<State>>, mut req: tiny_http::Request) {
    let method = req.method().to_string();
    let (path, query) = match req.url().split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (req.url().to_string(), String::new()),
    };
    let auth = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.to_string());
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(req.as_reader(), &mut body);
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let items = if path.ends_with("/consume") {
        parsed.as_array().map(|a| a.len()).unwrap_or(0)
    } else {
        0
    };

    // Faults are taken from the queue only by consume requests.
    let fault = if path == "/api/signatures/consume" {
        state.lock().unwrap().faults.pop_front()
    } else {
        None
    };
    let record = |code: u16| {
        state.lock().unwrap().log.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            authorization: auth.clone(),
            items,
            status: code,
        });
    };

    if let Some(Fault::ExpireTokens) = fault {
        state.lock().unwrap().tokens.clear();
    }

    if path == "/api/token" && method == "POST" {
        let tf = state.lock().unwrap().token_faults.pop_front();
        match tf {
            Some(TokenFault::Redirect(code, location)) => {
                record(code);
                let _ = req.respond(
                    Response::from_data(Vec::new())
                        .with_status_code(code)
                        .with_header(Header::from_bytes("Location", location).unwrap()),
                );
            }
            Some(TokenFault::NoToken) => {
                record(200);
                let _ = req.respond(json_response(
                    200,
                    &json!({"data": {"token_type": "bearer"}}),
                ));
            }
            Some(TokenFault::Stall(d)) => {
                let (code, v) = token(state, &query_map(&query), &parsed);
                record(code);
                let data = serde_json::to_vec(&v).unwrap();
                // Headers and the first bytes now, the rest after `d`: the client has its answer
                // and times out while reading the body.
                let mut w = req.into_writer();
                let _ = write!(
                    w,
                    "HTTP/1.1 {code} OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    data.len()
                );
                let _ = w.write_all(&data[..4]);
                let _ = w.flush();
                std::thread::sleep(d);
                let _ = w.write_all(&data[4..]);
                let _ = w.flush();
            }
            None => {
                let (code, v) = token(state, &query_map(&query), &parsed);
                record(code);
                let _ = req.respond(json_response(code, &v));
            }
        }
        return;
    }

    // Auth on every other call.
    let ok = {
        let st = state.lock().unwrap();
        !st.refuse_tokens
            && auth
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .and_then(|t| st.tokens.get(t))
                .is_some_and(|exp| *exp > Instant::now())
    };
    if !ok {
        record(401);
        let _ = req.respond(json_response(
            401,
            &json!({"errors": ["Access denied: token missing, wrong or expired"]}),
        ));
        return;
    }

    let (code, v, after) = route(state, &method, &path, &query, &parsed, fault.clone());
    record(code);
    match after {
        Reply::Normal => {
            let _ = req.respond(json_response(code, &v));
        }
        Reply::Throttled(s) => {
            let _ = req.respond(
                json_response(code, &v)
                    .with_header(Header::from_bytes("Retry-After", s.to_string()).unwrap()),
            );
        }
        Reply::Moved(location) => {
            let _ = req.respond(
                json_response(code, &v)
                    .with_header(Header::from_bytes("Location", location).unwrap()),
            );
        }
        Reply::Slow(d) => {
            std::thread::sleep(d);
            let _ = req.respond(json_response(code, &v));
        }
        Reply::Garble => {
            let mut w = req.into_writer();
            let _ = w.write_all(b"HTTP/1.1 2\x00\x00 garbled\r\n\r\n");
            let _ = w.flush();
        }
    }
}

enum Reply {
    Normal,
    Moved(String),
    Throttled(u64),
    Slow(Duration),
    Garble,
}

fn token(state: &Arc<Mutex<State>>, q: &HashMap<String, String>, body: &Value) -> (u16, Value) {
    let mut st = state.lock().unwrap();
    let expires_in = st.cfg.as_ref().unwrap().expires_in;
    let grant = q.get("grant_type").map(String::as_str);
    let allowed = match grant {
        Some("password") => {
            !st.refuse_logins
                && q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
                && body.get("email").and_then(Value::as_str) == Some(EMAIL)
                && body.get("password").and_then(Value::as_str) == Some(PASSWORD)
        }
        Some("refresh_token") => q.get("refresh_token").is_some_and(|r| st.refresh.remove(r)),
        _ => false,
    };
    if !allowed {
        return (401, json!({"error": "invalid_grant"}));
    }
    let access = new_token("at");
    let refresh = new_token("rt");
    let life = Duration::from_secs(expires_in.unwrap_or(1800));
    st.tokens.insert(access.clone(), Instant::now() + life);
    st.refresh.insert(refresh.clone());
    let mut v = json!({"access_token": access, "refresh_token": refresh, "token_type": "bearer"});
    if let Some(e) = expires_in {
        v["expires_in"] = json!(e);
    }
    (200, v)
}

fn route(
    state: &Arc<Mutex<State>>,
    method: &str,
    path: &str,
    query: &str,
    body: &Value,
    fault: Option<Fault>,
) -> (u16, Value, Reply) {
    let mut st = state.lock().unwrap();
    let cfg = st.cfg.clone().unwrap();
    let named = |names: &[&str]| -> Value {
        json!({"data": names.iter().enumerate().map(|(i, n)| json!({"id": i + 1, "name": n})).collect::<Vec<_>>()})
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["api", "signature", "types"]) => (200, named(&cfg.types), Reply::Normal),
        ("GET", ["api", "signature", "statuses"]) if cfg.statuses_endpoint => {
            (200, named(&cfg.statuses), Reply::Normal)
        }
        ("GET", ["api", "objects"]) => {
            let statuses = named(&cfg.statuses)["data"].clone();
            (
                200,
                json!({"data": [
                    {"name": "indicator", "collection": "indicators", "statuses": []},
                    {"name": "signature", "collection": "signatures", "statuses": statuses}
                ]}),
                Reply::Normal,
            )
        }
        ("POST", ["api", "signatures", "consume"]) => {
            if st.down {
                return (
                    500,
                    json!({"errors": ["Internal Server Error"]}),
                    Reply::Normal,
                );
            }
            let after = match fault {
                Some(Fault::Redirect(code, location)) => {
                    return (
                        code,
                        json!({ "location": location }),
                        Reply::Moved(location),
                    );
                }
                Some(Fault::Status { code, retry_after }) => {
                    let v = json!({"errors": [format!("simulated {code}")]});
                    return (
                        code,
                        v,
                        retry_after.map(Reply::Throttled).unwrap_or(Reply::Normal),
                    );
                }
                Some(Fault::ErrorsKey) => {
                    return (
                        200,
                        json!({"errors": ["simulated validation failure"]}),
                        Reply::Normal,
                    )
                }
                Some(Fault::Slow(d)) => Reply::Slow(d),
                Some(Fault::Drop) => Reply::Garble,
                _ => Reply::Normal,
            };
            let Some(list) = body.as_array() else {
                return (
                    400,
                    json!({"errors": ["body must be an array"]}),
                    Reply::Normal,
                );
            };
            let mut out = Vec::new();
            for o in list {
                out.push(consume_one(&mut st, &cfg, o));
            }
            (200, json!({ "data": out }), after)
        }
        ("GET", ["api", "signatures", id, "attributes"]) => {
            let id: u64 = id.parse().unwrap_or(0);
            match st.sigs.iter().find(|s| s.id == id) {
                Some(s) => (
                    200,
                    json!({"data": s.attributes.iter().map(|a| json!({"id": a.id, "name": a.name, "value": a.value})).collect::<Vec<_>>()}),
                    Reply::Normal,
                ),
                None => (404, json!({"errors": ["not found"]}), Reply::Normal),
            }
        }
        ("DELETE", ["api", "signatures", id, "attributes", aid]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let aid: u64 = aid.parse().unwrap_or(0);
            match st.sigs.iter_mut().find(|s| s.id == id) {
                Some(s) if s.attributes.iter().any(|a| a.id == aid) => {
                    s.attributes.retain(|a| a.id != aid);
                    (204, Value::Null, Reply::Normal)
                }
                _ => (404, json!({"errors": ["not found"]}), Reply::Normal),
            }
        }
        ("POST", ["api", "indicators", "consume"]) => {
            if st.down {
                return (
                    500,
                    json!({"errors": ["Internal Server Error"]}),
                    Reply::Normal,
                );
            }
            let Some(list) = body.as_array() else {
                return (
                    400,
                    json!({"errors": ["body must be an array"]}),
                    Reply::Normal,
                );
            };
            let out: Vec<Value> = list
                .iter()
                .map(|o| consume_indicator(&mut st, &cfg, o))
                .collect();
            (200, json!({ "data": out }), Reply::Normal)
        }
        ("POST", ["api", "malware", "consume"]) => {
            let Some(list) = body.as_array() else {
                return (
                    400,
                    json!({"errors": ["body must be an array"]}),
                    Reply::Normal,
                );
            };
            let mut out = Vec::new();
            for o in list {
                let Some(v) = o
                    .get("value")
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                else {
                    out.push(json!({"error": "value is required"}));
                    continue;
                };
                let id = match st.malware.iter().find(|m| m.value.eq_ignore_ascii_case(v)) {
                    Some(m) => m.id,
                    None => {
                        let id = st.next_id;
                        st.next_id += 1;
                        st.malware.push(Obj {
                            id,
                            value: v.to_string(),
                        });
                        id
                    }
                };
                out.push(json!({"id": id, "value": v}));
            }
            (200, json!({ "data": out }), Reply::Normal)
        }
        ("GET", ["api", "attack_pattern"]) => {
            let q = query_map(query);
            let Some(v) = q.get("value") else {
                return (400, json!({"errors": ["value is required"]}), Reply::Normal);
            };
            let found: Vec<Value> = st
                .attack_patterns
                .iter()
                .filter(|a| a.value.eq_ignore_ascii_case(v))
                .map(|a| json!({"id": a.id, "value": a.value}))
                .collect();
            (
                200,
                json!({"data": found, "total": found.len()}),
                Reply::Normal,
            )
        }
        ("GET", ["api", "connectors"]) => {
            let q = query_map(query);
            let found: Vec<Value> = st
                .connectors
                .iter()
                .filter(|c| {
                    q.get("name")
                        .is_none_or(|n| c["name"].as_str() == Some(n.as_str()))
                })
                .cloned()
                .collect();
            (
                200,
                json!({"data": found, "total": found.len()}),
                Reply::Normal,
            )
        }
        ("PUT", ["api", "connectors", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let ok_time = body
                .get("last_import_at")
                .and_then(Value::as_str)
                .is_some_and(|t| {
                    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").is_ok()
                });
            let ok_count = body.get("last_import_count").is_some_and(Value::is_u64);
            if !ok_time || !ok_count {
                return (
                    400,
                    json!({"data": {"errors": {"last_import_at": ["format YYYY-MM-DD HH:MM:SS and a count"]}}}),
                    Reply::Normal,
                );
            }
            let Some(c) = st.connectors.iter_mut().find(|c| c["id"] == json!(id)) else {
                return (404, json!({"errors": ["not found"]}), Reply::Normal);
            };
            c["last_import_at"] = body["last_import_at"].clone();
            c["last_import_count"] = body["last_import_count"].clone();
            let row = c.clone();
            st.connector_puts.push(body.clone());
            (200, json!({ "data": row }), Reply::Normal)
        }
        _ => (404, json!({"errors": ["no such route"]}), Reply::Normal),
    }
}

/// `type` or `status` by name: `"X"` or `{"name": "X"}`.
fn by_name(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        o => o.get("name").and_then(Value::as_str).map(str::to_string),
    }
}

/// Link (or create, without a status) the indicator (type, value); its index.
fn indicator_index(st: &mut State, kind: &str, value: &str) -> usize {
    if let Some(i) = st
        .inds
        .iter()
        .position(|x| x.kind == kind && x.value == value)
    {
        return i;
    }
    let id = st.next_id;
    st.next_id += 1;
    st.inds.push(Ind {
        id,
        value: value.to_string(),
        kind: kind.to_string(),
        status: String::new(),
        sources: Vec::new(),
        attributes: Vec::new(),
        writes: 0,
    });
    st.inds.len() - 1
}

fn consume_indicator(st: &mut State, cfg: &SimConfig, o: &Value) -> Value {
    let Some(value) = o
        .get("value")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    else {
        return json!({"error": "value is required"});
    };
    let Some(kind) = by_name(o.get("type")).filter(|t| cfg.indicator_types.contains(&t.as_str()))
    else {
        return json!({"error": format!("unknown indicator type {:?}", o.get("type")), "value": value});
    };
    let status = by_name(o.get("status")).unwrap_or_default();
    let Some(status) = cfg
        .statuses
        .iter()
        .find(|s| s.eq_ignore_ascii_case(&status))
    else {
        return json!({"error": format!("unknown status {status:?}"), "value": value});
    };
    let i = indicator_index(st, &kind, value);
    let mut next_attr = st.next_id;
    let ind = &mut st.inds[i];
    ind.writes += 1;
    ind.status = status.to_string();
    for src in o
        .get("sources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        if !ind.sources.contains(&src) {
            ind.sources.push(src);
        }
    }
    for a in o
        .get("attributes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let (Some(n), Some(v)) = (
            a.get("name").and_then(Value::as_str),
            a.get("value").and_then(Value::as_str),
        ) else {
            continue;
        };
        if !ind.attributes.iter().any(|x| x.name == n && x.value == v) {
            ind.attributes.push(Attr {
                id: next_attr,
                name: n.to_string(),
                value: v.to_string(),
            });
            next_attr += 1;
        }
    }
    let out = json!({"id": ind.id, "value": ind.value, "type": {"name": ind.kind}, "status": {"name": ind.status}});
    st.next_id = next_attr;
    out
}

fn consume_one(st: &mut State, cfg: &SimConfig, o: &Value) -> Value {
    let (Some(value), Some(name)) = (
        o.get("value").and_then(Value::as_str),
        o.get("name").and_then(Value::as_str),
    ) else {
        return json!({"error": "value and name are required"});
    };
    if let Some(sid) = value
        .split("sid:")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|s| s.trim().parse::<u32>().ok())
    {
        if st.reject_sids.contains(&sid) {
            return json!({"error": format!("simulated rejection of sid {sid}"), "value": value});
        }
    }
    let type_id = o.get("type_id").and_then(Value::as_u64).unwrap_or(0);
    if type_id == 0 || type_id as usize > cfg.types.len() {
        return json!({"error": format!("unknown type_id {type_id}")});
    }
    let status = match o.get("status") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        None => String::new(),
    };
    let Some(status) = cfg
        .statuses
        .iter()
        .find(|s| s.eq_ignore_ascii_case(&status))
    else {
        return json!({"error": format!("unknown status {status:?}")});
    };
    // Inline relations (checked before anything is stored).
    let mut rel_inds: Vec<(String, String)> = Vec::new();
    for r in o
        .get("indicators")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let v = r.get("value").and_then(Value::as_str).map(str::to_string);
        let t = by_name(r.get("type")).filter(|t| cfg.indicator_types.contains(&t.as_str()));
        match (v, t) {
            (Some(v), Some(t)) => rel_inds.push((t, v)),
            _ => return json!({"error": format!("bad related indicator {r}"), "value": value}),
        }
    }
    let mut rel_ids: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for (k, field) in ["malware", "attack_pattern"].iter().enumerate() {
        for r in o
            .get(*field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let id = r.get("id").and_then(Value::as_u64).unwrap_or(0);
            let known = if k == 0 {
                &st.malware
            } else {
                &st.attack_patterns
            };
            if !known.iter().any(|x| x.id == id) {
                return json!({"error": format!("no {field} with id {id}"), "value": value});
            }
            rel_ids[k].push(id);
        }
    }
    let ind_values: Vec<String> = rel_inds
        .iter()
        .map(|(t, v)| {
            indicator_index(st, t, v);
            v.clone()
        })
        .collect();
    let hash = hex::encode(Sha256::digest(value.as_bytes()));
    let key = match cfg.key_by {
        KeyBy::ValueHash => hash.clone(),
        KeyBy::Name => name.to_string(),
    };
    let idx = match st.index.get(&key) {
        Some(&i) => i,
        None => {
            let id = st.next_id;
            st.next_id += 1;
            st.sigs.push(Sig {
                id,
                name: name.to_string(),
                value: value.to_string(),
                type_id,
                status: String::new(),
                sources: Vec::new(),
                published_at: None,
                attributes: Vec::new(),
                writes: 0,
                indicators: Vec::new(),
                malware: Vec::new(),
                attack_patterns: Vec::new(),
            });
            st.index.insert(key, st.sigs.len() - 1);
            st.sigs.len() - 1
        }
    };
    let mut next_attr = st.next_id;
    let s = &mut st.sigs[idx];
    s.writes += 1;
    for v in ind_values {
        if !s.indicators.contains(&v) {
            s.indicators.push(v);
        }
    }
    let [mw, ap] = rel_ids;
    for id in mw {
        if !s.malware.contains(&id) {
            s.malware.push(id);
        }
    }
    for id in ap {
        if !s.attack_patterns.contains(&id) {
            s.attack_patterns.push(id);
        }
    }
    s.name = name.to_string();
    s.value = value.to_string();
    s.type_id = type_id;
    s.status = status.to_string();
    if let Some(p) = o.get("published_at").and_then(Value::as_str) {
        s.published_at = Some(p.to_string());
    }
    let mut srcs: Vec<Value> = o
        .get("sources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(n) = o.get("source").and_then(Value::as_str) {
        srcs.push(json!({ "name": n }));
    }
    for src in srcs {
        if !s.sources.contains(&src) {
            s.sources.push(src);
        }
    }
    for a in o
        .get("attributes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let (Some(n), Some(v)) = (
            a.get("name").and_then(Value::as_str),
            a.get("value").and_then(Value::as_str),
        ) else {
            continue;
        };
        // Multi-valued: a new value is added beside an old one of the same name.
        if !s.attributes.iter().any(|x| x.name == n && x.value == v) {
            s.attributes.push(Attr {
                id: next_attr,
                name: n.to_string(),
                value: v.to_string(),
            });
            next_attr += 1;
        }
    }
    let out = json!({"id": s.id, "name": s.name, "value": s.value, "hash": hash, "status": {"name": s.status}});
    st.next_id = next_attr;
    out
}
