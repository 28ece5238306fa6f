//! Scanning a file into logical rules: line splitting, `\` continuation, comments, disabled rules,
//! Snort 3 multi-line rules and block comments, dialect detection and chunking.

use std::borrow::Cow;
use std::ops::Range;

use super::parse::{parse_rule, starts_with_action, Located};
use super::{Dialect, Rule, RuleError};

/// Pick a dialect for a file: Snort 3 when it shows a Snort 3-only construct, else Suricata.
pub(crate) fn detect(data: &[u8]) -> Dialect {
    let mut pos = 0;
    while pos < data.len() {
        let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
        if snort3_line(&data[pos..end]) {
            return Dialect::Snort3;
        }
        pos = end + 1;
    }
    if snort3_modifiers(data) {
        return Dialect::Snort3;
    }
    Dialect::Suricata
}

/// A line that only Snort 3 writes: a `/*` comment, a line starting with `(`, or a header-less or
/// service-only rule. A trailing `\r` makes no difference (it is neither `(` nor a word).
pub(crate) fn snort3_line(line: &[u8]) -> bool {
    let line = trim_start(line);
    if line.starts_with(b"/*") || line.starts_with(b"(") {
        return true;
    }
    if !line.starts_with(b"#") {
        if let Some(after) = starts_with_action(line) {
            // `alert (` (header-less) or `alert http (` (service-only).
            let rest = trim_start(after);
            if rest.starts_with(b"(") {
                return true;
            }
            let tok = rest
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == b'(')
                .unwrap_or(rest.len());
            if trim_start(&rest[tok..]).starts_with(b"(") {
                return true;
            }
        }
    }
    false
}

/// `data` has an inline content modifier (`content:"x",nocase`, Snort 3 only). Lines end before
/// any match's look-ahead does, so line-aligned pieces of a file answer like the whole file.
pub(crate) fn snort3_modifiers(data: &[u8]) -> bool {
    // Inline content modifiers (`content:"x",nocase`) only exist in Snort 3. One scan for `",`,
    // then a look at what follows, instead of one scan per modifier.
    const MODIFIERS: [&[u8]; 6] = [
        b"nocase",
        b"fast_pattern",
        b"distance ",
        b"within ",
        b"offset ",
        b"depth ",
    ];
    let finder = memchr::memmem::Finder::new(b"\",");
    for pos in finder.find_iter(data) {
        let rest = trim_start(&data[pos + 2..]);
        if MODIFIERS.iter().any(|m| rest.starts_with(m)) {
            return true;
        }
    }
    false
}

/// Cut `data` into ranges of about `size` bytes that end at a line end that does not continue.
pub(crate) fn chunk_boundaries(data: &[u8], size: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let mut cut = (start + size).min(data.len());
        while cut < data.len() {
            match memchr::memchr(b'\n', &data[cut..]) {
                Some(i) => {
                    let nl = cut + i;
                    if ends_with_backslash(strip_cr(&data[start..nl])) {
                        cut = nl + 1;
                        continue;
                    }
                    cut = nl + 1;
                    break;
                }
                None => {
                    cut = data.len();
                    break;
                }
            }
        }
        out.push(start..cut);
        start = cut;
    }
    out
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
    &b[n..]
}

fn strip_cr(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// The line's last non-whitespace byte is `\` (Suricata's continuation rule).
fn ends_with_backslash(line: &[u8]) -> bool {
    line.iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'\\')
}

/// Strip everything from the last `\` on (the continuation marker and any trailing blanks).
fn before_backslash(line: &[u8]) -> &[u8] {
    match line.iter().rposition(|b| *b == b'\\') {
        Some(i) => &line[..i],
        None => line,
    }
}

/// A Snort 3 rule is complete when its option body is closed: the last non-blank byte is a `)`
/// outside quotes, after a `(`.
fn snort3_closed(text: &[u8]) -> bool {
    let Some(open) = memchr::memchr(b'(', text) else {
        return false;
    };
    let mut in_quote = false;
    let mut escaped = false;
    let mut last_close_outside = None;
    for (i, &b) in text.iter().enumerate().skip(open + 1) {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'"' => in_quote = !in_quote,
            b')' if !in_quote => last_close_outside = Some(i),
            _ => {}
        }
    }
    let last_non_ws = text.iter().rposition(|b| !b.is_ascii_whitespace());
    !in_quote && last_close_outside.is_some() && last_close_outside == last_non_ws
}

struct Out<'f, 'a, 's> {
    file: &'f str,
    on_rule: &'s mut dyn FnMut(Rule<'a>),
    errors: Vec<RuleError>,
}

impl Out<'_, '_, '_> {
    fn error(&mut self, line: usize, reason: String) {
        self.errors.push(RuleError {
            file: self.file.to_string(),
            line,
            reason,
        });
    }
}

/// Parse the lines in `range` of `data`; `first_line` is the line number of `range.start`.
/// Each rule goes to `on_rule` (so count-only callers never hold them); returns the errors and the
/// number of lines read (the `\n`s in `range` when it ends with one).
///
/// With `snort3_seen`, every physical line is also checked with [`snort3_line`] (the line part of
/// [`detect`], without a second pass over the bytes); on the first hit the flag is set and parsing
/// stops, as the caller then parses the whole file as Snort 3.
#[allow(clippy::too_many_arguments)]
pub(crate) fn parse_range<'a>(
    file: &str,
    data: &'a [u8],
    range: Range<usize>,
    first_line: usize,
    dialect: Dialect,
    max_len: usize,
    details: bool,
    mut snort3_seen: Option<&mut bool>,
    on_rule: &mut dyn FnMut(Rule<'a>),
) -> (Vec<RuleError>, usize) {
    let mut out = Out {
        file,
        on_rule,
        errors: Vec::new(),
    };
    let end = range.end;
    let mut pos = range.start;
    let mut line_no = first_line;
    let snort3 = dialect == Dialect::Snort3;
    let mut in_block = false; // inside /* … */
    let mut in_begin = false; // inside #begin … #end

    // Returns (content range without the line terminator, start of the next line).
    let next_line = |pos: usize| -> (Range<usize>, usize) {
        let nl = memchr::memchr(b'\n', &data[pos..end]).map(|i| pos + i);
        let line_end = nl.unwrap_or(end);
        let content_end = if line_end > pos && data[line_end - 1] == b'\r' {
            line_end - 1
        } else {
            line_end
        };
        (pos..content_end, nl.map_or(end, |n| n + 1))
    };

    while pos < end {
        let (lr, next) = next_line(pos);
        let start_line = line_no;
        let line = &data[lr.clone()];
        if let Some(seen) = snort3_seen.as_deref_mut() {
            if snort3_line(line) {
                *seen = true;
                return (out.errors, line_no - first_line);
            }
        }
        line_no += 1;

        if snort3 {
            let t = trim_start(line);
            if in_block {
                if let Some(i) = memchr::memmem::find(line, b"*/") {
                    in_block = false;
                    if !trim_start(&line[i + 2..]).is_empty() {
                        out.error(start_line, "text after the end of a /* */ comment".into());
                    }
                }
                pos = next;
                continue;
            }
            if in_begin {
                if t.starts_with(b"#end") {
                    in_begin = false;
                }
                pos = next;
                continue;
            }
            if t.starts_with(b"/*") {
                in_block = memchr::memmem::find(&t[2..], b"*/").is_none();
                pos = next;
                continue;
            }
            if t.starts_with(b"#begin") {
                in_begin = true;
                pos = next;
                continue;
            }
        }

        // Join `\` continuations (Suricata: the next line replaces the `\`, no separator).
        let mut text: Cow<'a, [u8]> = Cow::Borrowed(line);
        let mut last = lr.end;
        pos = next;
        if ends_with_backslash(line) {
            let mut joined = before_backslash(line).to_vec();
            loop {
                if pos >= end {
                    out.error(
                        start_line,
                        "incomplete rule at end of file: the last line ends with a `\\` continuation"
                            .into(),
                    );
                    return (out.errors, line_no - first_line);
                }
                let (r2, n2) = next_line(pos);
                line_no += 1;
                pos = n2;
                last = r2.end;
                let l2 = &data[r2];
                if let Some(seen) = snort3_seen.as_deref_mut() {
                    if snort3_line(l2) {
                        *seen = true;
                        return (out.errors, line_no - first_line);
                    }
                }
                if ends_with_backslash(l2) {
                    joined.extend_from_slice(before_backslash(l2));
                    if joined.len() > max_len {
                        // Keep consuming the continued lines, but stop growing the buffer.
                        joined.truncate(max_len + 1);
                    }
                } else {
                    joined.extend_from_slice(l2);
                    break;
                }
            }
            text = Cow::Owned(joined);
        }

        let body = trim_start(&text);
        if body.is_empty() {
            continue;
        }
        let indented = body.len() != text.len();
        let offset = text.len() - body.len();

        if body[0] == b'#' {
            let stripped = body
                .iter()
                .position(|b| *b != b'#' && *b != b' ' && *b != b'\t')
                .map_or(&body[body.len()..], |i| &body[i..]);
            // A commented-out rule: a known action, then a `(` somewhere on the line.
            let looks_like_rule =
                starts_with_action(stripped).is_some() && memchr::memchr(b'(', stripped).is_some();
            if !looks_like_rule {
                continue;
            }
            let skip = text.len() - stripped.len();
            emit(
                &mut out,
                text,
                skip,
                false,
                indented,
                start_line,
                lr.start..last,
                dialect,
                max_len,
                details,
            );
            continue;
        }

        if snort3 && !snort3_closed(body) {
            // A multi-line Snort 3 rule: gather lines until the option body closes.
            let mut joined = text.into_owned();
            let mut closed = false;
            while pos < end && joined.len() <= max_len {
                let (r2, n2) = next_line(pos);
                line_no += 1;
                pos = n2;
                last = r2.end;
                joined.push(b'\n');
                joined.extend_from_slice(&data[r2]);
                if snort3_closed(&joined) {
                    closed = true;
                    break;
                }
            }
            if !closed {
                out.error(
                    start_line,
                    if joined.len() > max_len {
                        format!("rule is longer than the limit of {max_len} bytes")
                    } else {
                        "incomplete rule at end of file: the option body is never closed with `)`"
                            .into()
                    },
                );
                continue;
            }
            emit(
                &mut out,
                Cow::Owned(joined),
                offset,
                true,
                indented,
                start_line,
                lr.start..last,
                dialect,
                max_len,
                details,
            );
            continue;
        }

        emit(
            &mut out,
            text,
            offset,
            true,
            indented,
            start_line,
            lr.start..last,
            dialect,
            max_len,
            details,
        );
    }
    (out.errors, line_no - first_line)
}

/// Check size, encoding and control bytes of one logical rule, then parse it.
#[allow(clippy::too_many_arguments)]
fn emit<'a>(
    out: &mut Out<'_, 'a, '_>,
    text: Cow<'a, [u8]>,
    skip: usize,
    enabled: bool,
    indented: bool,
    line: usize,
    byte_range: Range<usize>,
    dialect: Dialect,
    max_len: usize,
    details: bool,
) {
    let body_len = text.len() - skip;
    if body_len > max_len {
        out.error(
            line,
            format!("rule is {body_len} bytes, over the limit of {max_len} bytes"),
        );
        return;
    }
    let loc = Located {
        line,
        byte_range,
        enabled,
        indented,
        details,
    };
    let result = match text {
        Cow::Borrowed(b) => match check_bytes(&b[skip..], dialect) {
            Ok(s) => parse_rule(s, loc, dialect),
            Err(e) => Err(e),
        },
        Cow::Owned(v) => {
            let body = v[skip..].to_vec();
            match check_bytes(&body, dialect) {
                Ok(_) => match String::from_utf8(body) {
                    Ok(s) => parse_rule(&s, loc, dialect).map(|r| {
                        let mut r = r.into_owned();
                        r.text = Cow::Owned(s.trim_end().to_string());
                        r
                    }),
                    Err(_) => Err("rule is not valid UTF-8".to_string()),
                },
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(rule) => (out.on_rule)(rule),
        Err(reason) => out.error(line, reason),
    }
}

/// UTF-8 and control bytes, as Suricata checks them (TAB, LF and CR allowed; LF only matters for
/// Snort 3 multi-line rules).
fn check_bytes(b: &[u8], dialect: Dialect) -> Result<&str, String> {
    // Folds without early exit, so the compiler vectorises them (kept apart: a combined fold does
    // not vectorise): non-ASCII bytes, then control bytes; the slower checks below only run when
    // such a byte exists.
    let ascii = b.iter().fold(0u8, |acc, &c| acc | c) < 0x80;
    let s = if ascii {
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(b) }
    } else {
        std::str::from_utf8(b).map_err(|e| {
            format!(
                "rule is not valid UTF-8 (byte 0x{:02x} at column {})",
                b.get(e.valid_up_to()).copied().unwrap_or(0),
                e.valid_up_to() + 1
            )
        })?
    };
    if !b
        .iter()
        .fold(false, |acc, &c| acc | (c < 0x20) | (c == 0x7f))
    {
        return Ok(s);
    }
    if let Some(i) = b.iter().position(|&c| {
        (c < 0x20 && c != b'\t' && c != b'\r' && !(c == b'\n' && dialect == Dialect::Snort3))
            || c == 0x7f
    }) {
        return Err(format!(
            "control byte 0x{:02x} at column {} (rules must be printable text)",
            b[i],
            i + 1
        ));
    }
    Ok(s)
}
