//! What the `/consume` calls do to the simulated instance: upserts of signatures and
//! indicators, and the relations a signature carries inline.

use super::*;

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

pub(super) fn consume_indicator(st: &mut State, cfg: &SimConfig, o: &Value) -> Value {
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
    merge_attributes(&mut ind.attributes, o, &mut next_attr);
    let out = json!({"id": ind.id, "value": ind.value, "type": {"name": ind.kind}, "status": {"name": ind.status}});
    st.next_id = next_attr;
    out
}

pub(super) fn consume_one(st: &mut State, cfg: &SimConfig, o: &Value) -> Value {
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
    merge_attributes(&mut s.attributes, o, &mut next_attr);
    let out = json!({"id": s.id, "name": s.name, "value": s.value, "hash": hash, "status": {"name": s.status}});
    st.next_id = next_attr;
    out
}

/// Add the object's `attributes` that `list` lacks, numbering them from `next_id`. Attributes are
/// multi-valued: a new value is added beside an old one of the same name.
fn merge_attributes(list: &mut Vec<Attr>, o: &Value, next_id: &mut u64) {
    for a in o
        .get("attributes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(n), Some(v)) = (
            a.get("name").and_then(Value::as_str),
            a.get("value").and_then(Value::as_str),
        ) else {
            continue;
        };
        if !list.iter().any(|x| x.name == n && x.value == v) {
            list.push(Attr {
                id: *next_id,
                name: n.to_string(),
                value: v.to_string(),
            });
            *next_id += 1;
        }
    }
}
