//! The bits of Python that suricata-update's policy files lean on: `shlex.split` (modify lines),
//! `fnmatch` (group and filename matchers), `re` patterns (run by fancy-regex, which has the
//! look-around and back-references Python patterns use) and `re.sub` replacement templates.

use fancy_regex::Regex;

/// `shlex.split(s)` in POSIX mode without comments. `Err` where shlex raises.
pub fn shlex_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut tok = String::new();
    let mut in_tok = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_tok {
                    out.push(std::mem::take(&mut tok));
                    in_tok = false;
                }
            }
            '\\' => {
                let n = chars.next().ok_or("No escaped character")?;
                tok.push(n);
                in_tok = true;
            }
            '\'' => {
                in_tok = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => tok.push(x),
                        None => return Err("No closing quotation".into()),
                    }
                }
            }
            '"' => {
                in_tok = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        // Inside double quotes a backslash escapes only `"` and `\`.
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\')) => tok.push(x),
                            Some(x) => {
                                tok.push('\\');
                                tok.push(x);
                            }
                            None => return Err("No escaped character".into()),
                        },
                        Some(x) => tok.push(x),
                        None => return Err("No closing quotation".into()),
                    }
                }
            }
            _ => {
                tok.push(c);
                in_tok = true;
            }
        }
    }
    if in_tok {
        out.push(tok);
    }
    Ok(out)
}

/// `fnmatch.fnmatch(name, pat)` on POSIX (case-sensitive, `*` crosses `/`).
pub fn fnmatch(name: &str, pat: &str) -> bool {
    fnmatch_regex(pat).is_ok_and(|re| re.is_match(name))
}

/// `fnmatch.translate`, as a regex anchored at both ends.
pub fn fnmatch_regex(pat: &str) -> Result<regex::Regex, regex::Error> {
    let p: Vec<char> = pat.chars().collect();
    let mut out = String::from("(?s)^");
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        i += 1;
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                let mut j = i;
                if j < p.len() && p[j] == '!' {
                    j += 1;
                }
                if j < p.len() && p[j] == ']' {
                    j += 1;
                }
                while j < p.len() && p[j] != ']' {
                    j += 1;
                }
                if j >= p.len() {
                    out.push_str(r"\[");
                } else {
                    let stuff: String = p[i..j].iter().collect();
                    let stuff = stuff.replace('\\', r"\\");
                    i = j + 1;
                    out.push('[');
                    if let Some(rest) = stuff.strip_prefix('!') {
                        out.push('^');
                        out.push_str(rest);
                    } else if stuff.starts_with('^') || stuff.starts_with('[') {
                        out.push('\\');
                        out.push_str(&stuff);
                    } else {
                        out.push_str(&stuff);
                    }
                    out.push(']');
                }
            }
            _ => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    regex::Regex::new(&out)
}

/// A Python pattern compiled for fancy-regex; `ignore_case` is `re.I`.
pub fn py_regex(pat: &str, ignore_case: bool) -> Result<Regex, String> {
    // `\Z` is Python's end of string; fancy-regex spells it `\z`.
    let pat = pat.replace(r"\Z", r"\z");
    let pat = if ignore_case {
        format!("(?i){pat}")
    } else {
        pat
    };
    Regex::new(&pat).map_err(|e| e.to_string())
}

/// One piece of a replacement template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Group(usize),
    Named(String),
}

/// A `re.sub` replacement template (`\1`, `\g<1>`, `\g<name>`, `\n`, …), checked against the
/// pattern's groups when it is read, where Python would fail only on the first rule it modified.
#[derive(Debug, Clone)]
pub struct Template(Vec<Piece>);

impl Template {
    pub fn parse(t: &str, re: &Regex) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let c: Vec<char> = t.chars().collect();
        let mut i = 0;
        let groups = re.captures_len();
        let push = |lit: &mut String, pieces: &mut Vec<Piece>, p: Piece| {
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(lit)));
            }
            pieces.push(p);
        };
        while i < c.len() {
            if c[i] != '\\' {
                lit.push(c[i]);
                i += 1;
                continue;
            }
            let Some(&n) = c.get(i + 1) else {
                return Err("bad escape (end of pattern)".into());
            };
            i += 2;
            match n {
                'g' => {
                    if c.get(i) != Some(&'<') {
                        return Err("missing < after \\g".into());
                    }
                    let end = c[i..]
                        .iter()
                        .position(|&x| x == '>')
                        .ok_or("missing >, unterminated name")?;
                    let name: String = c[i + 1..i + end].iter().collect();
                    i += end + 1;
                    let p = match name.parse::<usize>() {
                        Ok(g) if g < groups => Piece::Group(g),
                        Ok(g) => return Err(format!("invalid group reference {g}")),
                        Err(_) if re.capture_names().any(|x| x == Some(name.as_str())) => {
                            Piece::Named(name)
                        }
                        Err(_) => return Err(format!("unknown group name '{name}'")),
                    };
                    push(&mut lit, &mut pieces, p);
                }
                '0'..='9' => {
                    let mut g = n.to_digit(10).unwrap_or(0) as usize;
                    if n != '0' {
                        if let Some(d) = c.get(i).and_then(|x| x.to_digit(10)) {
                            g = g * 10 + d as usize;
                            i += 1;
                        }
                    }
                    if n == '0' {
                        lit.push('\0');
                    } else if g < groups {
                        push(&mut lit, &mut pieces, Piece::Group(g));
                    } else {
                        return Err(format!("invalid group reference {g}"));
                    }
                }
                'n' => lit.push('\n'),
                't' => lit.push('\t'),
                'r' => lit.push('\r'),
                'a' => lit.push('\u{7}'),
                'b' => lit.push('\u{8}'),
                'f' => lit.push('\u{c}'),
                'v' => lit.push('\u{b}'),
                '\\' => lit.push('\\'),
                x if x.is_ascii_alphabetic() => return Err(format!("bad escape \\{x}")),
                x => {
                    lit.push('\\');
                    lit.push(x);
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template(pieces))
    }

    /// `re.sub(pattern, template, text)`: every match replaced. A group that did not take part
    /// in the match gives an empty string, as in Python 3.5+.
    pub fn sub(&self, re: &Regex, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len() + 16);
        let mut last = 0;
        for caps in re.captures_iter(text) {
            let caps = caps.map_err(|e| e.to_string())?;
            let Some(m) = caps.get(0) else { continue };
            out.push_str(&text[last..m.start()]);
            for p in &self.0 {
                match p {
                    Piece::Lit(s) => out.push_str(s),
                    Piece::Group(g) => out.push_str(caps.get(*g).map_or("", |m| m.as_str())),
                    Piece::Named(n) => out.push_str(caps.name(n).map_or("", |m| m.as_str())),
                }
            }
            last = m.end();
        }
        out.push_str(&text[last..]);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shlex_matches_python() {
        assert_eq!(
            shlex_split(r#"2019401 "\$HOME_NET" "any""#).unwrap(),
            vec!["2019401", r"\$HOME_NET", "any"]
        );
        assert_eq!(
            shlex_split(r#"re:x "(msg:\"a\")" 'b c'"#).unwrap(),
            vec!["re:x", r#"(msg:"a")"#, "b c"]
        );
        assert_eq!(shlex_split(r#""a\d""#).unwrap(), vec![r"a\d"]);
        assert!(shlex_split("\"open").is_err());
        assert_eq!(shlex_split("a \"\" b").unwrap(), vec!["a", "", "b"]);
    }

    #[test]
    fn fnmatch_matches_python() {
        assert!(fnmatch("emerging-dns.rules", "emerging-d*"));
        assert!(fnmatch("rules/emerging-dns.rules", "*dns*"));
        assert!(fnmatch("emerging-dns", "emerging-[cd]ns"));
        assert!(!fnmatch("emerging-dns", "emerging-[!d]ns"));
        assert!(!fnmatch("emerging-dns.rules", "emerging-dns"));
        assert!(fnmatch("a[b", "a[b"));
    }

    #[test]
    fn templates_substitute_groups_like_re_sub() {
        let re = py_regex(r"(alert) (\w+)", false).unwrap();
        let t = Template::parse(r"\2 \g<1>\;", &re).unwrap();
        assert_eq!(t.sub(&re, "alert tcp x alert udp").unwrap(), r"tcp alert\; x udp alert\;");
        assert!(Template::parse(r"\3", &re).is_err());
        assert!(Template::parse(r"\q", &re).is_err());
        let named = py_regex(r"(?P<a>x)", false).unwrap();
        let t = Template::parse(r"[\g<a>]", &named).unwrap();
        assert_eq!(t.sub(&named, "axb").unwrap(), "a[x]b");
    }
}
