//! Option values: the quoting Suricata requires, `msg` unescaping, numbers.

use std::borrow::Cow;

use super::bytes::{eq_mask, find_word};
use super::parse::shorten;

/// Keywords whose value must be a quoted string (Suricata's QUOTES_MANDATORY), and which of them
/// may be negated.
pub(super) fn check_value(name: &str, value: &str, snort3: bool) -> Result<(), String> {
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
            // Jump to the next `\` or `"`; an escape skips the byte after it.
            i = find_word(
                b,
                i,
                b.len(),
                |w| eq_mask(w, b'\\') | eq_mask(w, b'"'),
                |c| c == b'\\' || c == b'"',
            );
            match b.get(i) {
                Some(b'"') => {
                    close = Some(i);
                    break;
                }
                Some(_) => i += 2,
                None => break,
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
        match v.as_bytes()[1..].iter().rposition(|&c| c == b'"') {
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

pub(super) fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// Suricata drops a `\` before any character in msg.
pub(super) fn unescape_msg(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let Some(first) = memchr::memchr(b'\\', b) else {
        return Cow::Borrowed(s);
    };
    // Byte-wise: `\` is ASCII and never part of a multi-byte character, so dropping it and keeping
    // the next byte verbatim (a lead byte's continuation bytes follow as ordinary bytes) keeps
    // every character whole.
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..first]);
    let mut i = first;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(&n) = b.get(i + 1) {
                out.push(n);
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(o) => Cow::Owned(o),
        // Unreachable by the argument above; the input is returned rather than trusting it.
        Err(_) => Cow::Borrowed(s),
    }
}

pub(super) fn number(name: &str, v: &str) -> Result<u32, String> {
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
