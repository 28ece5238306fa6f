//! Snort / Suricata rule files: scanning bytes into logical rules and parsing each one.
//!
//! Never touches the file system: callers hand in bytes. Every malformed rule becomes a
//! [`RuleError`] with file, line and reason, and parsing continues with the next rule, so one bad
//! rule never costs the others. Time is linear in the input: hand-written scanning, no regexes.
//!
//! Dialect choices (see also docs/parsing.md):
//! - **Suricata** (the reference, default for ET files): options end at a `;` not preceded by `\`,
//!   quotes are ignored while splitting (a bare `"` inside a pcre is legal, a raw `;` is not); the last
//!   option needs its `;`; header fields are separated by spaces only (a tab is an error); nothing
//!   but whitespace may follow the closing `)`; `msg`, `content`, `uricontent` and `pcre` values must be
//!   quoted; a `\` at the end of a line continues the rule on the next line, joined without a separator.
//! - **Snort 2**: as Suricata, but the last option may omit its `;` and any whitespace separates header
//!   fields.
//! - **Snort 3**: additionally header-less (`alert ( … )`) and service-only (`alert http ( … )`)
//!   headers, rules spread over several lines without `\` (the rule ends at the line whose `)` closes
//!   it), `/* … */` and `#begin … #end` comments, and inline content modifiers (`content:"x",nocase`).
//! - **Auto** (default): per file, Snort 3 when the file shows a Snort 3 marker (a header-less or
//!   service-only rule, a line that starts with `(`, a `/*` comment, or an inline content modifier),
//!   else Suricata.
//! - Disabled rules: one or more `#` (spaces allowed after them) followed by a known action and a
//!   `(`. Such a line is a rule with `enabled = false` when it parses, and an error when it does not
//!   (it is never silently dropped). Any other `#` line is a comment.
//! - Indented rules: Suricata's loader ignores lines that start with whitespace. etferry parses them
//!   like any other rule, so a rule is never silently lost; `Rule::indented` marks them.

mod bytes;
mod parse;
mod scan;
mod values;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use rayon::prelude::*;

pub use parse::ACTIONS;

/// The rule language variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// Decide per file (Snort 3 markers, else Suricata).
    #[default]
    Auto,
    Suricata,
    Snort2,
    Snort3,
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Dialect::Auto),
            "suricata" => Ok(Dialect::Suricata),
            "snort2" | "snort" => Ok(Dialect::Snort2),
            "snort3" => Ok(Dialect::Snort3),
            _ => Err(format!(
                "unknown dialect {s:?}; use auto, suricata, snort2 or snort3"
            )),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Auto => "auto",
            Dialect::Suricata => "suricata",
            Dialect::Snort2 => "snort2",
            Dialect::Snort3 => "snort3",
        })
    }
}

/// Parser settings.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    pub dialect: Dialect,
    /// Longest accepted logical rule in bytes; longer ones are per-rule errors.
    pub max_rule_len: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            dialect: Dialect::Auto,
            max_rule_len: 64 * 1024,
        }
    }
}

/// The header of a rule with the full six fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub proto: Cow<'a, str>,
    pub src_addr: Cow<'a, str>,
    pub src_port: Cow<'a, str>,
    /// `->`, `<>` or `=>`.
    pub direction: Cow<'a, str>,
    pub dst_addr: Cow<'a, str>,
    pub dst_port: Cow<'a, str>,
}

/// One parsed rule. Fields borrow from the input buffer except where a value had to be unescaped
/// or a `\`-continued rule had to be joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<'a> {
    /// 1-based line of the rule's first physical line.
    pub file_line: usize,
    /// Bytes of the rule in the input, from its first byte (including a leading `#`) to its last
    /// (excluding the line terminator).
    pub byte_range: Range<usize>,
    /// Shipped enabled (`false`: commented out with `#`).
    pub enabled: bool,
    /// The rule line started with whitespace (Suricata itself would ignore it).
    pub indented: bool,
    /// Action, including any scope (`alert`, `accept:hook`).
    pub action: Cow<'a, str>,
    /// `None` for Snort 3 header-less and service-only forms.
    pub header: Option<Header<'a>>,
    /// The protocol or service of a service-only Snort 3 header (`alert http ( … )`).
    pub service: Option<Cow<'a, str>>,
    /// Options in order as (name, raw value); value-less options have an empty value.
    pub options: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub gid: u32,
    pub sid: u32,
    /// 0 when the rule has no `rev`.
    pub rev: u32,
    /// `msg`, unescaped; empty when absent.
    pub msg: Cow<'a, str>,
    pub classtype: Option<Cow<'a, str>>,
    pub priority: Option<u32>,
    /// `reference:` values as (type, value).
    pub references: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// All `metadata` entries in order (several keywords merge; repeated keys kept). An entry without
    /// a value has an empty value.
    pub metadata: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// `noalert`, or `flowbits` / `xbits` with `noalert`.
    pub noalert: bool,
    pub target: Option<Cow<'a, str>>,
    /// The rule text without any leading `#` and spaces.
    pub text: Cow<'a, str>,
}

impl Rule<'_> {
    /// ET category: the second word of `msg` (`ET MALWARE …` → `MALWARE`).
    pub fn category(&self) -> Option<&str> {
        let mut words = self.msg.split_whitespace();
        let first = words.next()?;
        let second = words.next()?;
        // Only ET-style messages carry a category; "GPL" messages do too (GPL CHAT …).
        if first.chars().all(|c| c.is_ascii_uppercase()) {
            Some(second)
        } else {
            None
        }
    }

    /// Values of the metadata key `key`, in order.
    pub fn metadata_values<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.metadata
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The raw value of the first option named `name`.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// A copy that owns all its data.
    pub fn into_owned(self) -> Rule<'static> {
        fn o(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        fn pairs(
            v: Vec<(Cow<'_, str>, Cow<'_, str>)>,
        ) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
            v.into_iter().map(|(a, b)| (o(a), o(b))).collect()
        }
        Rule {
            file_line: self.file_line,
            byte_range: self.byte_range,
            enabled: self.enabled,
            indented: self.indented,
            action: o(self.action),
            header: self.header.map(|h| Header {
                proto: o(h.proto),
                src_addr: o(h.src_addr),
                src_port: o(h.src_port),
                direction: o(h.direction),
                dst_addr: o(h.dst_addr),
                dst_port: o(h.dst_port),
            }),
            service: self.service.map(o),
            options: pairs(self.options),
            gid: self.gid,
            sid: self.sid,
            rev: self.rev,
            msg: o(self.msg),
            classtype: self.classtype.map(o),
            priority: self.priority,
            references: pairs(self.references),
            metadata: pairs(self.metadata),
            noalert: self.noalert,
            target: self.target.map(o),
            text: o(self.text),
        }
    }
}

/// A rule that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    /// 1-based line of the rule's first physical line.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

impl std::error::Error for RuleError {}

/// The result of parsing one file.
#[derive(Debug, Clone)]
pub struct ParsedFile<'a> {
    pub file: String,
    pub rules: Vec<Rule<'a>>,
    pub errors: Vec<RuleError>,
    /// The dialect actually used (never `Auto`).
    pub dialect: Dialect,
}

impl ParsedFile<'_> {
    pub fn enabled(&self) -> usize {
        self.rules.iter().filter(|r| r.enabled).count()
    }
    pub fn disabled(&self) -> usize {
        self.rules.len() - self.enabled()
    }
}

/// Files larger than this are cut into chunks at rule boundaries and parsed in parallel.
const CHUNK: usize = 512 * 1024;

/// Cut a file into chunks at rule boundaries, each with the line number it starts at.
/// Snort 3 rules may span lines without `\`, so such files are one chunk.
fn chunks_with_lines(data: &[u8], dialect: Dialect) -> Vec<(Range<usize>, usize)> {
    if dialect == Dialect::Snort3 || data.len() <= CHUNK {
        return vec![(0..data.len(), 1)];
    }
    let mut line = 1usize;
    scan::chunk_boundaries(data, CHUNK)
        .into_iter()
        .map(|c| {
            let first = line;
            line += memchr::memchr_iter(b'\n', &data[c.clone()]).count();
            (c, first)
        })
        .collect()
}

fn resolve(dialect: Dialect, data: &[u8]) -> Dialect {
    match dialect {
        Dialect::Auto => scan::detect(data),
        d => d,
    }
}

/// Parse every chunk of `data` in parallel; each chunk folds its rules into a fresh `T` (so
/// count-only callers never hold the rules). Results are in chunk order.
fn parse_chunks<'a, T: Send>(
    file: &str,
    data: &'a [u8],
    dialect: Dialect,
    opts: &ParseOptions,
    details: bool,
    init: impl Fn() -> T + Sync,
    add: impl Fn(&mut T, Rule<'a>) + Sync,
) -> Vec<(T, Vec<RuleError>)> {
    chunks_with_lines(data, dialect)
        .into_par_iter()
        .map(|(range, first_line)| {
            let mut acc = init();
            let (errors, _) = scan::parse_range(
                file,
                data,
                range,
                first_line,
                dialect,
                opts.max_rule_len,
                details,
                None,
                &mut |r| add(&mut acc, r),
            );
            (acc, errors)
        })
        .collect()
}

/// Parse one file's bytes.
pub fn parse_bytes<'a>(file: &str, data: &'a [u8], opts: &ParseOptions) -> ParsedFile<'a> {
    let dialect = resolve(opts.dialect, data);
    let parts = parse_chunks(file, data, dialect, opts, true, Vec::new, |v, r| v.push(r));
    let mut rules = Vec::with_capacity(parts.iter().map(|(r, _)| r.len()).sum());
    let mut errors = Vec::new();
    for (r, e) in parts {
        rules.extend(r);
        errors.extend(e);
    }
    ParsedFile {
        file: file.to_string(),
        rules,
        errors,
        dialect,
    }
}

/// Counts of one file, for callers that do not need the rules themselves (`etferry parse`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSummary {
    pub enabled: usize,
    pub disabled: usize,
    /// (gid, sid) of every rule in file order, for duplicate detection.
    pub keys: Vec<(u32, u32)>,
    pub errors: Vec<RuleError>,
    pub dialect: Dialect,
}

/// Parse `data` chunk by chunk in parallel without the per-rule details (option list, references,
/// metadata: validated, not kept), folding each chunk's rules into a fresh `T`. For callers that
/// keep a few fields per rule, so memory stays proportional to what they keep.
pub fn fold_lean<'a, T: Send>(
    file: &str,
    data: &'a [u8],
    opts: &ParseOptions,
    init: impl Fn() -> T + Sync,
    add: impl Fn(&mut T, Rule<'a>) + Sync,
) -> (Vec<T>, Vec<RuleError>, Dialect) {
    let dialect = resolve(opts.dialect, data);
    let parts = parse_chunks(file, data, dialect, opts, false, init, add);
    let mut out = Vec::with_capacity(parts.len());
    let mut errors = Vec::new();
    for (t, e) in parts {
        out.push(t);
        errors.extend(e);
    }
    (out, errors, dialect)
}

/// Parse `data` chunk by chunk in parallel and keep only counts, keys and errors, so memory stays
/// proportional to the input rather than to the parsed rules.
pub fn summarize(file: &str, data: &[u8], opts: &ParseOptions) -> FileSummary {
    summarize_releasing(file, data, opts, &|_| {})
}

/// [`summarize`], calling `release(range)` once the bytes in `range` are parsed and never read
/// again, so a caller holding `data` in a mapped file can drop those pages from memory; peak
/// memory then follows the chunks in flight instead of the file size.
///
/// Nothing reads the whole file before its chunks are parsed: line numbers are counted per chunk
/// and shifted afterwards, and with [`Dialect::Auto`] each chunk looks for Snort 3 markers itself
/// while it is parsed the Suricata way; if any chunk finds one, the file is parsed again as Snort 3,
/// exactly as [`resolve`] on the whole file would have decided.
pub fn summarize_releasing(
    file: &str,
    data: &[u8],
    opts: &ParseOptions,
    release: &(dyn Fn(Range<usize>) + Sync),
) -> FileSummary {
    if data.len() <= CHUNK || opts.dialect == Dialect::Snort3 {
        return summarize_whole(file, data, opts);
    }
    let speculative = opts.dialect == Dialect::Auto;
    let dialect = if speculative {
        Dialect::Suricata
    } else {
        opts.dialect
    };
    let parts: Vec<Option<(FileSummary, Vec<RuleError>, usize)>> =
        scan::chunk_boundaries(data, CHUNK)
            .into_par_iter()
            .map(|range| {
                let mut acc = FileSummary::default();
                let mut seen = false;
                let (errors, lines) = scan::parse_range(
                    file,
                    data,
                    range.clone(),
                    1,
                    dialect,
                    opts.max_rule_len,
                    false,
                    speculative.then_some(&mut seen),
                    &mut |r| count_rule(&mut acc, &r),
                );
                // Snort 3 lines are looked for during the parse, inline modifiers right after it
                // (while the chunk is in the cache); either discards this chunk's counts, as the
                // whole file is then parsed again below.
                let snort3 = speculative && (seen || scan::snort3_modifiers(&data[range.clone()]));
                release(range);
                (!snort3).then_some((acc, errors, lines))
            })
            .collect();
    if parts.iter().any(Option::is_none) {
        let opts = ParseOptions {
            dialect: Dialect::Snort3,
            ..opts.clone()
        };
        return summarize_whole(file, data, &opts);
    }
    let mut out = FileSummary {
        dialect,
        keys: Vec::with_capacity(parts.iter().flatten().map(|(p, _, _)| p.keys.len()).sum()),
        ..Default::default()
    };
    // Chunk k starts after the lines of chunks 0..k (every chunk but the last ends with `\n`).
    let mut offset = 0;
    for (p, errors, lines) in parts.into_iter().flatten() {
        out.enabled += p.enabled;
        out.disabled += p.disabled;
        out.keys.extend(p.keys);
        out.errors.extend(errors.into_iter().map(|mut e| {
            e.line += offset;
            e
        }));
        offset += lines;
    }
    out
}

fn count_rule(s: &mut FileSummary, r: &Rule<'_>) {
    if r.enabled {
        s.enabled += 1;
    } else {
        s.disabled += 1;
    }
    s.keys.push((r.gid, r.sid));
}

/// [`summarize`] with the dialect resolved over the whole file first.
fn summarize_whole(file: &str, data: &[u8], opts: &ParseOptions) -> FileSummary {
    let (parts, errors, dialect) = fold_lean(file, data, opts, FileSummary::default, |s, r| {
        count_rule(s, &r)
    });
    let mut out = FileSummary {
        dialect,
        errors,
        ..Default::default()
    };
    for p in parts {
        out.enabled += p.enabled;
        out.disabled += p.disabled;
        out.keys.extend(p.keys);
    }
    out
}

/// Parse many files in parallel; the output is in input order.
pub fn parse_many<'a>(files: &'a [(String, Vec<u8>)], opts: &ParseOptions) -> Vec<ParsedFile<'a>> {
    files
        .par_iter()
        .map(|(name, data)| parse_bytes(name, data, opts))
        .collect()
}

/// Is this a rules file by name (`*.rules`)?
pub fn is_rules_file(name: &str) -> bool {
    name.ends_with(".rules")
}

#[cfg(test)]
mod tests;
