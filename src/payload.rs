//! Reading a payload the way both ingest and the store need it: archive members opened in
//! memory (with limits), the texts of some rules read back from a payload, the choice among
//! duplicates, and the parts of a rule text sinks and indicators use (references, metadata,
//! block lists, header IPs).
//!
//! Below both `ingest` and `store`: it depends only on `archive`, `rules` and crates, so data
//! flows one way (ingest uses the store, never the reverse).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use rayon::prelude::*;

use crate::archive::Pick;

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

fn is_archive(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".tar.gz") || lower.ends_with(".tgz") || lower.ends_with(".zip")
}

/// Hand the members of the payload files (archives opened in memory with `limits`; other files
/// as they are) that `pick` asks for to `f`, in payload order, as each is read. `pick` is told
/// each member's path and size before its data is read ([`Pick`]); a `Stop` ends the whole
/// payload.
pub(crate) fn for_each_member<'d>(
    files: &'d [(String, Vec<u8>)],
    limits: &Limits,
    pick: &mut dyn FnMut(&str, u64) -> Pick,
    f: &mut dyn FnMut(String, Cow<'d, [u8]>),
) -> Result<(), PayloadError> {
    let mut stopped = false;
    for (name, data) in files {
        if stopped {
            break;
        }
        if is_archive(name) {
            let mut pick = |path: &str, size: u64| {
                let p = pick(path, size);
                stopped |= p == Pick::Stop;
                p
            };
            let limits = limits.to_archive();
            crate::archive::for_each_member_picking(name, data, &limits, &mut pick, &mut |m| {
                f(m.path, Cow::Owned(m.data))
            })
            .map_err(|e| PayloadError(format!("archive {name}: {e}")))?;
        } else {
            match pick(name, data.len() as u64) {
                Pick::Read => f(name.clone(), Cow::Borrowed(data)),
                Pick::Skip => {}
                Pick::Stop => break,
            }
        }
    }
    Ok(())
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
    // Only the rules files asked for are held, and with `only_files` the archive is read no
    // further than the last of them: most of a payload is passed over in the decompressor.
    let mut members: Vec<(String, Cow<'_, [u8]>)> = Vec::new();
    let mut left = only_files.map_or(usize::MAX, HashSet::len);
    let mut pick = |path: &str, _: u64| {
        if left == 0 {
            Pick::Stop
        } else if path.ends_with(".rules") && only_files.is_none_or(|f| f.contains(path)) {
            left = left.saturating_sub(1);
            Pick::Read
        } else {
            Pick::Skip
        }
    };
    for_each_member(files, &unlimited, &mut pick, &mut |path, data| {
        members.push((path, data))
    })?;
    let opts = crate::rules::ParseOptions::default();
    let per_member: Vec<Vec<(u32, u32, u32, String)>> = members
        .par_iter()
        .map(|(path, data)| {
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

pub(crate) fn classify_ip(s: &str) -> Option<&'static str> {
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
pub(crate) fn outranks(candidate: u32, kept: u32) -> bool {
    candidate > kept
}
