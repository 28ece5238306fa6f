//! Property tests: random and mutated rule text never panics, every result points inside the
//! input, and pathological inputs (a 1 MB line, 100 000 `#`) complete. Bounded case counts keep
//! this quick; no wall-clock assertions.

use etferry::rules::{parse_bytes, Dialect, ParseOptions, ParsedFile};
use proptest::prelude::*;

const SEEDS: &[&str] = &[
    r#"alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"ET INFO x"; flow:established,to_server; content:"a\;b"; pcre:"/x\\\"y/"; reference:url,a.b/c_(d); classtype:bad-unknown; sid:2034228; rev:1; metadata:created_at 2021_10_19, former_category INFO;)"#,
    r#"#alert tcp any [3690, 9418] <> any any (msg: "[PT] x (y)"; flow: established; content: "ssh://"; sid: 10001757; rev: 3; )"#,
    r#"alert http ( msg:"MALWARE-CNC x"; content:"HttpBrowser/1.0",fast_pattern,nocase; gid:1; sid:42886; rev:4; )"#,
    "alert dnp3 any any -> any any (msg:\"x\"; \\\n      app-layer-event:dnp3.flooded; sid:2270000; rev:2;)",
    "alert udp any any <> any 53\n(\n    msg: \"t\";\n    sid: 1;\n)",
    "# banner line\n\n/* c */\n#begin\n#end\n",
];

const DIALECTS: [Dialect; 4] = [
    Dialect::Auto,
    Dialect::Suricata,
    Dialect::Snort2,
    Dialect::Snort3,
];

/// Invariants every parse result keeps, whatever the input.
fn check(data: &[u8], pf: &ParsedFile<'_>) {
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    for r in &pf.rules {
        assert!(r.byte_range.start <= r.byte_range.end && r.byte_range.end <= data.len());
        assert!((1..=lines).contains(&r.file_line), "line {}", r.file_line);
        assert!(r.sid != 0, "a rule without a sid must be an error");
    }
    for e in &pf.errors {
        assert!(
            (1..=lines).contains(&e.line),
            "error line {} of {lines}",
            e.line
        );
        assert!(!e.reason.is_empty());
    }
}

fn run_all(data: &[u8]) {
    for d in DIALECTS {
        let opts = ParseOptions {
            dialect: d,
            ..ParseOptions::default()
        };
        let pf = parse_bytes("fuzz.rules", data, &opts);
        check(data, &pf);
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
}

fn apply(seed: &str, edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.as_bytes().to_vec();
    for e in edits {
        match *e {
            Edit::Insert(i, b) => v.insert(i % (v.len() + 1), b),
            Edit::Delete(i) if !v.is_empty() => {
                let n = v.len();
                v.remove(i % n);
            }
            Edit::Replace(i, b) if !v.is_empty() => {
                let n = v.len();
                v[i % n] = b;
            }
            _ => {}
        }
    }
    v
}

/// Bytes that matter to the tokenizer, so mutations hit the interesting paths often.
fn special_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b';'),
        Just(b'\\'),
        Just(b'"'),
        Just(b'('),
        Just(b')'),
        Just(b'#'),
        Just(b'\n'),
        Just(b'\r'),
        Just(b' '),
        Just(b'\t'),
        Just(b':'),
        Just(b','),
        Just(b'/'),
        Just(b'*'),
        any::<u8>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), special_byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), special_byte()).prop_map(|(i, b)| Edit::Replace(i, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(special_byte(), 0..400)) {
        run_all(&data);
    }

    #[test]
    fn mutated_real_rules_never_panic(
        seed in 0..SEEDS.len(),
        edits in proptest::collection::vec(edit(), 1..8),
    ) {
        let data = apply(SEEDS[seed], &edits);
        run_all(&data);
        // The same mutant between two good rules: they still parse.
        let mut framed = b"alert tcp any any -> any any (msg:\"a\"; sid:7000001; rev:1;)\n".to_vec();
        framed.extend_from_slice(&data);
        framed.extend_from_slice(b"\n\nalert tcp any any -> any any (msg:\"b\"; sid:7000002; rev:1;)\n");
        let pf = parse_bytes("fuzz.rules", &framed, &ParseOptions { dialect: Dialect::Suricata, ..ParseOptions::default() });
        check(&framed, &pf);
        let sids: Vec<u32> = pf.rules.iter().map(|r| r.sid).collect();
        prop_assert_eq!(sids.first(), Some(&7000001));
        // A dangling `\` at the mutant's end may join the blank line, never the rule after it.
        prop_assert_eq!(sids.last(), Some(&7000002));
    }
}

#[test]
fn one_megabyte_line_is_one_error() {
    let mut line = b"alert tcp any any -> any any (msg:\"big\"; content:\"".to_vec();
    line.resize(1024 * 1024, b'A');
    line.extend_from_slice(
        b"\"; sid:1; rev:1;)\nalert tcp any any -> any any (msg:\"next\"; sid:2; rev:1;)\n",
    );
    let pf = parse_bytes("big.rules", &line, &ParseOptions::default());
    check(&line, &pf);
    assert_eq!(pf.errors.len(), 1, "{:?}", pf.errors);
    assert_eq!(pf.errors[0].line, 1);
    assert_eq!(pf.rules.iter().map(|r| r.sid).collect::<Vec<_>>(), [2]);
}

#[test]
fn one_megabyte_without_newline_completes() {
    // No newline at all, mixing the bytes the scanner looks at.
    let data: Vec<u8> = b"#\\;\"( "
        .iter()
        .copied()
        .cycle()
        .take(1024 * 1024)
        .collect();
    run_all(&data);
}

#[test]
fn hundred_thousand_hashes_are_a_comment() {
    // The shared outer regex of the Python tools is cubic on this; ours must just be a comment.
    let mut data = vec![b'#'; 100_000];
    data.extend_from_slice(b" x\n");
    for d in DIALECTS {
        let pf = parse_bytes(
            "hash.rules",
            &data,
            &ParseOptions {
                dialect: d,
                ..ParseOptions::default()
            },
        );
        assert!(pf.rules.is_empty() && pf.errors.is_empty(), "{d:?}");
    }
    // And followed by a rule, the rule is a disabled one.
    let mut data = vec![b'#'; 100_000];
    data.extend_from_slice(b"alert tcp any any -> any any (msg:\"x\"; sid:5; rev:1;)\n");
    let pf = parse_bytes("hash.rules", &data, &ParseOptions::default());
    check(&data, &pf);
    assert_eq!(pf.rules.len(), 1, "{:?}", pf.errors);
    assert!(!pf.rules[0].enabled);
}
