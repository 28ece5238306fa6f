//! What a hostile or careless medium cannot do (issue 16, findings 1, 2, 4, 5 and 8): symlinks are
//! never followed, copies are private, everything read from the medium has a size cap, and
//! untrusted names are shown with control characters escaped.

mod ingest_support;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use ingest_support::*;

const ACCEPT: &str = "accept_unsigned_archives: true\narchive_sources:\n  - match: \"hand-*\"\n    ruleset: et-open\n    name: hand\n";
const SECRET: &str = "s3cr3t-Pa55-do-not-copy";

fn rules_file(sid: u32, n: u32) -> Vec<(String, Vec<u8>)> {
    vec![("emerging-test.rules".to_string(), small_rules(sid, n))]
}

/// Every regular file under `dir` (recursively, links not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// No file anywhere in the spool (outside the inbox) holds `needle`.
fn assert_not_copied(env: &Env, needle: &str) {
    for sub in ["spool/work", "spool/done", "spool/failed"] {
        for f in files_under(&env.path(sub)) {
            let data = std::fs::read(&f).unwrap();
            assert!(
                !String::from_utf8_lossy(&data).contains(needle),
                "{} holds the secret",
                f.display()
            );
        }
    }
}

fn journal_status(env: &Env, id: &str) -> Option<(String, String)> {
    let c = rusqlite::Connection::open(env.store_path()).ok()?;
    c.query_row(
        "SELECT stage, status FROM bundles WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

fn key(env: &Env) -> String {
    env.path("keys/bundle.pub").to_string_lossy().into_owned()
}

fn secret_file(env: &Env) -> PathBuf {
    let p = env.path("threatq.pass");
    std::fs::write(&p, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

// ----- finding 1: symlinks on the medium ----------------------------------------------------

#[test]
fn symlinked_archive_in_the_inbox_is_refused_and_nothing_is_copied() {
    for extra in ["", ACCEPT] {
        let env = Env::with_config(extra);
        let link = env.inbox().join("local.rules");
        symlink(secret_file(&env), &link).unwrap();
        let o = env.run(&["ingest", link.to_str().unwrap()]);
        assert_eq!(o.code, Some(4), "accept={}: {o:?}", !extra.is_empty());
        let all = format!("{}{}", o.stdout, o.stderr);
        assert!(
            all.contains("local.rules") && all.contains("symbolic link"),
            "{o:?}"
        );
        assert!(!all.contains(SECRET), "{o:?}");
        assert_not_copied(&env, SECRET);
        // The link is left where it is, for the operator to look at.
        assert!(std::fs::symlink_metadata(&link).is_ok());
    }
}

#[test]
fn symlinked_md5_beside_an_archive_is_refused() {
    let env = Env::with_config(ACCEPT);
    let a = env.inbox().join("hand-1.rules");
    std::fs::write(&a, small_rules(3_000_000, 5)).unwrap();
    symlink(secret_file(&env), env.inbox().join("hand-1.rules.md5")).unwrap();
    let o = env.run(&["ingest", a.to_str().unwrap()]);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(o.stdout.contains("hand-1.rules.md5"), "{o:?}");
    assert!(!format!("{o:?}").contains(SECRET), "{o:?}");
    assert_not_copied(&env, SECRET);
}

#[test]
fn symlinked_subdirectory_is_refused_by_verify_dry_run_and_ingest_alike() {
    let env = Env::new();
    let b = env.bundle(
        "et-open",
        1,
        &[(
            "rules/emerging-test.rules".to_string(),
            small_rules(2_000_000, 5),
        )],
    );
    let elsewhere = env.path("elsewhere");
    std::fs::rename(b.join("rules"), &elsewhere).unwrap();
    symlink(&elsewhere, b.join("rules")).unwrap();
    let bs = b.to_str().unwrap();

    let v = env.run(&["verify", "--key", &key(&env), bs]);
    assert_eq!(v.code, Some(4), "verify: {v:?}");
    assert!(v.stdout.contains("symbolic link"), "{v:?}");
    let d = env.run(&["ingest", "--dry-run", bs]);
    assert_eq!(d.code, Some(4), "dry run: {d:?}");
    assert!(d.stdout.contains("symbolic link"), "{d:?}");
    let i = env.run(&["ingest", bs]);
    assert_eq!(i.code, Some(4), "ingest: {i:?}");
    assert!(i.stdout.contains("symbolic link"), "{i:?}");
    assert_eq!(env.status()["sources"].as_array().unwrap().len(), 0);
    // Nothing half-copied is left behind in work/ or failed/.
    for sub in ["spool/work", "spool/failed"] {
        let left: Vec<_> = std::fs::read_dir(env.path(sub))
            .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.iter().all(|n| n.to_string_lossy().ends_with(".reason.txt")),
            "{sub}: {left:?}"
        );
    }
}

#[test]
fn symlinked_manifest_is_refused_by_verify() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    let real = env.path("manifest-elsewhere.json");
    std::fs::rename(b.join("manifest.json"), &real).unwrap();
    symlink(&real, b.join("manifest.json")).unwrap();
    let v = env.run(&["verify", "--key", &key(&env), b.to_str().unwrap()]);
    assert_eq!(v.code, Some(4), "{v:?}");
    assert!(v.stdout.contains("symbolic link"), "{v:?}");
}

#[test]
fn watch_names_a_symlinked_inbox_entry_once_and_leaves_it() {
    let env = Env::with_config(ACCEPT);
    let link = env.inbox().join("hand-link.rules");
    symlink(secret_file(&env), &link).unwrap();
    let w = Watch::start(&env, &[]);
    // Many rescans (every 200 ms) pass while the link sits there.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let o = w.terminate();
    let all = format!("{}{}", o.stdout, o.stderr);
    assert_eq!(all.matches("hand-link.rules").count(), 1, "{o:?}");
    assert!(all.contains("symbolic link"), "{o:?}");
    assert!(std::fs::symlink_metadata(&link).is_ok());
    assert_not_copied(&env, SECRET);
}

// ----- finding 8: a symlinked bundle directory ends in a terminal state ------------------------

#[test]
fn symlinked_bundle_directory_is_rejected_by_name_and_its_journal_ends() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    let link = env.inbox().join("et-open-00000001");
    symlink(&b, &link).unwrap();
    for arg in [
        link.to_string_lossy().into_owned(),
        format!("{}/", link.display()),
    ] {
        let o = env.run(&["ingest", &arg]);
        assert_eq!(o.code, Some(4), "{arg}: {o:?}");
        assert!(
            o.stdout.contains("et-open-00000001") && o.stdout.contains("symbolic link"),
            "{o:?}"
        );
        let (stage, status) = journal_status(&env, "et-open-00000001").unwrap();
        assert_eq!((stage.as_str(), status.as_str()), ("rejected", "rejected"));
    }
    // Nothing was copied off the medium through the link.
    assert!(!env.path("spool/work/et-open-00000001").exists());
    assert!(!env.path("spool/failed/et-open-00000001").exists());
    assert_eq!(env.status()["sources"].as_array().unwrap().len(), 0);
}

// ----- finding 2: copies never widen permissions ------------------------------------------------

fn assert_private(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", e.path().display());
    }
}

#[test]
fn everything_written_under_work_done_failed_and_the_store_is_private() {
    let env = Env::with_config(ACCEPT);
    let good = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    for f in files_under(&good) {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let inbox_copy = env.inbox().join("et-open-00000001");
    copy_dir(&good, &inbox_copy);
    assert_eq!(env.ingest(&inbox_copy).code, Some(0));
    // A tampered bundle (rejected) and a bare archive with a wrong .md5 (rejected).
    let bad = env.bundle("et-open", 2, &rules_file(2_000_000, 5));
    std::fs::write(bad.join("emerging-test.rules"), b"changed").unwrap();
    assert_eq!(env.ingest(&bad).code, Some(4));
    let a = env.inbox().join("hand-1.rules");
    std::fs::write(&a, small_rules(3_000_000, 5)).unwrap();
    std::fs::write(
        env.inbox().join("hand-1.rules.md5"),
        "00000000000000000000000000000000\n",
    )
    .unwrap();
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(env.ingest(&a).code, Some(4));
    // A held archive waits in work/.
    let h1 = env.inbox().join("hand-2.rules");
    std::fs::write(&h1, small_rules(3_100_000, 10)).unwrap();
    assert_eq!(env.ingest(&h1).code, Some(0));
    let h2 = env.inbox().join("hand-3.rules");
    std::fs::write(&h2, small_rules(3_100_000, 1)).unwrap();
    assert_eq!(env.ingest(&h2).code, Some(5));

    for d in ["spool/work", "spool/done", "spool/failed"] {
        assert!(env.path(d).is_dir(), "{d}");
        assert_private(&env.path(d));
    }
    for f in std::fs::read_dir(env.path("spool")).unwrap() {
        let p = f.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("etferry.db")
        {
            assert_private(&p);
        }
    }
}

// ----- finding 4: size caps on everything read from the medium -------------------------------

#[test]
fn signature_file_over_its_cap_is_refused_by_verify_and_ingest() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    let sig = b.join("manifest.json.minisig");
    let mut data = std::fs::read(&sig).unwrap();
    data.extend(std::iter::repeat_n(b'\n', 1 << 20));
    std::fs::write(&sig, data).unwrap();
    let v = env.run(&["verify", "--key", &key(&env), b.to_str().unwrap()]);
    assert_eq!(v.code, Some(4), "{v:?}");
    assert!(v.stdout.contains("manifest.json.minisig"), "{v:?}");
    assert!(v.stdout.contains("cap"), "{v:?}");
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(!env.path("spool/done/et-open-00000001").exists());
}

#[test]
fn trailing_data_after_the_signature_is_refused() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    let sig = b.join("manifest.json.minisig");
    let mut text = std::fs::read_to_string(&sig).unwrap();
    text.push_str("this line was not signed\n");
    std::fs::write(&sig, text).unwrap();
    let v = env.run(&["verify", "--key", &key(&env), b.to_str().unwrap()]);
    assert_eq!(v.code, Some(4), "{v:?}");
    assert!(v.stdout.contains("trailing"), "{v:?}");
}

#[test]
fn manifest_over_its_cap_says_so() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    let m = b.join("manifest.json");
    let mut data = std::fs::read(&m).unwrap();
    data.extend(std::iter::repeat_n(b' ', 17 << 20));
    std::fs::write(&m, data).unwrap();
    let v = env.run(&["verify", "--key", &key(&env), b.to_str().unwrap()]);
    assert_eq!(v.code, Some(4), "{v:?}");
    assert!(
        v.stdout.contains("manifest.json") && v.stdout.contains("cap"),
        "{v:?}"
    );
    assert!(!v.stdout.contains("does not verify"), "{v:?}");
}

#[test]
fn files_the_manifest_does_not_list_are_not_copied_and_are_named() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    let inbox_copy = env.inbox().join("et-open-00000001");
    copy_dir(&b, &inbox_copy);
    std::fs::write(inbox_copy.join("unlisted.bin"), b"not in the manifest").unwrap();
    std::fs::create_dir_all(inbox_copy.join("extra")).unwrap();
    std::fs::write(inbox_copy.join("extra/x.rules"), small_rules(9_000_000, 1)).unwrap();
    let o = env.ingest(&inbox_copy);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stderr.contains("unlisted.bin") && o.stderr.contains("extra/x.rules"),
        "{o:?}"
    );
    let done = env.path("spool/done/et-open-00000001");
    assert!(done.join("emerging-test.rules").is_file());
    assert!(!done.join("unlisted.bin").exists());
    assert!(!done.join("extra").exists());
    assert_eq!(env.source_status("et-open")["rules"], 5);
}

#[test]
fn bare_file_over_the_total_size_limit_is_refused_before_it_is_copied() {
    let env = Env::with_config(&format!("{ACCEPT}limits:\n  max_total_size: 4KiB\n"));
    let a = env.inbox().join("hand-big.rules");
    let data = small_rules(3_000_000, 200);
    assert!(data.len() > 8 << 10);
    std::fs::write(&a, &data).unwrap();
    let o = env.run(&["ingest", a.to_str().unwrap()]);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(o.stdout.contains("max_total_size"), "{o:?}");
    for sub in ["spool/work", "spool/failed"] {
        for f in files_under(&env.path(sub)) {
            assert!(
                std::fs::metadata(&f).unwrap().len() < 4096,
                "{} was copied",
                f.display()
            );
        }
    }
}

#[test]
fn trailing_data_after_the_last_gzip_stream_is_refused() {
    let env = Env::with_config(ACCEPT);
    let mut data = targz(&[(
        "rules/emerging-test.rules".into(),
        small_rules(3_000_000, 5),
    )]);
    data.extend_from_slice(b"appended after the gzip stream");
    let a = env.inbox().join("hand-1.tar.gz");
    std::fs::write(&a, data).unwrap();
    let o = env.run(&["ingest", a.to_str().unwrap()]);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(o.stdout.contains("trailing"), "{o:?}");
    assert_eq!(env.status()["sources"].as_array().unwrap().len(), 0);
}

// ----- finding 5: untrusted names are shown safely ---------------------------------------------

#[test]
fn hostile_inbox_names_are_shown_with_control_characters_escaped() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    let evil = env
        .inbox()
        .join("x\nstored et-open-00000009: 99 rules\x1b[2J\x1b]0;pwn\x07");
    copy_dir(&b, &evil);
    let o = env.ingest(&evil);
    assert_eq!(o.code, Some(4), "{o:?}");
    for text in [&o.stdout, &o.stderr] {
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{o:?}");
        assert!(
            !text.lines().any(|l| l.starts_with("stored")),
            "a forged line: {o:?}"
        );
    }
    assert!(
        o.stdout.contains("\\n") && o.stdout.contains("\\x1b"),
        "{o:?}"
    );
    let reasons: String = files_under(&env.path("spool/failed"))
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".reason.txt"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        !reasons.is_empty() && !reasons.contains('\x1b'),
        "{reasons:?}"
    );
    assert_eq!(reasons.lines().count(), 1, "{reasons:?}");
}

#[test]
fn hostile_member_paths_are_shown_escaped() {
    let env = Env::with_config(ACCEPT);
    let mut tar = Vec::new();
    raw_tar_entry(
        &mut tar,
        "rules/a\x1b[31m\nstored.rules",
        tar::EntryType::Regular,
        None,
        b"alert tcp any any -> any any (msg:\"broken\"; sid:;)\n",
    );
    raw_tar_entry(
        &mut tar,
        "rules/emerging-test.rules",
        tar::EntryType::Regular,
        None,
        &small_rules(3_000_000, 5),
    );
    let a = env.inbox().join("hand-1.tar.gz");
    std::fs::write(&a, gzip_tar(tar)).unwrap();
    let o = env.run(&["ingest", a.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("error"), "{o:?}");
    for text in [&o.stdout, &o.stderr] {
        assert!(!text.contains('\x1b'), "{o:?}");
        assert!(!text.lines().any(|l| l.starts_with("stored")), "{o:?}");
    }
    let r = env.run(&["report", "--last"]);
    assert!(!r.stdout.contains('\x1b'), "{r:?}");
}
