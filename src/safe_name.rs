//! Untrusted text (inbox names, archive member paths, manifest paths, file names, and the messages
//! that carry them) shown safely: control characters are escaped, so a name cannot start a new
//! line (forging a `stored` line), drive the terminal with ESC sequences, or reorder text with
//! bidirectional overrides. Applied where text leaves the process: the terminal, logs, `reason`
//! files and the journal.

use std::borrow::Cow;
use std::fmt::Write;
use std::path::Path;

/// `s` with every control character written as an escape (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path for a message, escaped.
pub fn path(p: &Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        // Line and paragraph separators, and the bidi embeddings, overrides and isolates.
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_untouched() {
        assert!(matches!(escape("et-open-00000001"), Cow::Borrowed(_)));
        assert_eq!(
            escape("x\nstored et-open\x1b[2J\x07\u{202e}"),
            "x\\nstored et-open\\x1b[2J\\x07\\u{202e}"
        );
        assert_eq!(escape("tab\there\r"), "tab\\there\\r");
        assert_eq!(escape("\u{85}é"), "\\x85é");
    }
}
