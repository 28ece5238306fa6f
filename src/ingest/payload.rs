//! Turning a verified bundle's payload into rules and indicators: archive members (with limits),
//! the rules files parsed in parallel, and the plain IP lists.
//!
//! The only place ingest touches the parser and the archive reader, so their API stays in one spot.

use std::collections::HashMap;
use std::net::IpAddr;

use rayon::prelude::*;

use crate::store::{Indicator, NewRule};

/// Archive limits (mirrors `archive::Limits`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_members: usize,
    pub max_member_size: u64,
    pub max_total_size: u64,
}

/// Why a payload cannot be read: the bundle is rejected with this reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// What a payload holds.
#[derive(Debug, Default)]
pub struct Payload {
    /// Every rule, in file order (duplicates not yet removed).
    pub rules: Vec<NewRule>,
    /// Per-rule parse errors (`file:line: reason`); reported, never silently dropped.
    pub errors: Vec<String>,
    /// Indicators from the IP lists; `None` when the payload has no IP list.
    pub indicators: Option<Vec<Indicator>>,
    /// Problems in IP lists (`file:line: reason`).
    pub indicator_errors: Vec<String>,
    /// Number of rules files read.
    pub rule_files: usize,
}

/// Names of the plain IP lists that become indicators.
pub fn is_ip_list(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == "emerging-Block-IPs.txt" || name == "compromised-ips.txt"
}

/// Read every payload file (archives are opened in memory with `limits`), parse the rules files in
/// parallel and collect the IP lists.
pub fn read_payload(files: &[(String, Vec<u8>)], limits: &Limits) -> Result<Payload, PayloadError> {
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, data) in files {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".rules") || is_ip_list(name) {
            members.push((name.clone(), data.clone()));
            continue;
        }
        if !(lower.ends_with(".tar.gz") || lower.ends_with(".tgz") || lower.ends_with(".zip")) {
            continue;
        }
        let read = super::shim::read_archive(name, data, limits)
            .map_err(|e| PayloadError(format!("archive {name}: {e}")))?;
        for m in read {
            if m.path.ends_with(".rules") || is_ip_list(&m.path) {
                members.push((m.path, m.data));
            }
        }
    }
    let (rule_files, lists): (Vec<_>, Vec<_>) = members
        .into_iter()
        .partition(|(p, _)| p.ends_with(".rules"));
    let mut payload = Payload {
        rule_files: rule_files.len(),
        ..Payload::default()
    };
    let opts = super::shim::ParseOptions;
    let parsed = super::shim::parse_many(&rule_files, &opts);
    let per_file: Vec<(Vec<NewRule>, Vec<String>)> = parsed
        .into_par_iter()
        .map(|pf| {
            let rules = pf
                .rules
                .iter()
                .map(|r| NewRule {
                    gid: r.gid,
                    sid: r.sid,
                    rev: r.rev,
                    msg: r.msg.to_string(),
                    text: r.text.to_string(),
                    enabled: r.enabled,
                    classtype: r.classtype.map(str::to_string),
                    category: r.category().map(str::to_string),
                    file: pf.file.clone(),
                    line: r.file_line,
                    references: r
                        .references
                        .iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                    metadata: r
                        .metadata
                        .iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                })
                .collect();
            let errors = pf.errors.iter().map(|e| e.to_string()).collect();
            (rules, errors)
        })
        .collect();
    for (rules, errors) in per_file {
        payload.rules.extend(rules);
        payload.errors.extend(errors);
    }
    if !lists.is_empty() {
        let mut inds = Vec::new();
        for (path, data) in &lists {
            parse_ip_list(path, data, &mut inds, &mut payload.indicator_errors);
        }
        payload.indicators = Some(inds);
    }
    Ok(payload)
}

/// Parse a plain IP list: one IP or CIDR per line; a `#` line names the section of the entries
/// below it (`emerging-Block-IPs.txt`); a list without sections uses its file name.
pub fn parse_ip_list(path: &str, data: &[u8], out: &mut Vec<Indicator>, errors: &mut Vec<String>) {
    let name = path.rsplit('/').next().unwrap_or(path);
    let default_section = name.trim_end_matches(".txt").to_string();
    let mut section = default_section.clone();
    let text = String::from_utf8_lossy(data);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let c = c.trim();
            if !c.is_empty() {
                section = c.to_string();
            }
            continue;
        }
        match classify_ip(line) {
            Some(kind) => out.push(Indicator {
                value: line.to_string(),
                kind: kind.to_string(),
                section: section.clone(),
                file: path.to_string(),
            }),
            None => errors.push(format!(
                "{path}:{}: not an IP address or CIDR: {line:?}",
                i + 1
            )),
        }
    }
}

fn classify_ip(s: &str) -> Option<&'static str> {
    match s.split_once('/') {
        None => s.parse::<IpAddr>().ok().map(|_| "ip"),
        Some((ip, len)) => {
            let ip: IpAddr = ip.parse().ok()?;
            let len: u8 = len.parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            (len <= max).then_some("cidr")
        }
    }
}

/// Keep one rule per (gid, sid): the highest numeric rev (first wins on a tie). Returns the kept
/// rules in input order and the dropped duplicates.
pub fn dedupe(rules: Vec<NewRule>) -> (Vec<NewRule>, Vec<NewRule>) {
    let mut best: HashMap<(u32, u32), usize> = HashMap::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        match best.get(&(r.gid, r.sid)) {
            Some(&j) if rules[j].rev >= r.rev => {}
            _ => {
                best.insert((r.gid, r.sid), i);
            }
        }
    }
    if best.len() == rules.len() {
        return (rules, Vec::new());
    }
    let mut kept = Vec::with_capacity(best.len());
    let mut dups = Vec::new();
    for (i, r) in rules.into_iter().enumerate() {
        if best.get(&(r.gid, r.sid)) == Some(&i) {
            kept.push(r);
        } else {
            dups.push(r);
        }
    }
    (kept, dups)
}
