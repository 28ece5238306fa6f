//! Unit tests of the dialect decisions documented in `rules/mod.rs`. The full edge-case table and
//! the corpus round trip live in `tests/parser_*.rs`.

use super::*;

fn parse(text: &str, dialect: Dialect) -> ParsedFile<'_> {
    parse_bytes(
        "t.rules",
        text.as_bytes(),
        &ParseOptions {
            dialect,
            ..Default::default()
        },
    )
}

fn one_rule(text: &str) -> Rule<'_> {
    let p = parse(text, Dialect::Auto);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.rules.len(), 1);
    p.rules.into_iter().next().unwrap()
}

fn one_error(text: &str, dialect: Dialect) -> String {
    let p = parse(text, dialect);
    assert!(p.rules.is_empty(), "parsed: {:?}", p.rules);
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    p.errors[0].reason.clone()
}

#[test]
fn disabled_rule_keeps_text_without_hash() {
    let r = one_rule("##  alert tcp any any -> any any (msg:\"x\"; sid:5; rev:2;)\n");
    assert!(!r.enabled);
    assert_eq!(
        r.text,
        "alert tcp any any -> any any (msg:\"x\"; sid:5; rev:2;)"
    );
    assert_eq!((r.gid, r.sid, r.rev), (1, 5, 2));
}

#[test]
fn comments_and_banners_are_not_rules() {
    let p = parse(
        "# Emerging Threats\n#\n# alert me when it breaks\n\n#### \n",
        Dialect::Auto,
    );
    assert!(p.rules.is_empty() && p.errors.is_empty(), "{p:?}");
}

#[test]
fn broken_commented_rule_is_an_error_not_a_comment() {
    let e = one_error(
        "#alert tcp any any -> any any (msg:\"x\"; rev:1;)\n",
        Dialect::Auto,
    );
    assert!(e.contains("sid"), "{e}");
}

#[test]
fn options_split_like_suricata() {
    let r = one_rule(
        "alert http any any -> any any (msg:\"a\\; b\"; content:\"v=DKIM1\\; p=\"; pcre:\"/^[\"']?post/Ri\"; content:\"C|3a|\\\\\"; sid:1;)",
    );
    assert_eq!(r.msg, "a; b");
    assert_eq!(r.option("pcre"), Some("\"/^[\"']?post/Ri\""));
    let contents: Vec<_> = r
        .options
        .iter()
        .filter(|(n, _)| n == "content")
        .map(|(_, v)| v.as_ref())
        .collect();
    assert_eq!(contents, ["\"v=DKIM1\\; p=\"", "\"C|3a|\\\\\""]);
}

#[test]
fn metadata_merges_and_keeps_repeats() {
    let r = one_rule(
        "alert tcp any any -> any any (metadata: former_category EXPLOIT; sid:1; metadata:deployment Perimeter, deployment SSLDecrypt, 22022016;)",
    );
    let md: Vec<(&str, &str)> = r
        .metadata
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    assert_eq!(
        md,
        [
            ("former_category", "EXPLOIT"),
            ("deployment", "Perimeter"),
            ("deployment", "SSLDecrypt"),
            ("22022016", "")
        ]
    );
}

#[test]
fn dialect_rules() {
    // Last option without `;`: Suricata rejects, Snort accepts.
    let t = "alert tcp any any -> any any (msg:\"x\"; sid:7; rev:1)";
    assert!(one_error(t, Dialect::Suricata).contains("terminating"));
    assert_eq!(parse(t, Dialect::Snort2).rules.len(), 1);
    // Tabs in the header: Suricata rejects, Snort 3 accepts.
    let t = "alert\ttcp\tany\tany\t->\tany\tany\t(msg:\"tabs\"; sid:9000005; rev:1;)";
    assert!(one_error(t, Dialect::Suricata).contains("tab"));
    assert_eq!(parse(t, Dialect::Snort3).rules.len(), 1);
    // Snort 3 multi-line rule without `\`, detected automatically.
    let t = "alert udp any any <> any 53\n(\n    msg: \"dns\";\n    sid: 1;\n    content : \"|05|baidu|03|com\", nocase, offset 12, depth 10;\n)\n";
    let p = parse(t, Dialect::Auto);
    assert_eq!(p.dialect, Dialect::Snort3);
    assert_eq!(p.rules.len(), 1, "{:?}", p.errors);
    // Snort 3 comments.
    let t = "/* alert tcp any any -> any any (sid:1;)\n*/\n#begin\nalert tcp any any -> any any (sid:2;)\n#end\nalert http ( msg:\"svc\"; sid:3; )\n";
    let p = parse(t, Dialect::Snort3);
    assert_eq!(p.rules.len(), 1, "{:?}", p.errors);
    assert_eq!(p.rules[0].service.as_deref(), Some("http"));
}

#[test]
fn continuation_joins_without_separator_and_dangling_is_an_error() {
    let t = "alert dnp3 any any -> any any (msg:\"x\"; \\\n      sid:2270000; rev:2;)\nalert tcp any any -> any any (sid:3;)\n";
    let p = parse(t, Dialect::Auto);
    assert_eq!(p.rules.len(), 2, "{:?}", p.errors);
    assert_eq!(
        p.rules[0].text,
        "alert dnp3 any any -> any any (msg:\"x\";       sid:2270000; rev:2;)"
    );
    assert_eq!(p.rules[1].file_line, 3);
    let e = one_error(
        "alert tcp any any -> any any (msg:\"dangling\"; \\",
        Dialect::Auto,
    );
    assert!(e.contains("end of file"), "{e}");
}

#[test]
fn errors_do_not_cost_the_neighbours() {
    let mut data = b"alert tcp any any -> any any (sid:1;)\n".to_vec();
    data.extend_from_slice(b"alert tcp any any -> any any (msg:\"\xff\xfe\"; sid:2;)\n");
    data.extend_from_slice(b"alert tcp any any -> any any (sid:3;)\n");
    let p = parse_bytes("x.rules", &data, &ParseOptions::default());
    assert_eq!(p.rules.iter().map(|r| r.sid).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(p.errors.len(), 1);
    assert_eq!(p.errors[0].line, 2);
    assert!(p.errors[0].reason.contains("UTF-8"));
}

#[test]
fn sid_validation() {
    let base = |opt: &str| format!("alert tcp any any -> any any (msg:\"x\"; {opt} rev:1;)");
    assert!(one_error(&base("sid:abc;"), Dialect::Auto).contains("not a number"));
    assert!(one_error(&base("sid:0; sid:5;"), Dialect::Auto).contains("0"));
    assert!(one_error(&base("sid:5; sid:5;"), Dialect::Auto).contains("twice"));
    assert!(one_error(&base("sid:99999999999;"), Dialect::Auto).contains("out of range"));
}

#[test]
fn large_file_chunks_keep_order_and_lines() {
    let mut s = String::new();
    for i in 1..=20_000 {
        s.push_str(&format!(
            "alert tcp any any -> any any (msg:\"rule {i}\"; sid:{i}; rev:1;)\n"
        ));
    }
    let p = parse(&s, Dialect::Auto);
    assert!(s.len() > 2 * CHUNK);
    assert_eq!(p.rules.len(), 20_000);
    assert!(p
        .rules
        .iter()
        .enumerate()
        .all(|(i, r)| r.sid as usize == i + 1 && r.file_line == i + 1));
}

/// A file of `n` one-line rules over several chunks, with a broken rule every 997 lines and a
/// continued rule every 1009 lines (two physical lines).
fn big_file(n: usize) -> String {
    let mut s = String::new();
    for i in 1..=n {
        if i % 997 == 0 {
            s.push_str(&format!(
                "alert tcp any any -> any any (msg:\"bad {i}\"; sid:{i}\n"
            ));
        } else if i % 1009 == 0 {
            s.push_str(&format!(
                "alert tcp any any -> any any (msg:\"c {i}\"; \\\n sid:{i}; rev:1;)\n"
            ));
        } else {
            s.push_str(&format!(
                "alert tcp any any -> any any (msg:\"rule {i}\"; sid:{i}; rev:1;)\n"
            ));
        }
    }
    s
}

#[test]
fn summarize_releasing_matches_the_whole_file_parse() {
    let s = big_file(30_000);
    assert!(s.len() > 3 * CHUNK);
    let released = std::sync::Mutex::new(Vec::new());
    let release = |r: Range<usize>| released.lock().unwrap().push(r);
    let opts = ParseOptions::default();
    let got = summarize_releasing("x.rules", s.as_bytes(), &opts, &release);
    let want = summarize_whole("x.rules", s.as_bytes(), &opts);
    assert_eq!(got, want);
    assert_eq!(got.dialect, Dialect::Suricata);
    assert_eq!(got.errors.len(), 30_000 / 997);
    // Lines count the continued rules' second lines too.
    let p = parse(&s, Dialect::Auto);
    assert_eq!(
        got.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
        p.errors.iter().map(|e| e.line).collect::<Vec<_>>()
    );
    assert_eq!(got.errors[0].line, 997);
    // Every byte was handed back exactly once, chunk by chunk.
    let mut r = released.into_inner().unwrap();
    r.sort_by_key(|r| r.start);
    assert!(r.len() > 1);
    assert_eq!(r.first().map(|r| r.start), Some(0));
    assert_eq!(r.last().map(|r| r.end), Some(s.len()));
    assert!(r.windows(2).all(|w| w[0].end == w[1].start));
}

#[test]
fn summarize_releasing_finds_snort3_in_a_late_chunk() {
    // Each marker near the end makes the whole file Snort 3, as detection on the whole file would:
    // a header-less rule, a line starting with `(` that is the continuation of a `\` line (seen
    // only by the continuation loop), an inline content modifier.
    for marker in [
        "alert (msg:\"s3\"; sid:99999999; rev:1;)\n",
        "alert tcp any any -> any any (msg:\"c\"; \\\n(sid:99999999; rev:1;)\n",
        "alert tcp any any -> any any (content:\"x\",nocase; sid:99999999; rev:1;)\n",
    ] {
        let mut s = big_file(30_000);
        s.push_str(marker);
        let opts = ParseOptions::default();
        let got = summarize_releasing("x.rules", s.as_bytes(), &opts, &|_| {});
        assert_eq!(got.dialect, Dialect::Snort3, "{marker}");
        assert_eq!(
            got,
            summarize_whole("x.rules", s.as_bytes(), &opts),
            "{marker}"
        );
        assert_eq!(scan::detect(s.as_bytes()), Dialect::Snort3, "{marker}");
    }
}
