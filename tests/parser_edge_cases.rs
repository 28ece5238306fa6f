//! Every case of `tests/corpus/edge-cases.json.gz` (a copy of the shared reference) with its expected verdict, alone and
//! between two valid rules (the neighbours must always survive), plus the cases the JSON cannot
//! hold: invalid UTF-8, `requires:`, Snort 3 comment blocks and an overflowing sid.

use std::borrow::Cow;

use etferry::rules::{parse_bytes, Dialect, ParseOptions, ParsedFile, Rule};

const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/corpus/edge-cases.json.gz"
);

const BEFORE: &str = r#"alert tcp any any -> any any (msg:"before"; sid:8000001; rev:1;)"#;
const AFTER: &str = r#"alert tcp any any -> any any (msg:"after"; sid:8000002; rev:1;)"#;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Exactly one rule, no error.
    Rule,
    /// No rule; a per-rule error on the case's first line.
    Error,
}

/// The expected outcome of each case in the default dialect (auto, which is Suricata for a file
/// without Snort 3 markers). N05 and N06 are dialect-dependent and have their own tests below.
fn verdict(id: &str) -> Option<Verdict> {
    let prefix = &id[..3];
    match prefix {
        "N05" | "N06" => None,
        "X05" | "X06" => Some(Verdict::Error),
        _ if prefix.starts_with('M') => Some(Verdict::Error),
        // E01–E21, S01–S05 (S05, an indented rule, is parsed: never silently dropped),
        // N01–N04, N07, X01–X04.
        _ => Some(Verdict::Rule),
    }
}

struct Case {
    id: String,
    text: String,
}

fn cases() -> Vec<Case> {
    let mut raw = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(CASES).unwrap()),
        &mut raw,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            id: c["id"].as_str().unwrap().to_string(),
            text: c["text"].as_str().unwrap().to_string(),
        })
        .collect()
}

fn case(id: &str) -> String {
    cases()
        .into_iter()
        .find(|c| c.id.starts_with(id))
        .unwrap_or_else(|| panic!("no case {id}"))
        .text
}

fn opts(dialect: Dialect) -> ParseOptions {
    ParseOptions {
        dialect,
        ..ParseOptions::default()
    }
}

fn parse<'a>(data: &'a [u8], dialect: Dialect) -> ParsedFile<'a> {
    parse_bytes("case.rules", data, &opts(dialect))
}

fn sids(pf: &ParsedFile<'_>) -> Vec<u32> {
    pf.rules.iter().map(|r| r.sid).collect()
}

fn check_error(id: &str, pf: &ParsedFile<'_>, line: usize) {
    assert!(
        !pf.errors.is_empty(),
        "{id}: expected an error, got rules {:?}",
        sids(pf)
    );
    let e = &pf.errors[0];
    assert_eq!(e.line, line, "{id}: error on the wrong line: {e}");
    assert_eq!(e.file, "case.rules", "{id}");
    assert!(!e.reason.trim().is_empty(), "{id}: empty reason");
    assert_eq!(e.to_string(), format!("case.rules:{line}: {}", e.reason));
}

#[test]
fn every_case_alone_gets_its_verdict() {
    let all = cases();
    assert_eq!(all.len(), 50, "edge-cases.json changed");
    let mut checked = 0;
    for c in &all {
        let Some(v) = verdict(&c.id) else { continue };
        let pf = parse(c.text.as_bytes(), Dialect::Auto);
        match v {
            Verdict::Rule => {
                assert_eq!(pf.rules.len(), 1, "{}: {:?}", c.id, pf.errors);
                assert!(pf.errors.is_empty(), "{}: {:?}", c.id, pf.errors);
                assert_eq!(pf.rules[0].file_line, 1, "{}", c.id);
            }
            Verdict::Error => {
                assert!(pf.rules.is_empty(), "{}: parsed {:?}", c.id, sids(&pf));
                check_error(&c.id, &pf, 1);
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 48);
}

#[test]
fn every_case_between_two_good_rules_keeps_its_neighbours() {
    for c in cases() {
        let Some(v) = verdict(&c.id) else { continue };
        // A dangling `\` at the very end only exists at end of file: it would (rightly) join the
        // next line, so M11 gets a neighbour before it only.
        let eof_only = c.id.starts_with("M11");
        let data = if eof_only {
            format!("{BEFORE}\n{}", c.text)
        } else {
            format!("{BEFORE}\n{}\n{AFTER}\n", c.text)
        };
        let pf = parse(data.as_bytes(), Dialect::Auto);
        let got = sids(&pf);
        assert_eq!(
            got.first(),
            Some(&8000001),
            "{}: {got:?} {:?}",
            c.id,
            pf.errors
        );
        if !eof_only {
            assert_eq!(
                got.last(),
                Some(&8000002),
                "{}: {got:?} {:?}",
                c.id,
                pf.errors
            );
            let after = pf.rules.last().unwrap();
            // The rule after sits on the line after the case's last physical line.
            assert_eq!(
                after.file_line,
                2 + c.text.matches('\n').count() + 1,
                "{}",
                c.id
            );
        }
        match v {
            Verdict::Rule => {
                assert_eq!(got.len(), if eof_only { 2 } else { 3 }, "{}", c.id);
                assert!(pf.errors.is_empty(), "{}: {:?}", c.id, pf.errors);
                assert_eq!(pf.rules[1].file_line, 2, "{}", c.id);
            }
            Verdict::Error => {
                assert_eq!(got.len(), if eof_only { 1 } else { 2 }, "{}: {got:?}", c.id);
                check_error(&c.id, &pf, 2);
            }
        }
    }
}

#[test]
fn sid_errors_name_the_sid() {
    for id in ["M02", "M07", "M08"] {
        let text = case(id);
        let pf = parse(text.as_bytes(), Dialect::Auto);
        let reason = pf.errors[0].reason.to_lowercase();
        assert!(reason.contains("sid"), "{id}: {reason}");
    }
}

#[test]
fn unknown_action_is_an_error_not_a_comment() {
    let text = case("M09");
    let pf = parse(text.as_bytes(), Dialect::Auto);
    assert!(pf.rules.is_empty());
    let reason = pf.errors[0].reason.to_lowercase();
    assert!(
        reason.contains("alrt") || reason.contains("action"),
        "{reason}"
    );
}

#[test]
fn huge_line_is_an_error_and_a_bigger_cap_is_configurable() {
    let text = case("M06");
    assert!(text.len() > 1_000_000);
    let pf = parse(text.as_bytes(), Dialect::Auto);
    assert!(pf.rules.is_empty());
    assert_eq!(pf.errors.len(), 1, "{:?}", pf.errors);
    // With a cap above its size, the same line is a valid (if silly) rule.
    let big = ParseOptions {
        max_rule_len: 2 * 1024 * 1024,
        ..ParseOptions::default()
    };
    let pf = parse_bytes("case.rules", text.as_bytes(), &big);
    assert_eq!(sids(&pf), [9100006], "{:?}", pf.errors);
    assert!(pf.rules[0].options.len() > 30_000);
}

#[test]
fn snort3_multiline_rule_parses_only_in_snort3_dialect() {
    let text = case("N05");
    let pf = parse(text.as_bytes(), Dialect::Snort3);
    assert_eq!(sids(&pf), [1], "{:?}", pf.errors);
    assert!(pf.errors.is_empty());
    assert_eq!(pf.rules[0].file_line, 1);
    let data = format!("{BEFORE}\n{text}\n{AFTER}\n");
    let pf = parse(data.as_bytes(), Dialect::Snort3);
    assert_eq!(sids(&pf), [8000001, 1, 8000002], "{:?}", pf.errors);
    assert_eq!(pf.rules[2].file_line, 8); // 1 before + 6 lines of N05

    // Suricata reads line by line: the header line alone is a broken rule, and nothing may pass
    // as a rule with sid 1; the neighbours survive.
    let pf = parse(data.as_bytes(), Dialect::Suricata);
    assert_eq!(sids(&pf), [8000001, 8000002], "{:?}", pf.errors);
    assert!(pf.errors.iter().any(|e| e.line == 2), "{:?}", pf.errors);
}

#[test]
fn last_option_without_semicolon_depends_on_the_dialect() {
    let text = case("N06");
    let pf = parse(text.as_bytes(), Dialect::Suricata);
    assert!(pf.rules.is_empty());
    check_error("N06", &pf, 1);
    for d in [Dialect::Snort2, Dialect::Snort3] {
        let pf = parse(text.as_bytes(), d);
        assert_eq!(sids(&pf), [5019401], "{d:?}: {:?}", pf.errors);
        assert!(pf.rules[0].noalert, "flowbits: noalert");
    }
}

#[test]
fn tabs_in_the_header_are_accepted_in_snort3_only() {
    let text = case("X05");
    assert!(parse(text.as_bytes(), Dialect::Suricata).rules.is_empty());
    let pf = parse(text.as_bytes(), Dialect::Snort3);
    assert_eq!(sids(&pf), [9000005], "{:?}", pf.errors);
}

/// (name, value) pairs as plain strings, for comparisons.
fn pairs<'r>(v: &'r [(Cow<'_, str>, Cow<'_, str>)]) -> Vec<(&'r str, &'r str)> {
    v.iter().map(|(a, b)| (a.as_ref(), b.as_ref())).collect()
}

/// Parse case `id` alone and hand its one rule to `check`.
fn with_rule(id: &str, check: impl FnOnce(&Rule<'_>)) {
    let text = case(id);
    let pf = parse(text.as_bytes(), Dialect::Auto);
    assert_eq!(pf.rules.len(), 1, "{id}: {:?}", pf.errors);
    check(&pf.rules[0]);
}

#[test]
fn decoded_fields_of_real_et_rules() {
    with_rule("E01", |r| {
        assert!(!r.enabled);
        assert_eq!((r.gid, r.sid, r.rev), (1, 2034228, 1));
        assert_eq!(r.action, "alert");
        assert!(r.text.starts_with("alert http "));
        assert_eq!(r.category(), Some("INFO"));
        assert_eq!(r.classtype.as_deref(), Some("bad-unknown"));
    });
    with_rule("E02", |r| assert!(!r.enabled && r.noalert));
    with_rule("E03", |r| {
        assert!(r.enabled && r.noalert);
        let xbits = r.option("xbits").unwrap();
        assert_eq!(xbits, "set,ET.IBMDRM1,track ip_dst, expire 10");
    });
    // `\;` does not end an option; quotes are ignored while splitting.
    with_rule("E04", |r| {
        assert_eq!(r.sid, 2031265);
        let n = r
            .options
            .iter()
            .filter(|(k, v)| *k == "content" && v.contains(r"v=DKIM1\; p="))
            .count();
        assert_eq!(n, 1, "{:?}", r.options);
    });
    with_rule("E08", |r| {
        assert_eq!(r.sid, 2050433);
        assert!(r
            .options
            .iter()
            .any(|(k, v)| *k == "content" && v.ends_with(r#"\\""#)));
    });
    // Two `metadata` keywords merge, in order, duplicates kept.
    with_rule("E10", |r| {
        assert_eq!(r.metadata.len(), 1 + 9, "{:?}", r.metadata);
        assert_eq!(pairs(&r.metadata)[0], ("former_category", "EXPLOIT"));
        assert_eq!(pairs(&r.metadata)[1], ("affected_product", "Linux"));
    });
    with_rule("E11", |r| {
        assert_eq!(r.target.as_deref(), Some("src_ip"));
        assert_eq!(
            r.metadata
                .iter()
                .filter(|(k, _)| *k == "deployment")
                .count(),
            2
        );
    });
    with_rule("S02", |r| {
        assert_eq!((r.sid, r.file_line), (2270000, 1));
        assert!(r.options.iter().any(|(k, _)| *k == "app-layer-event"));
    });
    with_rule("S03", |r| {
        assert_eq!(r.sid, 1);
        assert!(r.header.is_some());
    });
    with_rule("S05", |r| assert_eq!(r.sid, 9000001));
    with_rule("N01", |r| {
        assert_eq!((r.gid, r.sid, r.rev), (1, 42886, 4));
        assert!(r.header.is_none(), "service-only header");
    });
    with_rule("N03", |r| {
        assert_eq!((r.gid, r.sid), (116, 1));
        assert!(r.header.is_none(), "header-less decoder rule");
    });
    with_rule("N04", |r| {
        assert_eq!((r.gid, r.sid, r.rev), (3, 12345, 5));
        assert!(
            pairs(&r.metadata).contains(&("policy", "balanced-ips drop")),
            "{:?}",
            r.metadata
        );
    });
    with_rule("X01", |r| {
        assert_eq!(r.msg, "example of semicolon; usage here")
    });
    with_rule("X02", |r| {
        assert_eq!(r.msg, "🐾 - 🚨 Possible Windows Installer TLS connection")
    });
    with_rule("X03", |r| assert!(!r.text.ends_with('\r'), "{:?}", r.text));
    with_rule("X04", |r| {
        assert!(pairs(&r.references).contains(&("url", "en.wikipedia.org/wiki/Foo_(bar)")))
    });
}

#[test]
fn invalid_utf8_rule_is_an_error_and_its_neighbours_survive() {
    let mut data = Vec::new();
    data.extend_from_slice(BEFORE.as_bytes());
    data.extend_from_slice(
        b"\nalert tcp any any -> any any (msg:\"bad \xff\xfe bytes\"; sid:8000003; rev:1;)\n",
    );
    data.extend_from_slice(AFTER.as_bytes());
    data.push(b'\n');
    let pf = parse(&data, Dialect::Auto);
    assert_eq!(sids(&pf), [8000001, 8000002]);
    check_error("invalid-utf8", &pf, 2);
    assert!(
        pf.errors[0].reason.to_lowercase().contains("utf-8")
            || pf.errors[0].reason.to_lowercase().contains("utf8"),
        "{}",
        pf.errors[0]
    );
}

#[test]
fn requires_keyword_is_kept_not_an_error() {
    let data = "alert tcp any any -> any any (msg:\"needs geoip\"; requires: feature geoip, version >= 7.0.3 < 8 | >= 8.0.3; sid:8000004; rev:1;)\n";
    let pf = parse(data.as_bytes(), Dialect::Auto);
    assert_eq!(sids(&pf), [8000004], "{:?}", pf.errors);
    assert_eq!(
        pf.rules[0].option("requires"),
        Some("feature geoip, version >= 7.0.3 < 8 | >= 8.0.3")
    );
}

#[test]
fn snort3_comment_blocks_hide_their_rules() {
    let data = format!(
        "{BEFORE}\n#begin\nalert tcp any any -> any any (msg:\"in begin/end\"; sid:8000010; rev:1;)\n#end\n\
         /* a C comment\nalert tcp any any -> any any (msg:\"in c comment\"; sid:8000011; rev:1;)\n*/\n{AFTER}\n"
    );
    let pf = parse(data.as_bytes(), Dialect::Snort3);
    assert!(pf.errors.is_empty(), "{:?}", pf.errors);
    assert_eq!(sids(&pf), [8000001, 8000002]);
    assert_eq!(pf.rules[1].file_line, 8);
}

#[test]
fn overflowing_sid_is_an_error() {
    let data = format!(
        "{BEFORE}\nalert tcp any any -> any any (msg:\"big\"; sid:99999999999; rev:1;)\n{AFTER}\n"
    );
    let pf = parse(data.as_bytes(), Dialect::Auto);
    assert_eq!(sids(&pf), [8000001, 8000002]);
    check_error("sid-overflow", &pf, 2);
}
