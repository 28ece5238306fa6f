//! Parsing one logical rule: action, header, options split the Suricata way, decoded fields.

use std::borrow::Cow;
use std::ops::Range;

use super::{Dialect, Header, Rule};

/// Actions Suricata and Snort know (case-insensitive); Suricata 8 adds a scope after `:`.
pub const ACTIONS: [&str; 13] = [
    "alert",
    "drop",
    "pass",
    "reject",
    "rejectsrc",
    "rejectdst",
    "rejectboth",
    "config",
    "accept",
    "log",
    "activate",
    "dynamic",
    "sdrop",
];

const SCOPES: [&str; 4] = ["packet", "flow", "hook", "tx"];

/// Where a rule came from, passed through to the `Rule`.
pub(crate) struct Located {
    pub line: usize,
    pub byte_range: Range<usize>,
    pub enabled: bool,
    pub indented: bool,
    /// Build `options`, `references` and `metadata` (count-only callers skip them; every check
    /// still runs).
    pub details: bool,
}

/// If `b` starts with a known action (optionally with a scope) followed by whitespace or `(`,
/// return the rest after the action.
pub(crate) fn starts_with_action(b: &[u8]) -> Option<&[u8]> {
    let end = b
        .iter()
        .position(|c| c.is_ascii_whitespace() || *c == b'(')
        .unwrap_or(b.len());
    if end == b.len() {
        return None;
    }
    let word = std::str::from_utf8(&b[..end]).ok()?;
    action_ok(word).ok()?;
    Some(&b[end..])
}

fn action_ok(word: &str) -> Result<(), String> {
    let (base, scope) = match word.split_once(':') {
        Some((b, s)) => (b, Some(s)),
        None => (word, None),
    };
    if !ACTIONS.iter().any(|a| a.eq_ignore_ascii_case(base)) {
        return Err(format!(
            "unknown action `{}` (expected one of {})",
            shorten(word),
            ACTIONS.join(", ")
        ));
    }
    if let Some(s) = scope {
        if !SCOPES.iter().any(|x| x.eq_ignore_ascii_case(s)) {
            return Err(format!(
                "unknown action scope `{}` (expected one of {})",
                shorten(s),
                SCOPES.join(", ")
            ));
        }
    }
    Ok(())
}

/// Shorten a value for an error message.
fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.len() <= MAX {
        s.to_string()
    } else {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

/// Parse one rule (`text` starts at the action; any leading `#` already removed).
pub(crate) fn parse_rule<'t>(
    text: &'t str,
    loc: Located,
    dialect: Dialect,
) -> Result<Rule<'t>, String> {
    let details = loc.details;
    let suricata = dialect == Dialect::Suricata || dialect == Dialect::Auto;
    let snort3 = dialect == Dialect::Snort3;

    // Action.
    let action_end = text
        .find(|c: char| is_blank(c) || c == '(')
        .unwrap_or(text.len());
    let action = &text[..action_end];
    if action.is_empty() {
        return Err("rule does not start with an action".into());
    }
    action_ok(action)?;

    // The option body starts at the first `(`.
    let Some(open) = text[action_end..].find('(').map(|i| action_end + i) else {
        return Err("no option body: expected `(` after the header".into());
    };
    let header_text = &text[action_end..open];
    let (header, service) = parse_header(header_text, dialect)?;

    // The body ends at the last `)`; only whitespace may follow it.
    let trimmed = text.trim_ascii_end();
    let close = match trimmed.rfind(')') {
        Some(c) if c > open => c,
        _ => return Err("missing closing `)` at the end of the rule".into()),
    };
    let after = &trimmed[close + 1..];
    if !after.is_empty() {
        return Err(if after.contains(';') {
            "missing closing `)` at the end of the rule".into()
        } else {
            format!(
                "unexpected text after the closing `)`: `{}` (comments must be on their own line)",
                shorten(after.trim())
            )
        });
    }
    let body = &text[open + 1..close];

    let mut rule = Rule {
        file_line: loc.line,
        byte_range: loc.byte_range,
        enabled: loc.enabled,
        indented: loc.indented,
        action: Cow::Borrowed(action),
        header,
        service,
        options: Vec::new(),
        gid: 1,
        sid: 0,
        rev: 0,
        msg: Cow::Borrowed(""),
        classtype: None,
        priority: None,
        references: Vec::new(),
        metadata: Vec::new(),
        noalert: false,
        target: None,
        text: Cow::Borrowed(text),
    };

    // Split on `;` not preceded by `\`, ignoring quotes (as Suricata's SigParseOptions does).
    let bytes = body.as_bytes();
    let mut start = 0;
    let mut segments: Vec<&str> = Vec::with_capacity(24);
    for i in memchr::memchr_iter(b';', bytes) {
        if i > 0 && bytes[i - 1] == b'\\' {
            continue;
        }
        segments.push(&body[start..i]);
        start = i + 1;
    }
    let tail = body[start..].trim_ascii();
    if !tail.is_empty() {
        if suricata {
            return Err(format!("option `{}` has no terminating `;`", shorten(tail)));
        }
        segments.push(tail);
    }

    if details {
        rule.options.reserve_exact(segments.len());
    }
    let (mut seen_sid, mut seen_gid, mut seen_rev) = (false, false, false);
    for seg in segments {
        let seg = seg.trim_ascii();
        if seg.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b':', seg.as_bytes()) {
            Some(i) => (seg[..i].trim_ascii(), seg[i + 1..].trim_ascii()),
            None => (seg, ""),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        {
            return Err(format!(
                "invalid option `{}` (possible missing `;`)",
                shorten(seg)
            ));
        }
        check_value(name, value, snort3)?;
        match name {
            "sid" => {
                if seen_sid {
                    return Err("sid is given twice".into());
                }
                seen_sid = true;
                rule.sid = number("sid", value)?;
                if rule.sid == 0 {
                    return Err("sid must not be 0".into());
                }
            }
            "gid" => {
                if seen_gid {
                    return Err("gid is given twice".into());
                }
                seen_gid = true;
                rule.gid = number("gid", value)?;
            }
            "rev" => {
                if seen_rev {
                    return Err("rev is given twice".into());
                }
                seen_rev = true;
                rule.rev = number("rev", value)?;
            }
            "msg" => rule.msg = unescape_msg(unquote(value)),
            "classtype" => rule.classtype = Some(Cow::Borrowed(value)),
            "priority" => rule.priority = Some(number("priority", value)?),
            "target" => rule.target = Some(Cow::Borrowed(value)),
            "noalert" => rule.noalert = true,
            "flowbits" | "xbits" if value.split(',').any(|p| p.trim() == "noalert") => {
                rule.noalert = true;
            }
            "reference" if details => {
                let (t, v) = match value.split_once(',') {
                    Some((t, v)) => (t.trim(), v.trim()),
                    None => ("", value),
                };
                rule.references.push((Cow::Borrowed(t), Cow::Borrowed(v)));
            }
            "metadata" if details => {
                for entry in value.split(',') {
                    let entry = entry.trim_ascii();
                    if entry.is_empty() {
                        continue;
                    }
                    let (k, v) = match entry.find(is_blank) {
                        Some(i) => (&entry[..i], entry[i..].trim_ascii()),
                        None => (entry, ""),
                    };
                    rule.metadata.push((Cow::Borrowed(k), Cow::Borrowed(v)));
                }
            }
            _ => {}
        }
        if details {
            rule.options
                .push((Cow::Borrowed(name), Cow::Borrowed(value)));
        }
    }
    if !seen_sid {
        return Err("missing required option sid".into());
    }
    Ok(rule)
}

/// Header fields: six (proto, src, sport, dir, dst, dport), or for Snort the header-less (zero)
/// and Snort 3 service-only (one) forms.
fn parse_header(
    h: &str,
    dialect: Dialect,
) -> Result<(Option<Header<'_>>, Option<Cow<'_, str>>), String> {
    let suricata = dialect == Dialect::Suricata || dialect == Dialect::Auto;
    if suricata {
        if let Some(i) = h.find(['\t', '\n', '\r']) {
            let what = if h.as_bytes()[i] == b'\t' {
                "a tab"
            } else {
                "a line break"
            };
            return Err(format!(
                "{what} separates header fields; Suricata accepts only spaces there"
            ));
        }
    }
    // At most 7 slots: a seventh field is already an error, so no allocation is needed.
    let mut fields: [&str; 7] = [""; 7];
    let mut n = 0usize;
    let mut depth = 0i32;
    let mut start: Option<usize> = None;
    // All delimiters are ASCII, so walking bytes keeps every slice on a char boundary.
    for (i, &c) in h.as_bytes().iter().enumerate() {
        match c {
            b'[' => {
                depth += 1;
                start.get_or_insert(i);
            }
            b']' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced `]` in the header".into());
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => {
                if let Some(s) = start.take() {
                    if n < fields.len() {
                        fields[n] = &h[s..i];
                    }
                    n += 1;
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if depth != 0 {
        return Err("unbalanced `[` in the header".into());
    }
    if let Some(s) = start {
        if n < fields.len() {
            fields[n] = &h[s..];
        }
        n += 1;
    }
    match n {
        6 => {
            let dir = fields[3];
            if !matches!(dir, "->" | "<>" | "=>") {
                return Err(format!(
                    "invalid direction `{}` (expected ->, <> or =>)",
                    shorten(dir)
                ));
            }
            Ok((
                Some(Header {
                    proto: Cow::Borrowed(fields[0]),
                    src_addr: Cow::Borrowed(fields[1]),
                    src_port: Cow::Borrowed(fields[2]),
                    direction: Cow::Borrowed(dir),
                    dst_addr: Cow::Borrowed(fields[4]),
                    dst_port: Cow::Borrowed(fields[5]),
                }),
                None,
            ))
        }
        0 if !suricata => Ok((None, None)),
        1 if dialect == Dialect::Snort3 => Ok((None, Some(Cow::Borrowed(fields[0])))),
        0 | 1 => Err(
            "header-less and service-only rules are Snort syntax; parse this file with --dialect snort3"
                .into(),
        ),
        n => Err(format!(
            "header has {n} fields; expected protocol, source, source port, direction, destination, destination port"
        )),
    }
}

/// Keywords whose value must be a quoted string (Suricata's QUOTES_MANDATORY), and which of them
/// may be negated.
fn check_value(name: &str, value: &str, snort3: bool) -> Result<(), String> {
    let (quoted, negatable) = match name {
        "msg" => (true, false),
        "content" | "uricontent" | "pcre" => (true, true),
        _ => (false, false),
    };
    if !quoted {
        return Ok(());
    }
    let v = if negatable {
        value.strip_prefix('!').map_or(value, |r| r.trim_start())
    } else {
        value
    };
    // Suricata takes a pcre with or without quotes (ET 2017 ships `pcre:/Java/\d\.\d/Vi";`, sid
    // 2002945); only a pcre that opens a quote must close it.
    if name == "pcre" && !v.starts_with('"') {
        return Ok(());
    }
    if !v.starts_with('"') || v.len() < 2 {
        return Err(format!(
            "{name} value must be a quoted string: `{}`",
            shorten(value)
        ));
    }
    // Find the closing quote: for content, escape-aware (a bare `"` inside is an error); for pcre
    // and msg, the last `"` (Suricata accepts a bare `"` inside a pcre).
    let inner_end = if name == "content" || name == "uricontent" {
        let b = v.as_bytes();
        let mut i = 1;
        let mut close = None;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => {
                    close = Some(i);
                    break;
                }
                _ => i += 1,
            }
        }
        let Some(c) = close else {
            return Err(format!(
                "{name} value has no closing quote (unterminated string or unescaped `;`): `{}`",
                shorten(value)
            ));
        };
        c
    } else {
        match v[1..].rfind('"') {
            Some(i) => i + 1,
            None => {
                return Err(format!(
                "{name} value has no closing quote (unterminated string or unescaped `;`): `{}`",
                shorten(value)
            ))
            }
        }
    };
    let rest = &v[inner_end + 1..];
    if rest.is_empty() {
        return Ok(());
    }
    // Snort 3 puts content modifiers after the string: `content:"x",nocase`.
    if snort3 && rest.starts_with(',') {
        return Ok(());
    }
    Err(format!(
        "unexpected text after the quoted {name} value: `{}` (possible missing `;`)",
        shorten(rest)
    ))
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// Suricata drops a `\` before any character in msg.
fn unescape_msg(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn number(name: &str, v: &str) -> Result<u32, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{name} `{}` is not a number", shorten(v)));
    }
    v.parse::<u32>().map_err(|_| {
        format!(
            "{name} {} is out of range (at most {})",
            shorten(v),
            u32::MAX
        )
    })
}
