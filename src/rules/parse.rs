//! Parsing one logical rule: action, header, options split the Suricata way, decoded fields.

use std::borrow::Cow;
use std::ops::Range;

use super::bytes::{find_byte, find_semi_or_colon, NAME_BYTE};
use super::values::{check_value, number, unescape_msg, unquote};
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
    // `:` is ASCII, so its byte position is a char boundary (a byte scan: actions are short).
    let (base, scope) = match word.bytes().position(|c| c == b':') {
        Some(i) => (&word[..i], Some(&word[i + 1..])),
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
pub(super) fn shorten(s: &str) -> String {
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

fn is_blank_byte(c: u8) -> bool {
    c == b' ' || c == b'\t' || c == b'\n' || c == b'\r'
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

    // Action. Every delimiter is ASCII, so byte positions are char boundaries; the action and
    // header are short, so plain byte loops beat `memchr` and char-pattern searches here.
    let tb = text.as_bytes();
    let action_end = tb
        .iter()
        .position(|&c| is_blank_byte(c) || c == b'(')
        .unwrap_or(tb.len());
    let action = &text[..action_end];
    if action.is_empty() {
        return Err("rule does not start with an action".into());
    }
    action_ok(action)?;

    // The option body starts at the first `(`.
    let Some(open) = tb[action_end..]
        .iter()
        .position(|&c| c == b'(')
        .map(|i| action_end + i)
    else {
        return Err("no option body: expected `(` after the header".into());
    };
    let header_text = &text[action_end..open];
    let (header, service) = parse_header(header_text, dialect)?;

    // The body ends at the last `)`; only whitespace may follow it.
    let trimmed = text.trim_ascii_end();
    let close = match trimmed.as_bytes().iter().rposition(|&c| c == b')') {
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
    // The tail after the last such `;` is looked at first: its "no terminating `;`" error wins
    // over any error in an earlier option.
    let bytes = body.as_bytes();
    let mut split_end = bytes.len();
    let last_semi = loop {
        match memchr::memrchr(b';', &bytes[..split_end]) {
            Some(i) if i > 0 && bytes[i - 1] == b'\\' => split_end = i,
            other => break other,
        }
    };
    let options_end = last_semi.map_or(0, |i| i + 1);
    let tail = body[options_end..].trim_ascii();
    if !tail.is_empty() && suricata {
        return Err(format!("option `{}` has no terminating `;`", shorten(tail)));
    }

    if details {
        rule.options.reserve_exact(16);
    }
    let (mut seen_sid, mut seen_gid, mut seen_rev) = (false, false, false);
    // Segments are short (a few dozen bytes), so one byte loop finds each segment's end and its
    // first `:` together instead of two `memchr` calls per option.
    let mut start = 0;
    loop {
        let (seg, colon) = if start < options_end {
            // `options_end - 1` is an unescaped `;`, so each search below stops at or before it.
            let mut colon = None;
            let mut i = start;
            loop {
                i = if colon.is_none() {
                    find_semi_or_colon(bytes, i, options_end)
                } else {
                    find_byte(bytes, b';', i, options_end)
                };
                if i >= options_end {
                    // Not reached (see above); ends the segment at the last `;` all the same.
                    i = options_end - 1;
                    break;
                }
                match bytes[i] {
                    b';' if i == 0 || bytes[i - 1] != b'\\' => break,
                    b':' if colon.is_none() => colon = Some(i),
                    _ => {}
                }
                i += 1;
            }
            let seg = (start, i, colon);
            start = i + 1;
            seg_parts(body, seg)
        } else if start == options_end && !tail.is_empty() {
            // Snort 2/3: the last option may omit its `;`.
            start += 1;
            let colon = memchr::memchr(b':', tail.as_bytes())
                .map(|c| (tail[..c].trim_ascii(), tail[c + 1..].trim_ascii()));
            (tail, colon)
        } else {
            break;
        };
        if seg.is_empty() {
            continue;
        }
        let (name, value) = match colon {
            Some((n, v)) => (n, v),
            None => (seg, ""),
        };
        if name.is_empty() || !name.bytes().all(|b| NAME_BYTE[usize::from(b)]) {
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
            // The substring test first: most flowbits values never mention noalert.
            "flowbits" | "xbits"
                if memchr::memmem::find(value.as_bytes(), b"noalert").is_some()
                    && value.split(',').any(|p| p.trim() == "noalert") =>
            {
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
                    let (k, v) = match entry.bytes().position(is_blank_byte) {
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

/// A segment `body[start..end]` trimmed, and its name and value around the first `:` (at
/// `colon`, if any), each trimmed.
#[allow(clippy::type_complexity)]
fn seg_parts(
    body: &str,
    (start, end, colon): (usize, usize, Option<usize>),
) -> (&str, Option<(&str, &str)>) {
    let seg = body[start..end].trim_ascii();
    let parts = colon.map(|c| (body[start..c].trim_ascii(), body[c + 1..end].trim_ascii()));
    (seg, parts)
}

/// Header fields: six (proto, src, sport, dir, dst, dport), or for Snort the header-less (zero)
/// and Snort 3 service-only (one) forms.
fn parse_header(
    h: &str,
    dialect: Dialect,
) -> Result<(Option<Header<'_>>, Option<Cow<'_, str>>), String> {
    let suricata = dialect == Dialect::Suricata || dialect == Dialect::Auto;
    if suricata {
        if let Some(i) = h
            .bytes()
            .position(|c| c == b'\t' || c == b'\n' || c == b'\r')
        {
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
