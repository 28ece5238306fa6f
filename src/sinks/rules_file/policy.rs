//! suricata-update 1.3's policy files (`disable.conf`, `enable.conf`, `drop.conf`,
//! `modify.conf`) and what they do to the rules: `suricata/update/matchers.py` and the policy
//! loop of `main.py`, ported with the same order and the same quirks. One deliberate
//! difference: a line that does not parse is an error naming the file and line (suricata-update
//! logs a warning and goes on without it, which silently changes what a sensor runs).

use std::path::{Path, PathBuf};

use fancy_regex::Regex;

use super::parse::{parse, py_int, py_strip, SuRule};
use super::pyfmt::{fnmatch_regex, py_regex, shlex_split, Template};

/// A rule matcher (`parse_rule_match`).
#[derive(Debug, Clone)]
pub enum Matcher {
    /// `*`
    All,
    /// `sid`, `gid:sid`, comma-separated lists of them.
    Id(Vec<(i64, i64)>),
    /// `re:` on the rule text (without a leading `#`), case-insensitive.
    Re(Regex),
    /// `filename:` glob on the rule's archive member path (compiled once: a glob per rule and
    /// matcher would dominate the run).
    Filename(regex::Regex),
    /// `group:` glob on the member's base name, with or without `.rules`; a bare `*.rules` too.
    Group(regex::Regex),
    /// `metadata:key value`, case-insensitive.
    Metadata(String, String),
}

impl Matcher {
    /// Parse one matcher; `None` where suricata-update's `parse_rule_match` returns `None`.
    pub fn parse(buf: &str) -> Option<Matcher> {
        if py_strip(buf) == "*" {
            return Some(Matcher::All);
        }
        if let Some(ids) = buf
            .split(',')
            .map(|e| {
                let e = py_strip(e);
                match e.split_once(':') {
                    None => py_int(e).map(|s| (1, s)),
                    Some((g, s)) => Some((py_int(g)?, py_int(s)?)),
                }
            })
            .collect::<Option<Vec<_>>>()
        {
            return Some(Matcher::Id(ids));
        }
        if let Some(p) = buf.strip_prefix("re:") {
            if let Ok(re) = py_regex(py_strip(p), true) {
                return Some(Matcher::Re(re));
            }
        }
        if let Some(p) = buf.strip_prefix("filename:") {
            return fnmatch_regex(py_strip(p)).ok().map(Matcher::Filename);
        }
        if let Some(p) = buf.strip_prefix("group:") {
            return fnmatch_regex(py_strip(p)).ok().map(Matcher::Group);
        }
        if buf.ends_with(".rules") {
            return fnmatch_regex(py_strip(buf)).ok().map(Matcher::Group);
        }
        if let Some(p) = buf.strip_prefix("metadata:") {
            if let Some((k, v)) = py_strip(p).split_once(' ') {
                return Some(Matcher::Metadata(
                    py_strip(k).to_lowercase(),
                    py_strip(v).to_lowercase(),
                ));
            }
        }
        None
    }

    pub fn matches(&self, r: &SuRule) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Id(ids) => ids.iter().any(|&id| id == r.id()),
            Matcher::Re(re) => re.is_match(&r.raw).unwrap_or(false),
            Matcher::Filename(p) => r.group.as_deref().is_some_and(|g| p.is_match(g)),
            Matcher::Group(p) => r.group.as_deref().is_some_and(|g| {
                let base = g.rsplit('/').next().unwrap_or(g);
                p.is_match(base) || p.is_match(splitext(base))
            }),
            Matcher::Metadata(k, v) => r.metadata.iter().any(|e| {
                // suricata-update raises on an entry without a value whose key matches; here
                // such an entry simply does not match.
                let e = py_strip(e);
                let (ek, ev) = e.split_once(' ').unwrap_or((e, ""));
                py_strip(ek).to_lowercase() == *k
                    && e.contains(' ')
                    && py_strip(ev).to_lowercase() == *v
            }),
        }
    }
}

/// `os.path.splitext` of a base name: a leading dot does not start an extension.
fn splitext(base: &str) -> &str {
    match base.rfind('.') {
        Some(i) if base[..i].chars().any(|c| c != '.') => &base[..i],
        _ => base,
    }
}

/// A `modify.conf` line.
#[derive(Debug, Clone)]
pub enum Modify {
    /// `<matcher> "<from>" "<to>"` (or Oinkmaster's `modifysid … | …`).
    Sub {
        matcher: Matcher,
        pattern: Regex,
        repl: Template,
    },
    /// `metadata-add <matcher> <key> <value>`.
    AddMetadata {
        matcher: Matcher,
        key: String,
        val: String,
    },
}

/// The four policy files, read.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub disable: Vec<Matcher>,
    pub enable: Vec<Matcher>,
    pub drop: Vec<Matcher>,
    pub modify: Vec<Modify>,
}

/// What the policy did, counted as suricata-update counts it (a rule once per kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PolicyCounts {
    pub disabled: usize,
    pub enabled: usize,
    pub dropped: usize,
    pub modified: usize,
}

/// Policy file paths, as configured.
#[derive(Debug, Clone, Default)]
pub struct PolicyFiles {
    pub disable: Option<PathBuf>,
    pub enable: Option<PathBuf>,
    pub drop: Option<PathBuf>,
    pub modify: Option<PathBuf>,
}

/// A policy file's meaningful lines: `(line number, text)` after suricata-update's own
/// clean-up (`strip`, comment lines skipped, everything from the first ` #` cut).
fn lines(path: &Path) -> anyhow::Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read policy file {}: {e}", path.display()))?;
    // Python reads text files with universal newlines.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = py_strip(l);
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            Some((i + 1, l.split(" #").next().unwrap_or(l).to_string()))
        })
        .collect())
}

fn bad(path: &Path, line: usize, what: impl std::fmt::Display) -> anyhow::Error {
    crate::exit::usage(format!(
        "policy file {}, line {line}: {what}",
        path.display()
    ))
}

fn load_matchers(path: &Path) -> anyhow::Result<Vec<Matcher>> {
    lines(path)?
        .into_iter()
        .map(|(n, l)| {
            Matcher::parse(&l).ok_or_else(|| {
                bad(
                    path,
                    n,
                    format!(
                        "{l:?} is not a matcher (sid, gid:sid, re:, group:, filename:, \
                         metadata:, *)"
                    ),
                )
            })
        })
        .collect()
}

fn load_modify(path: &Path) -> anyhow::Result<Vec<Modify>> {
    let mut out = Vec::new();
    for (n, line) in lines(path)? {
        let line = py_strip(&line).to_string();
        if line.starts_with("metadata-add") {
            let tokens = shlex_split(&line).map_err(|e| bad(path, n, e))?;
            let [_, m, key, val] = <[String; 4]>::try_from(tokens)
                .map_err(|_| bad(path, n, "metadata-add takes <matcher> <key> <value>"))?;
            let matcher =
                Matcher::parse(&m).ok_or_else(|| bad(path, n, format!("bad matcher {m:?}")))?;
            out.push(Modify::AddMetadata { matcher, key, val });
            continue;
        }
        // `\$` stands for `$` (suricata-update's own escape, applied before shlex).
        let tokens = shlex_split(&line.replace(r"\$", "$")).map_err(|e| bad(path, n, e))?;
        let (m, a, b) = if tokens.len() == 3 {
            (&tokens[0], &tokens[1], &tokens[2])
        } else if tokens.len() > 4 && tokens[0] == "modifysid" {
            (&tokens[1], &tokens[2], &tokens[4])
        } else {
            return Err(bad(
                path,
                n,
                "expected <matcher> \"<from>\" \"<to>\" (three fields)",
            ));
        };
        let matcher =
            Matcher::parse(m).ok_or_else(|| bad(path, n, format!("bad matcher {m:?}")))?;
        let pattern =
            py_regex(a, false).map_err(|e| bad(path, n, format!("pattern {a:?}: {e}")))?;
        // Oinkmaster's `${1}` is Python's `\1`.
        let b = braces_re().replace_all(b, r"\${1}");
        let repl = Template::parse(&b, &pattern)
            .map_err(|e| bad(path, n, format!("replacement {b:?}: {e}")))?;
        out.push(Modify::Sub {
            matcher,
            pattern,
            repl,
        });
    }
    Ok(out)
}

fn braces_re() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"\$\{(\d+)\}").unwrap_or_else(|_| unreachable!()))
}

impl PolicyFiles {
    /// Read every configured file; a line that does not parse is an error naming file and line.
    pub fn load(&self) -> anyhow::Result<Policy> {
        let m = |p: &Option<PathBuf>| p.as_deref().map(load_matchers).unwrap_or(Ok(Vec::new()));
        Ok(Policy {
            disable: m(&self.disable)?,
            enable: m(&self.enable)?,
            drop: m(&self.drop)?,
            modify: self
                .modify
                .as_deref()
                .map(load_modify)
                .unwrap_or(Ok(Vec::new()))?,
        })
    }

    /// The configured paths, in a fixed order.
    pub fn paths(&self) -> Vec<&Path> {
        [&self.disable, &self.enable, &self.drop, &self.modify]
            .into_iter()
            .flatten()
            .map(|p| p.as_path())
            .collect()
    }
}

/// A rule whose change made it unparseable stays as it was (suricata-update logs the same).
fn reparse(text: &str, old: &SuRule, group: Option<std::sync::Arc<str>>, why: &str) -> SuRule {
    match parse(text, group) {
        Ok(Some(r)) => r,
        _ => {
            tracing::warn!(
                "{why} of rule [{}:{}] results in an invalid rule, kept unchanged: {text}",
                old.gid,
                old.sid
            );
            old.clone()
        }
    }
}

impl Policy {
    /// Apply disable, enable, drop and modify to every rule, in that order, as suricata-update's
    /// main loop does.
    pub fn apply(&self, rules: &mut [SuRule]) -> PolicyCounts {
        let mut c = PolicyCounts::default();
        for slot in rules.iter_mut() {
            let mut rule = std::mem::replace(slot, placeholder());
            let (mut enabled, mut modified, mut dropped) = (false, false, false);
            for m in &self.disable {
                if rule.enabled && m.matches(&rule) {
                    rule.enabled = false;
                    c.disabled += 1;
                }
            }
            for m in &self.enable {
                if !rule.enabled && m.matches(&rule) {
                    rule.enabled = true;
                    enabled = true;
                }
            }
            for m in &self.drop {
                if !rule.noalert && m.matches(&rule) {
                    let text = drop_re().replace(&rule.raw, "drop").into_owned();
                    // Like suricata-update, the drop rule is parsed without its group.
                    let mut d = reparse(&text, &rule, None, "drop");
                    d.enabled = rule.enabled;
                    rule = d;
                    dropped = true;
                }
            }
            for m in &self.modify {
                match m {
                    Modify::Sub {
                        matcher,
                        pattern,
                        repl,
                    } if matcher.matches(&rule) => {
                        let group = rule.group.clone();
                        match repl.sub(pattern, &rule.format()) {
                            Ok(text) => rule = reparse(&text, &rule, group, "modification"),
                            Err(e) => tracing::warn!(
                                "modify of rule [{}:{}] failed: {e}",
                                rule.gid,
                                rule.sid
                            ),
                        }
                        modified = true;
                    }
                    Modify::AddMetadata { matcher, key, val } if matcher.matches(&rule) => {
                        let group = rule.group.clone();
                        let text = metadata_re()
                            .replace(
                                &rule.format(),
                                format!("; metadata: {key} {val};)").as_str(),
                            )
                            .into_owned();
                        rule = reparse(&text, &rule, group, "metadata-add");
                        modified = true;
                    }
                    _ => {}
                }
            }
            c.enabled += enabled as usize;
            c.modified += modified as usize;
            c.dropped += dropped as usize;
            *slot = rule;
        }
        c
    }
}

fn drop_re() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^\w+").unwrap_or_else(|_| unreachable!()))
}

fn metadata_re() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r";\s*\)$").unwrap_or_else(|_| unreachable!()))
}

fn placeholder() -> SuRule {
    SuRule {
        enabled: false,
        action: String::new(),
        proto: None,
        gid: 0,
        sid: 0,
        rev: 0,
        msg: String::new(),
        flowbits: Vec::new(),
        metadata: Vec::new(),
        references: Vec::new(),
        classtype: None,
        noalert: false,
        raw: String::new(),
        group: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rule(text: &str, group: &str) -> SuRule {
        parse(text, Some(Arc::from(group))).unwrap().unwrap()
    }

    #[test]
    fn matchers_parse_like_parse_rule_match() {
        assert!(matches!(Matcher::parse("2000001"), Some(Matcher::Id(v)) if v == [(1, 2000001)]));
        assert!(
            matches!(Matcher::parse("1:2, 3:4"), Some(Matcher::Id(v)) if v == [(1, 2), (3, 4)])
        );
        assert!(matches!(Matcher::parse("re:trojan"), Some(Matcher::Re(_))));
        assert!(matches!(
            Matcher::parse("group:emerging-dns"),
            Some(Matcher::Group(_))
        ));
        assert!(matches!(
            Matcher::parse("emerging-dns.rules"),
            Some(Matcher::Group(_))
        ));
        assert!(
            matches!(Matcher::parse("metadata: deployment perimeter"), Some(Matcher::Metadata(k, v)) if k == "deployment" && v == "perimeter")
        );
        assert!(matches!(Matcher::parse("*"), Some(Matcher::All)));
        assert!(Matcher::parse("emerging-dns").is_none());
        assert!(Matcher::parse("metadata:novalue").is_none());
    }

    #[test]
    fn group_matches_base_name_with_or_without_extension() {
        let r = rule("alert tcp any any -> any any (msg:\"x\"; metadata:Deployment Perimeter; sid:1; rev:1;)", "rules/emerging-dns.rules");
        for p in [
            "group:emerging-dns",
            "group:emerging-dns.rules",
            "group:emerging-d*",
            "emerging-dns.rules",
        ] {
            assert!(Matcher::parse(p).unwrap().matches(&r), "{p}");
        }
        assert!(!Matcher::parse("group:rules/emerging-dns.rules")
            .unwrap()
            .matches(&r));
        assert!(Matcher::parse("filename:rules/emerging-dns.rules")
            .unwrap()
            .matches(&r));
        assert!(Matcher::parse("metadata:deployment perimeter")
            .unwrap()
            .matches(&r));
        assert!(Matcher::parse("re:MSG:\"X\"").unwrap().matches(&r));
    }

    #[test]
    fn order_is_disable_enable_drop_modify() {
        let mut rules = vec![
            rule(
                "alert tcp any any -> any any (msg:\"a\"; sid:1; rev:1;)",
                "rules/a.rules",
            ),
            rule(
                "# alert tcp any any -> any any (msg:\"b\"; sid:2; rev:1;)",
                "rules/a.rules",
            ),
        ];
        let p = Policy {
            disable: vec![Matcher::parse("1").unwrap(), Matcher::parse("2").unwrap()],
            enable: vec![Matcher::parse("2").unwrap()],
            drop: vec![Matcher::parse("2").unwrap()],
            modify: Vec::new(),
        };
        let c = p.apply(&mut rules);
        assert!(!rules[0].enabled);
        assert!(rules[1].enabled);
        assert_eq!(
            rules[1].raw,
            "drop tcp any any -> any any (msg:\"b\"; sid:2; rev:1;)"
        );
        assert_eq!(rules[1].group, None);
        assert_eq!(
            c,
            PolicyCounts {
                disabled: 1,
                enabled: 1,
                dropped: 1,
                modified: 0
            }
        );
    }
}
