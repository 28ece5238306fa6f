//! Rules as suricata-update 1.3 reads them (`suricata/update/rule.py`), ported line by line so
//! that the rules file etferry writes holds the same rules, with the same text, as the one
//! suricata-update writes from the same archive. etferry's own parser (`crate::rules`) is stricter
//! and richer; it is not used here on purpose: what matters for a sensor is what suricata-update
//! would have kept.

use std::sync::Arc;

/// Actions suricata-update accepts (`rule.actions`).
const ACTIONS: [&str; 8] = [
    "alert", "log", "pass", "activate", "dynamic", "drop", "reject", "sdrop",
];

/// One rule, with the fields suricata-update's policy and output use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuRule {
    pub enabled: bool,
    pub action: String,
    pub proto: Option<String>,
    pub gid: i64,
    pub sid: i64,
    pub rev: i64,
    pub msg: String,
    /// `flowbits` values in order (`None` for a bare `flowbits;`).
    pub flowbits: Vec<Option<String>>,
    /// `metadata` entries, each `key value`.
    pub metadata: Vec<String>,
    pub references: Vec<Option<String>>,
    pub classtype: Option<String>,
    pub noalert: bool,
    /// The rule without its leading `#`s and whitespace.
    pub raw: String,
    /// The archive member the rule came from; suricata-update drops it when a rule is turned
    /// into a drop rule, and so does this port.
    pub group: Option<Arc<str>>,
}

impl SuRule {
    /// `(gid, sid)`.
    pub fn id(&self) -> (i64, i64) {
        (self.gid, self.sid)
    }

    /// The rule as written to the rules file: `# ` before a disabled rule, `noalert;` inserted
    /// before `sid:` for a rule that must not alert (`Rule.format`, which also stores the change).
    pub fn format(&mut self) -> String {
        if self.noalert && !self.raw.contains("noalert;") {
            self.raw = noalert_re()
                .replace_all(&self.raw, " noalert;${1}")
                .into_owned();
        }
        if self.enabled {
            self.raw.clone()
        } else {
            format!("# {}", self.raw)
        }
    }
}

fn noalert_re() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        // The pattern of rule.py; a literal, so it always compiles.
        regex::Regex::new(r"( *sid: *[0-9]+;)").unwrap_or_else(|_| unreachable!())
    })
}

/// Python's `str.isspace()`: Unicode white space plus the ASCII separators 0x1c–0x1f.
pub fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// Python's `int(str)` for the forms rules use: optional sign, ASCII digits with single
/// underscores between them, surrounding white space. `None` where Python raises.
pub fn py_int(s: &str) -> Option<i64> {
    let t = py_strip(s);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
        return None;
    }
    if digits.contains("__") || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    let v: i64 = digits.replace('_', "").parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Python indexing of `s[k]` (negative counts from the end); `None` for an IndexError.
fn py_at<T: Copy>(s: &[T], k: isize) -> Option<T> {
    let n = s.len() as isize;
    let k = if k < 0 { k + n } else { k };
    (0..n).contains(&k).then(|| s[k as usize])
}

/// `find_opt_end`: the index of the `;` that ends the first option, skipping `\;`. Its
/// quirks (the escape skip moves two characters at a time; a missing `;` reads backwards) are
/// kept, since they decide which rules suricata-update drops.
/// Generic over bytes (ASCII text) and chars (Python indexes by character).
fn find_opt_end<T: Copy + PartialEq + From<u8>>(o: &[T]) -> Result<isize, String> {
    let (semi, backslash) = (T::from(b';'), T::from(b'\\'));
    let mut offset: isize = 0;
    loop {
        let from = (offset.max(0) as usize).min(o.len());
        let i = o[from..]
            .iter()
            .position(|&c| c == semi)
            .map(|p| p as isize)
            .unwrap_or(-1);
        match py_at(o, offset + i - 1) {
            Some(c) if c == backslash => offset += 2,
            Some(_) => return Ok(offset + i),
            None => return Err("string index out of range".into()),
        }
    }
}

/// Parse one rule (`rule.parse`). `Ok(None)`: not a rule; `Err`: suricata-update raises and logs
/// "Failed to parse rule", and the rule is skipped.
pub fn parse(buf: &str, group: Option<Arc<str>>) -> Result<Option<SuRule>, String> {
    let s = py_strip(buf);
    let enabled = !s.starts_with('#');
    // `[\s#]*` then `[^()]+ \( .* \)$`: the header runs to the first `(`, the options to the
    // last `)`, which must end the line.
    let rest = s.trim_start_matches(|c: char| c == '#' || py_space(c));
    let Some(open) = rest.find('(') else {
        return Ok(None);
    };
    if open == 0 || !rest.ends_with(')') || rest[..open].contains(')') || rest.contains('\n') {
        return Ok(None);
    }
    let raw = py_strip(rest).to_string();
    let header = py_strip(&rest[..open]);
    let options_str = &rest[open + 1..rest.len() - 1];

    let mut proto = None;
    let action;
    if !header.contains(' ') {
        action = header.to_string();
    } else {
        let mut rem = header;
        let mut tokens: Vec<&str> = Vec::with_capacity(7);
        while tokens.len() < 7 {
            if rem.is_empty() {
                return Ok(None);
            }
            let token;
            if rem.starts_with('[') {
                let Some(end) = rem.find(']') else {
                    return Ok(None);
                };
                token = py_strip(&rem[..end + 1]);
                rem = py_strip(&rem[end + 1..]);
            } else if let Some(end) = rem.find(' ') {
                token = py_strip(&rem[..end]);
                rem = py_strip(&rem[end..]);
            } else {
                token = rem;
                rem = "";
            }
            tokens.push(token);
        }
        action = tokens[0].to_string();
        proto = Some(tokens[1].to_string());
    }
    if !ACTIONS.contains(&action.as_str()) {
        return Ok(None);
    }

    let mut r = SuRule {
        enabled,
        action,
        proto,
        gid: 1,
        sid: 0,
        rev: 0,
        msg: String::new(),
        flowbits: Vec::new(),
        metadata: Vec::new(),
        references: Vec::new(),
        classtype: None,
        noalert: false,
        raw,
        group,
    };
    // `options` is `[start..end]` of the options text, counted in characters as Python does;
    // Python re-slices and strips the string after each option, which here is moving the two
    // ends. ASCII text (every ET rule) is walked as bytes, other text as chars with their byte
    // offsets, so that no option is copied.
    let ascii = options_str.is_ascii();
    let chars: Vec<char> = if ascii {
        Vec::new()
    } else {
        options_str.chars().collect()
    };
    let offsets: Vec<usize> = if ascii {
        Vec::new()
    } else {
        options_str
            .char_indices()
            .map(|(i, _)| i)
            .chain([options_str.len()])
            .collect()
    };
    let bytes = options_str.as_bytes();
    let count = if ascii { bytes.len() } else { chars.len() };
    let at = |k: usize| if ascii { bytes[k] as char } else { chars[k] };
    let byte = |k: usize| if ascii { k } else { offsets[k] };
    let (mut start, mut end) = (0usize, count);
    let mut have_sid = false;
    while start < end {
        let index = if ascii {
            find_opt_end(&bytes[start..end])?
        } else {
            find_opt_end(&chars[start..end])?
        };
        if index < 0 {
            return Err("no end of option".into());
        }
        let index = index as usize;
        let option = py_strip(&options_str[byte(start)..byte(start + index.min(end - start))]);
        start = (start + index + 1).min(end);
        while start < end && py_space(at(start)) {
            start += 1;
        }
        while end > start && py_space(at(end - 1)) {
            end -= 1;
        }
        let (name, val) = match option.split_once(':') {
            Some((n, v)) => (py_strip(n), Some(py_strip(v))),
            None => (option, None),
        };
        let int = |v: Option<&str>| {
            v.and_then(py_int)
                .ok_or_else(|| format!("invalid literal for int(): {v:?}"))
        };
        match name {
            "gid" => r.gid = int(val)?,
            "sid" => {
                r.sid = int(val)?;
                have_sid = true;
            }
            "rev" => r.rev = int(val)?,
            "metadata" => {
                let v = val.ok_or("'NoneType' object has no attribute 'split'")?;
                r.metadata
                    .extend(v.split(',').map(|e| py_strip(e).to_string()));
            }
            "flowbits" => {
                if val.is_some_and(|v| v.contains("noalert")) {
                    r.noalert = true;
                }
                r.flowbits.push(val.map(str::to_string));
            }
            "noalert" => r.noalert = true,
            "reference" => r.references.push(val.map(str::to_string)),
            "msg" => {
                r.msg = match val {
                    Some(v) if v.starts_with('"') && v.ends_with('"') => {
                        let c: Vec<char> = v.chars().collect();
                        c[1.min(c.len())..c.len().saturating_sub(1).max(1.min(c.len()))]
                            .iter()
                            .collect()
                    }
                    Some(v) => v.to_string(),
                    None => String::new(),
                }
            }
            "classtype" => r.classtype = val.map(str::to_string),
            _ => {}
        }
    }
    if !have_sid || r.sid == 0 {
        return Err("Sid cannot be of type null".into());
    }
    Ok(Some(r))
}

/// Every rule of one rules file (`rule.parse_fileobj`): lines ending in `\` continue on the
/// next; lines that are not rules are skipped; rules that raise are reported as
/// `(line, reason)` and skipped.
pub fn parse_file(data: &[u8], group: &Arc<str>) -> (Vec<SuRule>, Vec<(usize, String)>) {
    let text = String::from_utf8_lossy(data);
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut buf = String::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end_matches(py_space);
        if let Some(body) = trimmed.strip_suffix('\\') {
            buf.push_str(body);
            buf.push(' ');
            continue;
        }
        buf.push_str(line);
        match parse(&buf, Some(group.clone())) {
            Ok(Some(r)) => rules.push(r),
            Ok(None) => {}
            Err(e) => errors.push((n + 1, e)),
        }
        buf.clear();
    }
    (rules, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<SuRule> {
        parse(s, None).ok().flatten()
    }

    #[test]
    fn commented_rules_are_disabled_and_keep_their_raw_text() {
        let r = p("## alert tcp any any -> any any (msg:\"ET X\"; sid:5; rev:2;)").unwrap();
        assert!(!r.enabled);
        assert_eq!(
            r.raw,
            "alert tcp any any -> any any (msg:\"ET X\"; sid:5; rev:2;)"
        );
        assert_eq!((r.gid, r.sid, r.rev, r.msg.as_str()), (1, 5, 2, "ET X"));
    }

    #[test]
    fn a_last_option_without_semicolon_drops_the_rule_as_suricata_update_does() {
        assert!(parse(
            "alert tcp any any -> any any (msg:\"x\"; sid:5; rev:1)",
            None
        )
        .is_err());
        assert!(p("# This is a comment (not a rule)").is_none());
        assert!(p("alert tcp any any -> any any (msg:\"x\"; rev:1;)").is_none());
    }

    #[test]
    fn flowbits_and_noalert_are_read_and_formatted() {
        let mut r = p("alert tcp any any -> any any (msg:\"x\"; flowbits:set,ET.a; flowbits:noalert; sid:7; rev:1;)").unwrap();
        assert!(r.noalert);
        assert_eq!(
            r.flowbits,
            vec![Some("set,ET.a".into()), Some("noalert".into())]
        );
        let mut s = p("alert tcp any any -> any any (msg:\"x\"; flowbits:set,ET.b; sid:8; rev:1;)")
            .unwrap();
        s.noalert = true;
        s.enabled = false;
        assert_eq!(
            s.format(),
            "# alert tcp any any -> any any (msg:\"x\"; flowbits:set,ET.b; noalert; sid:8; rev:1;)"
        );
        assert_eq!(r.format(), r.raw);
    }

    #[test]
    fn escaped_semicolons_stay_inside_an_option() {
        let r =
            p(r#"alert tcp any any -> any any (msg:"a\;b"; content:"x"; sid:9; rev:1;)"#).unwrap();
        assert_eq!(r.msg, r"a\;b");
    }

    #[test]
    fn non_ascii_rules_are_read_by_character() {
        let r =
            p("alert tcp any any -> any any (msg:\"ünïcødé\\;x\"; content:\"é\"; sid:10; rev:1;)")
                .unwrap();
        assert_eq!(r.msg, "ünïcødé\\;x");
        assert_eq!(r.sid, 10);
    }

    #[test]
    fn py_int_follows_python() {
        assert_eq!(py_int(" 12 "), Some(12));
        assert_eq!(py_int("1_000"), Some(1000));
        assert_eq!(py_int("1__0"), None);
        assert_eq!(py_int("x"), None);
        assert_eq!(py_int(""), None);
    }
}
