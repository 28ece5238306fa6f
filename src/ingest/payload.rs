//! Turning a verified bundle's payload into rules and indicators: archive members (with limits),
//! the rules files parsed in parallel, and the plain IP lists.
//!
//! With `crate::payload` (members, texts read back, duplicates, rule details, which the store
//! uses too), the only place ingest touches the parser and the archive reader, so their API stays
//! in one spot.

use std::collections::HashMap;

use std::sync::Arc;

pub use crate::payload::{
    block_list_of, header_ips, rule_details, rule_texts, Limits, Pairs, PayloadError,
};
use crate::payload::{classify_ip, outranks};
use crate::store::{text_hash, Indicator, NewRule};

/// What a payload holds, parsed: the rules (without their text, which stays in the payload the
/// store keeps) and the indicators.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every rule, in payload order (file by file, line by line), duplicates included.
    pub rules: Vec<NewRule>,
    /// Per-rule parse errors (`file:line: reason`).
    pub errors: Vec<String>,
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

/// Open the payload files and parse their rules files in parallel while the archive is still
/// being decompressed ([`super::stream`]), collecting every rule. IP lists become indicators.
pub fn parse_payload(files: &[(String, Vec<u8>)], limits: &Limits) -> Result<Parsed, PayloadError> {
    let mut p = Parsed::default();
    let mut lists: Vec<(String, Vec<u8>)> = Vec::new();
    super::stream::with_members(files, limits, |members| {
        for item in members {
            match item? {
                super::stream::Item::Rules { rules, errors, .. } => {
                    p.rules.extend(rules);
                    p.errors.extend(errors);
                }
                super::stream::Item::IpList { path, data } => lists.push((path, data)),
            }
        }
        Ok::<(), PayloadError>(())
    })?;
    if !lists.is_empty() {
        let mut inds = Vec::new();
        for (path, data) in &lists {
            parse_ip_list(path, data, &mut inds, &mut p.indicator_errors);
        }
        p.indicators = Some(inds);
    }
    Ok(p)
}

/// Class types and categories, one shared copy of each name (a ruleset has a few dozen).
#[derive(Debug, Default)]
pub(crate) struct Names(foldhash::HashSet<Arc<str>>);

impl Names {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.0.insert(n.clone());
        n
    }
}

/// The rules of one parsed chunk, with the names they share.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub rules: Vec<NewRule>,
    names: Names,
}

impl Chunk {
    pub fn push(&mut self, r: &crate::rules::Rule<'_>, file: &Arc<str>) {
        let rule = NewRule {
            gid: r.gid,
            sid: r.sid,
            rev: r.rev,
            hash: text_hash(&r.text),
            msg: Arc::from(&*r.msg),
            enabled: r.enabled,
            classtype: r.classtype.as_deref().map(|c| self.names.get(c)),
            category: r.category().map(|c| self.names.get(c)),
            file: file.clone(),
            line: r.file_line,
        };
        self.rules.push(rule);
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

/// Keep one rule per (gid, sid): the highest numeric rev (first wins on a tie). Returns the kept
/// rules in input order and the dropped duplicates.
pub fn dedupe(rules: Vec<NewRule>) -> (Vec<NewRule>, Vec<NewRule>) {
    let mut best: HashMap<(u32, u32), usize> = HashMap::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        if best
            .get(&(r.gid, r.sid))
            .is_none_or(|&j| outranks(r.rev, rules[j].rev))
        {
            best.insert((r.gid, r.sid), i);
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
