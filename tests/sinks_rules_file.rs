//! The rules-file sink against the real suricata-update 1.3 (the oracle): the full ET Open
//! 5.0 set plus a small flowbit-chain file, one archive, the same four policy files; the sets
//! of enabled and disabled rules (gid, sid and full text) must be equal. Also: bad policy lines
//! are config errors naming file and line, a failing test_command keeps the previous file with
//! exit 3, and a changed policy file rewrites the file at the next run.

mod ingest_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ingest_support::*;

/// suricata-update from `ETFERRY_SURICATA_UPDATE`, the CI venv, or PATH. `None` (test skipped
/// with a message) only outside CI.
fn suricata_update() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ETFERRY_SURICATA_UPDATE").map(PathBuf::from),
        Some(PathBuf::from("/opt/etferry-pytools/bin/suricata-update")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return Some(c);
        }
    }
    if Command::new("suricata-update").arg("-V").output().is_ok() {
        return Some(PathBuf::from("suricata-update"));
    }
    if std::env::var_os("CI").is_some() {
        panic!("suricata-update is not installed; .ci/run installs it into /opt/etferry-pytools");
    }
    eprintln!(
        "SKIPPED: suricata-update not found (set ETFERRY_SURICATA_UPDATE or run \
         `python3 -m venv /opt/etferry-pytools && /opt/etferry-pytools/bin/pip install 'suricata-update==1.3.*'`)"
    );
    None
}

/// A flowbit chain (1 → 2 → 3, all but the last shipped disabled), a setter nobody needs, a
/// duplicate sid with a higher rev, and a rule suricata-update drops (no `;` before `)`).
const CHAIN: &str = "\
# alert tcp any any -> any any (msg:\"ETFERRY CHAIN step 1\"; flow:established; content:\"a\"; flowbits:set,etferry.one; sid:9000001; rev:1;)
# alert tcp any any -> any any (msg:\"ETFERRY CHAIN step 2\"; flow:established; flowbits:isset,etferry.one; content:\"b\"; flowbits:set,etferry.two; sid:9000002; rev:1;)
alert tcp any any -> any any (msg:\"ETFERRY CHAIN step 3\"; flow:established; flowbits:isset,etferry.two; content:\"c\"; sid:9000003; rev:1;)
# alert tcp any any -> any any (msg:\"ETFERRY CHAIN unrelated\"; flowbits:set,etferry.three; sid:9000004; rev:1;)
alert tcp any any -> any any (msg:\"ETFERRY dup\"; content:\"x\"; sid:9000005; rev:1;)
alert tcp any any -> any any (msg:\"ETFERRY dup newer\"; content:\"x\"; sid:9000005; rev:2;)
alert tcp any any -> any any (msg:\"ETFERRY no final semicolon\"; content:\"y\"; sid:9000006; rev:1)
";

/// Every matcher kind, modify with capture groups (Python `\\1` and Oinkmaster `${1}`),
/// metadata-add, drop, and a drop that hides a rule from a later group matcher.
const DISABLE: &str = "\
# real tuning: games off, one sid, one gid:sid, a regex, a metadata value, the phishing setters
group:emerging-games
2101948
1:2001239
re:ET POLICY .*Dropbox
metadata: signature_severity Informational
re:flowbits:set,ET\\.genericphish
group:botcc.rules
";
const ENABLE: &str = "\
group:emerging-hunting.rules
re:ET INFO .*Observed   # trailing comment
2015016
# suricata-update prefixes member paths with a hash of the URL; a leading * matches in both
filename:*/emerging-scan.rules
";
const DROP: &str = "\
group:emerging-exploit_kit
re:ET MALWARE .*CnC
";
const MODIFY: &str = "\
\"re:ET SCAN\" \"(msg:\\\"ET SCAN)\" \"\\1 [tuned]\"
2001239 \"rev:(\\d+);\" \"rev:${1}; metadata:etferry tuned;\"
group:emerging-exploit_kit \"msg:\\\"ET EXPLOIT_KIT\" \"msg:\\\"ET EK\"
group:emerging-dns \"(content:\\\"[^\\\"]*\\\"); (nocase;)\" \"\\1; fast_pattern; \\2\"
metadata-add \"re:ET WORM\" etferry_worm yes
";

struct Oracle {
    env: Env,
    archive: Vec<u8>,
    conf: PathBuf,
}

fn setup(extra: &str) -> Oracle {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let dir = corpus("et-open-suricata-5.0-2024-04-21/rules");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let name = format!("rules/{}", p.file_name().unwrap().to_string_lossy());
        files.push((name, std::fs::read(&p).unwrap()));
    }
    files.push((
        "rules/zz-etferry-chain.rules".into(),
        CHAIN.as_bytes().to_vec(),
    ));
    let archive = targz(&files);
    let config = format!(
        "sinks:\n  rules_file:\n    path: ../out/suricata.rules\n    disable_conf: disable.conf\n    \
         enable_conf: enable.conf\n    drop_conf: drop.conf\n    modify_conf: modify.conf\n    \
         sid_msg_map: ../out/sid-msg.map\n    classification: ../out/classification.config\n{extra}"
    );
    let env = Env::with_config(&config);
    let conf = env.path("config");
    for (n, t) in [
        ("disable.conf", DISABLE),
        ("enable.conf", ENABLE),
        ("drop.conf", DROP),
        ("modify.conf", MODIFY),
    ] {
        std::fs::write(conf.join(n), t).unwrap();
    }
    Oracle { env, archive, conf }
}

/// Run suricata-update 1.3 offline on `archive` (placed in its download cache, as a previous
/// online run would have left it) with the policy files in `conf`; the output directory.
fn run_suricata_update(tool: &Path, archive: &[u8], conf: &Path, work: &Path) -> (PathBuf, String) {
    use md5::Digest;
    let url = "https://rules.emergingthreats.net/open/suricata-5.0/emerging.rules.tar.gz";
    let data = work.join("data");
    let cache = data.join("update/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let key = hex::encode(md5::Md5::digest(url.as_bytes()));
    std::fs::write(cache.join(format!("{key}-emerging.rules.tar.gz")), archive).unwrap();
    let out = work.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // An explicit, empty update.yaml so a machine's /etc/suricata/update.yaml cannot interfere.
    let yaml = work.join("update.yaml");
    std::fs::write(&yaml, "ignore:\n  - \"*deleted.rules\"\n").unwrap();
    let mut cmd = Command::new(tool);
    // PATH holds only the tool's own directory, so no installed Suricata (and its suricata.yaml)
    // changes what suricata-update writes.
    if let Some(dir) = tool.parent().filter(|d| !d.as_os_str().is_empty()) {
        cmd.env("PATH", dir);
    }
    let o = cmd
        .args(["-c", yaml.to_str().unwrap(), "-D", data.to_str().unwrap()])
        .args(["--url", url])
        .args([
            "--offline",
            "--no-test",
            "--no-reload",
            "-o",
            out.to_str().unwrap(),
        ])
        .arg("--sid-msg-map")
        .arg(out.join("sid-msg.map"))
        .arg("--disable-conf")
        .arg(conf.join("disable.conf"))
        .arg("--enable-conf")
        .arg(conf.join("enable.conf"))
        .arg("--drop-conf")
        .arg(conf.join("drop.conf"))
        .arg("--modify-conf")
        .arg(conf.join("modify.conf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "suricata-update failed: {err}");
    eprintln!(
        "suricata-update: {}",
        err.lines()
            .filter(|l| l.contains("Loaded")
                || l.contains("Disabled")
                || l.contains("Enabled")
                || l.contains("Modified")
                || l.contains("Dropped")
                || l.contains("Writing rules"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    (out, err)
}

/// The number in suricata-update's log line `<before>N<after>`.
fn logged(log: &str, before: &str, after: &str) -> usize {
    log.lines()
        .find_map(|l| {
            let i = l.find(before)? + before.len();
            let rest = &l[i..];
            let n = rest.find(after)?;
            rest[..n].parse().ok()
        })
        .unwrap_or_else(|| panic!("no `{before}N{after}` in the log"))
}

/// (enabled, disabled) rule lines of a merged rules file, as sets.
fn split(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut en, mut dis) = (BTreeSet::new(), BTreeSet::new());
    for l in text.lines() {
        match l.strip_prefix("# ") {
            Some(r) => dis.insert(r.to_string()),
            None => en.insert(l.to_string()),
        };
    }
    (en, dis)
}

#[test]
fn rules_file_equals_suricata_update_on_full_et_open_with_every_policy_kind() {
    let Some(tool) = suricata_update() else {
        return;
    };
    let o = setup("");
    let b = o.env.bundle(
        "et-open-suricata-5.0",
        1,
        &[("emerging.rules.tar.gz".into(), o.archive.clone())],
    );
    let r = o.env.ingest(&b);
    assert_eq!(r.code, Some(0), "{r:?}");
    let ours = std::fs::read_to_string(o.env.path("out/suricata.rules")).unwrap();
    let (su_out, log) = run_suricata_update(&tool, &o.archive, &o.conf, &o.env.path("su"));
    let theirs = std::fs::read_to_string(su_out.join("suricata.rules")).unwrap();

    let (oe, od) = split(&ours);
    let (te, td) = split(&theirs);
    let diff = |a: &BTreeSet<String>, b: &BTreeSet<String>| -> Vec<String> {
        a.symmetric_difference(b)
            .take(5)
            .map(|l| l.chars().take(160).collect())
            .collect()
    };
    let differences = oe.symmetric_difference(&te).count() + od.symmetric_difference(&td).count();
    println!(
        "ORACLE full ET Open 5.0 (+chain file): etferry {} enabled / {} disabled; \
         suricata-update {} enabled / {} disabled; differences {differences}; byte-identical: {}",
        oe.len(),
        od.len(),
        te.len(),
        td.len(),
        ours == theirs
    );
    assert_eq!(
        differences,
        0,
        "enabled: {:?}\ndisabled: {:?}",
        diff(&oe, &te),
        diff(&od, &td)
    );
    assert_eq!(ours.lines().count(), theirs.lines().count());
    // The policy really did something of every kind.
    assert!(
        oe.len() > 15_000 && od.len() > 10_000,
        "{} {}",
        oe.len(),
        od.len()
    );
    assert!(oe.iter().any(|l| l.starts_with("drop ")), "drop");
    assert!(
        oe.iter()
            .chain(&od)
            .any(|l| l.contains("msg:\"ET SCAN [tuned]")),
        "modify \\1"
    );
    assert!(
        od.iter()
            .any(|l| l.contains("rev:") && l.contains("metadata:etferry tuned;")),
        "modify ${{1}}"
    );
    assert!(
        oe.iter().any(|l| l.contains("metadata: etferry_worm yes;")),
        "metadata-add"
    );
    assert!(
        oe.iter()
            .any(|l| l.contains("msg:\"ETFERRY CHAIN step 1\"") && l.contains("noalert;")),
        "chain 1"
    );
    assert!(
        oe.iter()
            .any(|l| l.contains("msg:\"ETFERRY CHAIN step 2\"") && l.contains("noalert;")),
        "chain 2"
    );
    assert!(od.iter().any(|l| l.contains("ETFERRY CHAIN unrelated")));
    assert!(
        oe.iter().any(|l| l.contains("ETFERRY dup newer")) && !ours.contains("\"ETFERRY dup\"")
    );
    assert!(!ours.contains("no final semicolon"));
    assert!(!ours.contains("ET DELETED"), "*deleted.rules is ignored");
    // sid-msg.map too.
    let ours_map = std::fs::read_to_string(o.env.path("out/sid-msg.map")).unwrap();
    let theirs_map = std::fs::read_to_string(su_out.join("sid-msg.map")).unwrap();
    let a: BTreeSet<&str> = ours_map.lines().collect();
    let b: BTreeSet<&str> = theirs_map.lines().collect();
    assert_eq!(a.symmetric_difference(&b).count(), 0, "sid-msg.map differs");
    let cls = std::fs::read_to_string(o.env.path("out/classification.config")).unwrap();
    assert!(cls.lines().count() > 30 && cls.contains("config classification: trojan-activity"));

    // Dry run prints the counts, matching the file.
    let d = o.env.run(&["export", "rules_file", "--dry-run"]);
    assert_eq!(d.code, Some(0), "{d:?}");
    assert!(
        d.stdout
            .contains(&format!("{} enabled, {} disabled", oe.len(), od.len())),
        "{}",
        d.stdout
    );
    println!("{}", d.stdout.trim());
    // The policy counts suricata-update logs are etferry's too.
    let expect = format!(
        "by policy: {} disabled, {} enabled, {} dropped, {} modified; {} enabled by flowbits",
        logged(&log, "Disabled ", " rules."),
        logged(&log, "Enabled ", " rules."),
        logged(&log, "Dropped ", " rules."),
        logged(&log, "Modified ", " rules."),
        logged(&log, "Enabled ", " rules for flowbit dependencies."),
    );
    assert!(d.stdout.contains(&expect), "{expect}\n{}", d.stdout);
}

#[test]
fn bad_policy_line_is_a_config_error_naming_file_and_line() {
    let o = setup("");
    std::fs::write(
        o.conf.join("disable.conf"),
        "2000001\n\nemerging-dns   # no .rules, no group:\n",
    )
    .unwrap();
    let r = o.env.run(&["status"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("disable.conf, line 3"), "{}", r.stderr);
    std::fs::write(o.conf.join("disable.conf"), "").unwrap();
    std::fs::write(o.conf.join("modify.conf"), "2000001 \"a(\" \"b\"\n").unwrap();
    let r = o.env.run(&["status"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("modify.conf, line 1"), "{}", r.stderr);
}

fn small_bundle(o: &Oracle, seq: u64, sid: u32) -> PathBuf {
    let files = vec![("rules/emerging-test.rules".to_string(), small_rules(sid, 3))];
    o.env.bundle("et-open-test", seq, &files)
}

#[test]
fn failing_test_command_keeps_the_previous_file_and_exits_3() {
    let o = setup("    test_command: \"grep -q 'sid:2000001;' {path}\"\n");
    std::fs::write(o.conf.join("disable.conf"), "").unwrap();
    let r = o.env.ingest(&small_bundle(&o, 1, 2_000_000));
    assert_eq!(r.code, Some(0), "{r:?}");
    let path = o.env.path("out/suricata.rules");
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(first.lines().count(), 3);
    // The next ruleset lacks sid 2000001: the test command rejects it.
    let r = o.env.ingest(&small_bundle(&o, 2, 2_000_010));
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("test_command"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    assert!(!std::fs::read_dir(o.env.path("out")).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".etferry-test")));
}

#[test]
fn a_changed_policy_file_rewrites_the_file_on_the_next_run() {
    let o = setup("");
    std::fs::write(o.conf.join("disable.conf"), "").unwrap();
    let r = o.env.ingest(&small_bundle(&o, 1, 2_000_000));
    assert_eq!(r.code, Some(0), "{r:?}");
    let path = o.env.path("out/suricata.rules");
    assert!(!std::fs::read_to_string(&path).unwrap().contains("# alert"));
    std::fs::write(o.conf.join("disable.conf"), "2000001\n").unwrap();
    let r = o.env.run(&["export", "rules_file"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("# alert")).count(),
        1,
        "{text}"
    );
    assert!(
        r.stdout
            .contains("2 enabled, 1 disabled; by policy: 1 disabled"),
        "{}",
        r.stdout
    );
    // A heartbeat-like rerun with nothing changed leaves the file alone.
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(o.conf.join("disable.conf"), "2000002\n").unwrap();
    let r = o.env.ingest(&small_bundle(&o, 2, 2_000_000));
    assert_eq!(r.code, Some(0), "{r:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("# alert tcp any any -> any any (msg:\"ET TEST rule 2\""),
        "{text}"
    );
    assert!(std::fs::metadata(&path).unwrap().modified().unwrap() >= before);
    // Nothing changed (same payload, same policy): the file is not replaced (same inode).
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(&path).unwrap().ino();
    let r = o.env.ingest(&small_bundle(&o, 3, 2_000_000));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
}

#[test]
fn rules_file_equals_suricata_update_on_the_2017_et_open_archive() {
    let Some(tool) = suricata_update() else {
        return;
    };
    let o = setup("");
    let archive = read("et-open-suricata-1.3-enhanced-2017-03-10/emerging.rules.tar.gz");
    let b = o.env.bundle(
        "et-open-suricata-1.3",
        1,
        &[("emerging.rules.tar.gz".into(), archive.clone())],
    );
    let r = o.env.ingest(&b);
    assert_eq!(r.code, Some(0), "{r:?}");
    let ours = std::fs::read_to_string(o.env.path("out/suricata.rules")).unwrap();
    let (su_out, _) = run_suricata_update(&tool, &archive, &o.conf, &o.env.path("su"));
    let theirs = std::fs::read_to_string(su_out.join("suricata.rules")).unwrap();
    let (oe, od) = split(&ours);
    let (te, td) = split(&theirs);
    let differences = oe.symmetric_difference(&te).count() + od.symmetric_difference(&td).count();
    println!(
        "ORACLE ET Open 2017 (suricata-1.3-enhanced): etferry {} enabled / {} disabled; \
         suricata-update {} enabled / {} disabled; differences {differences}; byte-identical: {}",
        oe.len(),
        od.len(),
        te.len(),
        td.len(),
        ours == theirs
    );
    let firsts: Vec<String> = oe
        .symmetric_difference(&te)
        .chain(od.symmetric_difference(&td))
        .take(5)
        .map(|l| l.chars().take(160).collect())
        .collect();
    assert_eq!(differences, 0, "{firsts:#?}");
    assert!(oe.len() > 15_000, "{}", oe.len());
}
