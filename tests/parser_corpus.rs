//! The parser on real ET data: the counts of `tests/corpus/SOURCES.md`, zero errors, and every
//! rule's text byte-identical to its slice of the source, from folders, from the `.tar.gz`
//! archives, and through the `etferry parse --json` binary.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use etferry::archive::{read_archive, Limits};
use etferry::rules::{parse_many, ParseOptions, ParsedFile};

#[path = "corpus_support/mod.rs"]
mod corpus_support;

/// The unpacked corpus root.
fn corpus() -> &'static Path {
    corpus_support::root()
}
const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/et-open-sample/rules"
);

/// (folder, `.rules` files, enabled, disabled) as SOURCES.md states them.
const SETS: [(&str, usize, usize, usize); 3] = [
    (
        "et-open-suricata-1.3-enhanced-2017-03-10",
        47,
        19_556,
        4_350,
    ),
    ("et-open-snort-2.9.0-2020-03-27", 45, 19_475, 9_420),
    ("et-open-suricata-5.0-2024-04-21", 51, 24_827, 10_023),
];

fn rules_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

/// Totals, zero errors, and the round trip of every rule against its source bytes.
fn check(set: &str, files: &[(String, Vec<u8>)], parsed: &[ParsedFile<'_>]) -> (usize, usize) {
    assert_eq!(parsed.len(), files.len());
    let (mut enabled, mut disabled) = (0, 0);
    for ((name, data), pf) in files.iter().zip(parsed) {
        assert_eq!(&pf.file, name, "{set}: output order");
        assert!(
            pf.errors.is_empty(),
            "{set}: {:?}",
            &pf.errors[..pf.errors.len().min(5)]
        );
        let mut last_line = 0;
        // Line of a byte offset, counted incrementally (rules come in file order).
        let (mut pos, mut line) = (0usize, 1usize);
        for r in &pf.rules {
            let slice = std::str::from_utf8(&data[r.byte_range.clone()]).unwrap();
            if r.enabled {
                enabled += 1;
                assert_eq!(r.text, slice, "{name}:{}", r.file_line);
            } else {
                disabled += 1;
                assert!(slice.starts_with('#'), "{name}:{}: {slice:?}", r.file_line);
                let without = slice.trim_start_matches(['#', ' ']);
                assert_eq!(r.text, without, "{name}:{}", r.file_line);
            }
            // The slice starts at the rule's first line: count the newlines before it.
            assert!(r.byte_range.start >= pos, "{name}: rules out of order");
            line += data[pos..r.byte_range.start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            pos = r.byte_range.start;
            assert_eq!(r.file_line, line, "{name}: sid {}", r.sid);
            assert!(r.file_line > last_line, "{name}: rules out of order");
            last_line = r.file_line;
            assert!(r.sid != 0 && !r.msg.is_empty(), "{name}:{}", r.file_line);
        }
    }
    (enabled, disabled)
}

#[test]
fn every_corpus_folder_matches_sources_md_with_zero_errors_and_exact_text() {
    for (set, n_files, en, dis) in SETS {
        let files = rules_files(&corpus().join(set).join("rules"));
        assert_eq!(files.len(), n_files, "{set}");
        let parsed = parse_many(&files, &ParseOptions::default());
        assert_eq!(check(set, &files, &parsed), (en, dis), "{set}");
        // No (gid, sid) appears twice in any of these sets.
        let mut ids = HashSet::new();
        for r in parsed.iter().flat_map(|p| &p.rules) {
            assert!(
                ids.insert((r.gid, r.sid)),
                "{set}: duplicate {}:{}",
                r.gid,
                r.sid
            );
        }
    }
}

#[test]
fn tar_gz_archives_give_the_same_counts_as_their_folders() {
    for (set, n_files, en, dis) in &SETS[..2] {
        let path = corpus().join(set).join("emerging.rules.tar.gz");
        let bytes = std::fs::read(&path).unwrap();
        let members =
            read_archive(&path.display().to_string(), &bytes, &Limits::default()).unwrap();
        let files: Vec<(String, Vec<u8>)> = members
            .into_iter()
            .filter(|m| m.path.ends_with(".rules"))
            .map(|m| (m.path, m.data))
            .collect();
        assert_eq!(files.len(), *n_files, "{set}");
        let parsed = parse_many(&files, &ParseOptions::default());
        assert_eq!(check(set, &files, &parsed), (*en, *dis), "{set}");
        // Byte for byte the same members as the extracted folder.
        for (name, data) in &files {
            let on_disk = std::fs::read(corpus().join(set).join(name)).unwrap();
            assert!(
                on_disk == *data,
                "{set}: {name} differs from the folder copy"
            );
        }
    }
}

#[test]
fn blocklist_botcc_rules_are_436_ip_list_rules() {
    let path = corpus().join("et-blocklists/blockrules-2019-10-04/emerging-botcc.rules");
    let files = vec![(path.display().to_string(), std::fs::read(&path).unwrap())];
    let parsed = parse_many(&files, &ParseOptions::default());
    let (en, dis) = check("botcc", &files, &parsed);
    assert_eq!((en, dis), (436, 0));
    let rules = &parsed[0].rules;
    assert_eq!(rules.iter().map(|r| r.sid).min(), Some(2404000));
    assert!(rules.iter().all(|r| r.rev == 5508 && r.header.is_some()));
    assert!(rules
        .iter()
        .all(|r| r.metadata.iter().any(|(k, _)| *k == "signature_severity")));
}

#[test]
fn bundled_sample_has_the_counts_its_readme_states() {
    let files = rules_files(Path::new(SAMPLE));
    let parsed = parse_many(&files, &ParseOptions::default());
    assert_eq!(check("sample", &files, &parsed), (116, 140));
}

fn etferry(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_etferry"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn parse_json_on_the_2024_folder_prints_the_sources_md_counts() {
    let dir = corpus()
        .join("et-open-suricata-5.0-2024-04-21/rules")
        .display()
        .to_string();
    let (code, j, err) = etferry(&["parse", "--json", &dir]);
    assert_eq!(code, 0, "{err}");
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let mut want = [
        "files",
        "rules",
        "enabled",
        "disabled",
        "errors",
        "duplicates",
        "by_file",
        "error_samples",
    ];
    let mut got = keys.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "exactly the documented keys");
    assert_eq!(j["files"], 51);
    assert_eq!(j["rules"], 34_850);
    assert_eq!(j["enabled"], 24_827);
    assert_eq!(j["disabled"], 10_023);
    assert_eq!(j["errors"], 0);
    assert_eq!(j["duplicates"], 0);
    assert_eq!(j["error_samples"], serde_json::json!([]));
    let by_file = j["by_file"].as_object().unwrap();
    assert_eq!(by_file.len(), 51);
    let deleted = &by_file[&format!("{dir}/emerging-deleted.rules")];
    assert_eq!(
        *deleted,
        serde_json::json!({"rules": 3444, "enabled": 0, "disabled": 3444, "errors": 0})
    );
    assert_eq!(
        by_file[&format!("{dir}/botcc.portgrouped.rules")]["rules"],
        0
    );
    let sum: u64 = by_file.values().map(|c| c["rules"].as_u64().unwrap()).sum();
    assert_eq!(sum, 34_850);
}

#[test]
fn parse_json_counts_a_rule_file_given_twice_as_duplicates() {
    let set = corpus()
        .join("et-open-suricata-1.3-enhanced-2017-03-10")
        .display()
        .to_string();
    let icmp = format!("{set}/rules/emerging-icmp.rules");
    let tgz = format!("{set}/emerging.rules.tar.gz");
    let (code, j, err) = etferry(&["parse", "--json", &icmp, &tgz]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["files"], 48);
    let icmp_rules = j["by_file"][&icmp]["rules"].as_u64().unwrap();
    assert!(icmp_rules > 0);
    assert_eq!(j["duplicates"].as_u64().unwrap(), icmp_rules);
    assert_eq!(
        j["by_file"][&format!("{tgz}/rules/emerging-icmp.rules")]["rules"],
        icmp_rules
    );
    assert_eq!(j["rules"].as_u64().unwrap(), 23_906 + icmp_rules);
}

#[test]
fn rule_errors_are_data_exit_0_with_samples() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("local.rules");
    std::fs::write(
        &f,
        "alert tcp any any -> any any (msg:\"ok\"; sid:1; rev:1;)\n\
         alrt tcp any any -> any any (msg:\"typo\"; sid:2; rev:1;)\n\
         #alert tcp any any -> any any (msg:\"off\"; sid:3; rev:1;)\n",
    )
    .unwrap();
    let name = f.display().to_string();
    let (code, j, err) = etferry(&["parse", "--json", &name]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (j["rules"].clone(), j["errors"].clone()),
        (2.into(), 1.into())
    );
    assert_eq!(
        (j["enabled"].clone(), j["disabled"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(j["error_samples"][0]["file"], name.as_str());
    assert_eq!(j["error_samples"][0]["line"], 2);

    // The text summary lists the error as file:line: reason.
    let out = Command::new(env!("CARGO_BIN_EXE_etferry"))
        .args(["parse", "--errors", &name])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("{name}:2: ")), "{text}");
}

#[test]
fn unreadable_input_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.rules").display().to_string();
    let (code, _, err) = etferry(&["parse", "--json", &missing]);
    assert_eq!(code, 1);
    assert!(err.contains("nope.rules"), "{err}");

    // A truncated download: the archive is refused, nothing is counted.
    let src = std::fs::read(
        corpus().join("et-open-suricata-1.3-enhanced-2017-03-10/emerging.rules.tar.gz"),
    )
    .unwrap();
    let cut = dir.path().join("cut.tar.gz");
    std::fs::write(&cut, &src[..src.len() - 100]).unwrap();
    let (code, j, err) = etferry(&["parse", "--json", &cut.display().to_string()]);
    assert_eq!(code, 1);
    assert_eq!(j, serde_json::Value::Null, "no JSON for unread input");
    assert!(
        err.contains("cut.tar.gz") && err.contains("truncated"),
        "{err}"
    );

    let (code, _, err) = etferry(&["parse", "--dialect", "snort4", &missing]);
    assert_eq!(code, 2, "{err}");
}
