//! The simulator's HTTP side: authentication, the token call, faults, and the routes.

use super::consume::{consume_indicator, consume_one};
use super::*;

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

pub(super) fn handle(state: &Arc<Mutex<State>>, mut req: tiny_http::Request) {
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
                return not_an_array();
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
                return not_an_array();
            };
            let out: Vec<Value> = list
                .iter()
                .map(|o| consume_indicator(&mut st, &cfg, o))
                .collect();
            (200, json!({ "data": out }), Reply::Normal)
        }
        ("POST", ["api", "malware", "consume"]) => {
            let Some(list) = body.as_array() else {
                return not_an_array();
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

/// The answer to a `/consume` whose body is not a JSON array.
fn not_an_array() -> (u16, Value, Reply) {
    (
        400,
        json!({"errors": ["body must be an array"]}),
        Reply::Normal,
    )
}
