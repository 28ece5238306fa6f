//! Turning a verified bundle's payload into rules and indicators: archive members (with limits),
//! the rules files parsed in parallel, and the plain IP lists.
//!
//! The only place ingest touches the parser and the archive reader, so their API stays in one spot.

use std::collections::HashMap;
use std::net::IpAddr;

use rayon::prelude::*;

use crate::store::{text_hash, Indicator, NewRule};

/// Archive limits from watch.yaml.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_members: usize,
    pub max_member_size: u64,
    pub max_total_size: u64,
}

impl Limits {
    pub(crate) fn to_archive(&self) -> crate::archive::Limits {
        crate::archive::Limits {
            max_members: self.max_members,
            max_member_size: self.max_member_size,
            max_total_size: self.max_total_size,
        }
    }
}

/// Why a payload cannot be read: the bundle is rejected with this reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// The payload's rules files (kept in memory; parsed rules borrow from them) and IP lists.
#[derive(Debug, Default)]
pub struct Members {
    /// `(path, bytes)` of every rules file, archive members named by their member path.
    pub rule_files: Vec<(String, Vec<u8>)>,
    /// Indicators from the IP lists; `None` when the payload has no IP list.
    pub indicators: Option<Vec<Indicator>>,
    /// Problems in IP lists (`file:line: reason`).
    pub indicator_errors: Vec<String>,
}

/// Names of the plain IP lists that become indicators.
pub fn is_ip_list(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == "emerging-Block-IPs.txt" || name == "compromised-ips.txt"
}

/// Open the payload files (archives in memory, with `limits`): keep the rules files, turn the IP
/// lists into indicators. Other members are dropped at once to keep memory low.
pub fn read_members(
    files: Vec<(String, Vec<u8>)>,
    limits: &Limits,
) -> Result<Members, PayloadError> {
    let mut m = Members::default();
    let mut lists: Vec<(String, Vec<u8>)> = Vec::new();
    let mut take = |path: String, data: Vec<u8>, m: &mut Members| {
        if path.ends_with(".rules") {
            m.rule_files.push((path, data));
        } else if is_ip_list(&path) {
            lists.push((path, data));
        }
    };
    for (name, data) in files {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") || lower.ends_with(".zip") {
            let read = crate::archive::read_archive(&name, &data, &limits.to_archive())
                .map_err(|e| PayloadError(format!("archive {name}: {e}")))?;
            drop(data);
            for mem in read {
                take(mem.path, mem.data, &mut m);
            }
        } else {
            take(name, data, &mut m);
        }
    }
    if !lists.is_empty() {
        let mut inds = Vec::new();
        for (path, data) in &lists {
            parse_ip_list(path, data, &mut inds, &mut m.indicator_errors);
        }
        m.indicators = Some(inds);
    }
    Ok(m)
}

/// Parse every rules file in parallel. Rules come back in file order, borrowing from `m`, with the
/// per-rule errors (`file:line: reason`).
pub fn parse_rules(m: &Members) -> (Vec<NewRule<'_>>, Vec<String>) {
    let opts = crate::rules::ParseOptions::default();
    let total: u64 = m.rule_files.iter().map(|(_, d)| d.len() as u64).sum();
    let bar = crate::progress::bytes(Some(total), "parsing rules");
    // One file at a time per thread, so the parser's per-rule option lists of only the files in
    // flight are in memory.
    let per_file: Vec<(Vec<NewRule<'_>>, Vec<String>)> = m
        .rule_files
        .par_iter()
        .map(|(path, data)| {
            let pf = crate::rules::parse_bytes(path, data, &opts);
            bar.inc(data.len() as u64);
            let errors = pf.errors.iter().map(|e| e.to_string()).collect();
            let rules = pf
                .rules
                .into_iter()
                .map(|r| {
                    let category = r.category().map(str::to_string);
                    NewRule {
                        gid: r.gid,
                        sid: r.sid,
                        rev: r.rev,
                        hash: text_hash(&r.text),
                        msg: r.msg,
                        text: r.text,
                        enabled: r.enabled,
                        classtype: r.classtype,
                        category,
                        file: path.as_str(),
                        line: r.file_line,
                    }
                })
                .collect();
            (rules, errors)
        })
        .collect();
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (r, e) in per_file {
        rules.extend(r);
        errors.extend(e);
    }
    (rules, errors)
}

/// (key, value) pairs in order.
pub type Pairs = Vec<(String, String)>;

/// `reference:` and `metadata` of one stored rule text, for sinks (not stored separately).
pub fn rule_details(text: &str) -> (Pairs, Pairs) {
    let data = [(String::from("rule"), text.as_bytes().to_vec())];
    let parsed = crate::rules::parse_many(&data, &crate::rules::ParseOptions::default());
    match parsed.first().and_then(|pf| pf.rules.first()) {
        Some(r) => (
            r.references
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            r.metadata
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    }
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
pub fn dedupe(rules: Vec<NewRule<'_>>) -> (Vec<NewRule<'_>>, Vec<NewRule<'_>>) {
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
