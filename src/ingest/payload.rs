//! Turning a verified bundle's payload into rules and indicators: archive members (with limits),
//! the rules files parsed in parallel, and the plain IP lists.
//!
//! The only place ingest touches the parser and the archive reader, so their API stays in one spot.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use std::sync::{Arc, Mutex};

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

fn is_archive(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".tar.gz") || lower.ends_with(".tgz") || lower.ends_with(".zip")
}

/// Hand every member of the payload files (archives opened in memory with `limits`; other files
/// as they are) to `f` in payload order, as each is read, with its index in that order.
fn for_each_member<'d>(
    files: &'d [(String, Vec<u8>)],
    limits: &Limits,
    f: &mut dyn FnMut(usize, String, Cow<'d, [u8]>),
) -> Result<(), PayloadError> {
    let mut n = 0;
    for (name, data) in files {
        if is_archive(name) {
            crate::archive::for_each_member(name, data, &limits.to_archive(), &mut |m| {
                f(n, m.path, Cow::Owned(m.data));
                n += 1;
            })
            .map_err(|e| PayloadError(format!("archive {name}: {e}")))?;
        } else {
            f(n, name.clone(), Cow::Borrowed(data));
            n += 1;
        }
    }
    Ok(())
}

/// Open the payload files and parse their rules files in parallel while the archive is still
/// being decompressed; each member is dropped as soon as it is parsed, so the whole decompressed
/// payload is never in memory at once. IP lists become indicators.
pub fn parse_payload(files: &[(String, Vec<u8>)], limits: &Limits) -> Result<Parsed, PayloadError> {
    type Done = (usize, Vec<NewRule>, Vec<String>);
    let opts = crate::rules::ParseOptions::default();
    let done: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    let mut lists: Vec<(String, Vec<u8>)> = Vec::new();
    // Decompressed bytes parsed; the total is unknown until the archive is read to its end.
    let bar = crate::progress::bytes(None, "parsing rules");
    let read = rayon::scope(|scope| {
        for_each_member(files, limits, &mut |i, path, data| {
            if path.ends_with(".rules") {
                let (opts, done, bar) = (&opts, &done, &bar);
                scope.spawn(move |_| {
                    let file: Arc<str> = Arc::from(path.as_str());
                    // Each chunk turns its rules into NewRules (text hashed) as it parses them.
                    let (parts, errors, _) =
                        crate::rules::fold_lean(&path, &data, opts, Vec::new, |v, r| {
                            v.push(new_rule(&r, &file))
                        });
                    bar.inc(data.len() as u64);
                    drop(data);
                    let rules = parts.into_iter().flatten().collect();
                    let errors = errors.iter().map(|e| e.to_string()).collect();
                    if let Ok(mut d) = done.lock() {
                        d.push((i, rules, errors));
                    }
                });
            } else if is_ip_list(&path) {
                lists.push((path, data.into_owned()));
            }
        })
    });
    read?;
    let mut done = done
        .into_inner()
        .map_err(|_| PayloadError("a parser thread panicked".into()))?;
    done.sort_by_key(|d| d.0);
    let mut p = Parsed::default();
    for (_, rules, errors) in done {
        p.rules.extend(rules);
        p.errors.extend(errors);
    }
    if !lists.is_empty() {
        let mut inds = Vec::new();
        for (path, data) in &lists {
            parse_ip_list(path, data, &mut inds, &mut p.indicator_errors);
        }
        p.indicators = Some(inds);
    }
    Ok(p)
}

fn new_rule(r: &crate::rules::Rule<'_>, file: &Arc<str>) -> NewRule {
    NewRule {
        gid: r.gid,
        sid: r.sid,
        rev: r.rev,
        hash: text_hash(&r.text),
        msg: Arc::from(&*r.msg),
        enabled: r.enabled,
        classtype: r.classtype.as_ref().map(|c| c.to_string()),
        category: r.category().map(str::to_string),
        file: file.clone(),
        line: r.file_line,
    }
}

/// The texts of the rules `want` in a payload the store kept, with the same choice among
/// duplicates as ingest (highest rev, first on a tie). `only_files` limits the parse to those
/// rules files (a fast path; the caller checks the text hashes and retries without it).
pub fn rule_texts(
    files: &[(String, Vec<u8>)],
    want: &HashSet<(u32, u32)>,
    only_files: Option<&HashSet<String>>,
) -> Result<HashMap<(u32, u32), String>, PayloadError> {
    let unlimited = Limits {
        max_members: usize::MAX,
        max_member_size: u64::MAX,
        max_total_size: u64::MAX,
    };
    let mut members = Vec::new();
    for_each_member(files, &unlimited, &mut |i, path, data| {
        let wanted = only_files.is_none_or(|f| f.contains(&path));
        if path.ends_with(".rules") && wanted {
            members.push((i, path, data));
        }
    })?;
    let opts = crate::rules::ParseOptions::default();
    let per_member: Vec<Vec<(u32, u32, u32, String)>> = members
        .par_iter()
        .map(|(_, path, data)| {
            let (parts, _, _) = crate::rules::fold_lean(path, data, &opts, Vec::new, |v, r| {
                if want.contains(&(r.gid, r.sid)) {
                    v.push((r.gid, r.sid, r.rev, r.text.into_owned()));
                }
            });
            parts.into_iter().flatten().collect()
        })
        .collect();
    let mut best: HashMap<(u32, u32), (u32, String)> = HashMap::with_capacity(want.len());
    for (gid, sid, rev, text) in per_member.into_iter().flatten() {
        if best
            .get(&(gid, sid))
            .is_none_or(|(kept, _)| outranks(rev, *kept))
        {
            best.insert((gid, sid), (rev, text));
        }
    }
    Ok(best.into_iter().map(|(k, (_, t))| (k, t)).collect())
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

/// ET's IP-reputation rule files (block rules): `emerging-botcc.rules` in `blockrules/`,
/// `botcc.rules` inside a ruleset archive. Returns the list's name (`botcc`).
pub fn block_list_of(file: &str) -> Option<&str> {
    const LISTS: [&str; 9] = [
        "botcc",
        "botcc.portgrouped",
        "ciarmy",
        "compromised",
        "drop",
        "dshield",
        "tor",
        "rbn",
        "rbn-malvertisers",
    ];
    let name = file
        .rsplit('/')
        .next()
        .unwrap_or(file)
        .strip_suffix(".rules")?;
    let name = name.strip_prefix("emerging-").unwrap_or(name);
    LISTS.iter().copied().find(|l| *l == name)
}

/// The IPs and networks in a rule's header (source and destination), as (value, `ip`|`cidr`),
/// in order, without duplicates. Variables, `any` and negations are not indicators.
pub fn header_ips(text: &str) -> Vec<(String, &'static str)> {
    let header = text.split('(').next().unwrap_or("");
    let fields: Vec<&str> = header.split_whitespace().collect();
    let mut out: Vec<(String, &'static str)> = Vec::new();
    // action proto src sport dir dst dport
    for f in [fields.get(2), fields.get(5)].into_iter().flatten() {
        if f.starts_with('!') {
            continue;
        }
        for v in f.trim_matches(['[', ']']).split(',') {
            let v = v.trim();
            if let Some(kind) = classify_ip(v) {
                if !out.iter().any(|(x, _)| x == v) {
                    out.push((v.to_string(), kind));
                }
            }
        }
    }
    out
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

/// Among duplicates of one (gid, sid), whether a later rule with rev `candidate` replaces the one
/// kept so far: only a higher rev does (the first wins a tie). Ingest and the texts read back
/// from a stored payload must choose alike.
fn outranks(candidate: u32, kept: u32) -> bool {
    candidate > kept
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
