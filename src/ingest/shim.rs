//! Interim stand-in for `rules::parse_many` and `archive::read_archive` with the same shapes, used
//! until the parser branch lands on main. Deleted then; nothing else refers to it.

use std::borrow::Cow;
use std::io::Read;

pub use super::payload::Limits;

pub struct Member {
    pub path: String,
    pub data: Vec<u8>,
}

pub fn read_archive(name: &str, bytes: &[u8], l: &Limits) -> Result<Vec<Member>, String> {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut counted = gz.take(l.max_total_size.saturating_add(1));
    let mut out = Vec::new();
    let mut total: u64 = 0;
    {
        let mut ar = tar::Archive::new(&mut counted);
        let entries = ar.entries().map_err(|e| format!("{name}: {e}"))?;
        for e in entries {
            let mut e = e.map_err(|e| format!("{name}: corrupt archive: {e}"))?;
            let path = e
                .path()
                .map_err(|e| format!("{name}: bad member path: {e}"))?
                .to_string_lossy()
                .into_owned();
            if path.starts_with('/') {
                return Err(format!("{name}: member {path}: absolute path"));
            }
            if path.split('/').any(|p| p == "..") {
                return Err(format!("{name}: member {path}: `..` component"));
            }
            let t = e.header().entry_type();
            if t.is_dir() {
                continue;
            }
            if t.is_symlink() {
                return Err(format!("{name}: member {path}: symlink"));
            }
            if t.is_hard_link() {
                return Err(format!("{name}: member {path}: hard link"));
            }
            if !t.is_file() {
                return Err(format!(
                    "{name}: member {path}: device, fifo or special file"
                ));
            }
            if out.len() >= l.max_members {
                return Err(format!("{name}: more than {} members", l.max_members));
            }
            let mut data = Vec::new();
            (&mut e)
                .take(l.max_member_size + 1)
                .read_to_end(&mut data)
                .map_err(|e| format!("{name}: member {path}: {e}"))?;
            if data.len() as u64 > l.max_member_size {
                return Err(format!(
                    "{name}: member {path}: over the member size limit of {} bytes",
                    l.max_member_size
                ));
            }
            total += data.len() as u64;
            if total > l.max_total_size {
                return Err(format!(
                    "{name}: over the total size limit of {} bytes",
                    l.max_total_size
                ));
            }
            out.push(Member {
                path: path.trim_start_matches("./").to_string(),
                data,
            });
        }
    }
    let mut sink = Vec::new();
    counted
        .read_to_end(&mut sink)
        .map_err(|e| format!("{name}: corrupt gzip: {e}"))?;
    Ok(out)
}

#[derive(Default)]
pub struct ParseOptions;

#[allow(dead_code)]
pub struct ParsedFile<'a> {
    pub file: String,
    pub rules: Vec<Rule<'a>>,
    pub errors: Vec<String>,
}

pub struct Rule<'a> {
    pub file_line: usize,
    pub enabled: bool,
    pub gid: u32,
    pub sid: u32,
    pub rev: u32,
    pub msg: Cow<'a, str>,
    pub classtype: Option<&'a str>,
    pub references: Vec<(&'a str, &'a str)>,
    pub metadata: Vec<(&'a str, &'a str)>,
    pub text: Cow<'a, str>,
}

impl Rule<'_> {
    pub fn category(&self) -> Option<&str> {
        self.msg.split_whitespace().nth(1)
    }
}

const ACTIONS: [&str; 9] = [
    "alert",
    "drop",
    "pass",
    "reject",
    "rejectsrc",
    "rejectdst",
    "rejectboth",
    "log",
    "sdrop",
];

pub fn parse_many<'a>(files: &'a [(String, Vec<u8>)], _o: &ParseOptions) -> Vec<ParsedFile<'a>> {
    use rayon::prelude::*;
    files
        .par_iter()
        .map(|(f, d)| parse_bytes(f, d, _o))
        .collect()
}

pub fn parse_bytes<'a>(file: &str, data: &'a [u8], _o: &ParseOptions) -> ParsedFile<'a> {
    let mut pf = ParsedFile {
        file: file.to_string(),
        rules: Vec::new(),
        errors: Vec::new(),
    };
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(raw) else {
            pf.errors.push(format!("{file}:{}: invalid UTF-8", i + 1));
            continue;
        };
        let line = line.trim_end_matches('\r').trim();
        let body = line.trim_start_matches(['#', ' ']);
        let enabled = body.len() == line.len();
        let Some((action, _)) = body.split_once(' ') else {
            continue;
        };
        if !ACTIONS.contains(&action) || !body.contains("sid:") {
            if enabled && ACTIONS.contains(&action) {
                pf.errors
                    .push(format!("{file}:{}: rule without sid", i + 1));
            }
            continue;
        }
        match parse_rule(body, enabled, i + 1) {
            Some(r) => pf.rules.push(r),
            None => pf.errors.push(format!("{file}:{}: malformed rule", i + 1)),
        }
    }
    pf
}

fn parse_rule(text: &str, enabled: bool, line: usize) -> Option<Rule<'_>> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let inner = text.get(open + 1..close)?;
    let mut r = Rule {
        file_line: line,
        enabled,
        gid: 1,
        sid: 0,
        rev: 0,
        msg: Cow::Borrowed(""),
        classtype: None,
        references: Vec::new(),
        metadata: Vec::new(),
        text: Cow::Borrowed(text),
    };
    let bytes = inner.as_bytes();
    let mut start = 0;
    let mut opts = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b';' && (i == 0 || bytes[i - 1] != b'\\') {
            opts.push(inner[start..i].trim());
            start = i + 1;
        }
    }
    let mut have_sid = false;
    for o in opts {
        let (k, v) = o
            .split_once(':')
            .map(|(k, v)| (k.trim(), v.trim()))
            .unwrap_or((o, ""));
        match k {
            "sid" => {
                r.sid = v.parse().ok()?;
                have_sid = true;
            }
            "gid" => r.gid = v.parse().ok()?,
            "rev" => r.rev = v.parse().ok()?,
            "msg" => r.msg = Cow::Borrowed(v.trim_matches('"')),
            "classtype" => r.classtype = Some(v),
            "reference" => {
                if let Some((a, b)) = v.split_once(',') {
                    r.references.push((a.trim(), b.trim()));
                }
            }
            "metadata" => {
                for kv in v.split(',') {
                    let kv = kv.trim();
                    let (a, b) = kv.split_once(' ').unwrap_or((kv, ""));
                    r.metadata.push((a, b.trim()));
                }
            }
            _ => {}
        }
    }
    have_sid.then_some(r)
}
