//! `etferry verify` and `keygen`, on bundles made by `etferry fetch`; interop with minisign.

mod fetch_support;

use std::path::{Path, PathBuf};

use fetch_support::*;

/// A site with one fresh et-blockrules bundle (small, real block lists).
fn fetched(lifetime: &str) -> (Server, Site, PathBuf) {
    let srv = Server::start();
    let site = Site::new();
    let cfg = site.config(
        &format!("  - ruleset: et-blockrules\n    base_url: {}\n", srv.base),
        "",
    );
    let t = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        t.replace(
            "bundle_lifetime: 14d",
            &format!("bundle_lifetime: {lifetime}"),
        ),
    )
    .unwrap();
    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    let dir = site.spool().join("et-blockrules-00000001");
    (srv, site, dir)
}

fn copy_bundle(src: &Path, to: &Path) -> PathBuf {
    let dst = to.join(src.file_name().unwrap());
    for e in walkdir::WalkDir::new(src) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(src).unwrap();
        if e.file_type().is_dir() {
            std::fs::create_dir_all(dst.join(rel)).unwrap();
        } else {
            std::fs::copy(e.path(), dst.join(rel)).unwrap();
        }
    }
    dst
}

fn verify(key: &Path, bundle: &Path) -> Run {
    Run(etferry(&[
        "verify",
        "--key",
        key.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ]))
}

fn rejected(run: &Run, why: &str) {
    assert_eq!(run.code(), 4, "{}", run.all());
    assert!(run.stdout().starts_with("FAIL "), "{}", run.stdout());
    assert!(
        run.stdout().contains(why),
        "expected {why:?}: {}",
        run.stdout()
    );
}

#[test]
fn fetched_bundle_verifies_ok() {
    let (_srv, site, dir) = fetched("14d");
    let r = verify(&site.pubkey(), &dir);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout().starts_with("OK "), "{}", r.stdout());
    assert!(r.stdout().contains("3 files"), "{}", r.stdout());
}

#[test]
fn one_changed_payload_byte_is_rejected() {
    let (_srv, site, dir) = fetched("14d");
    let tmp = tempfile::tempdir().unwrap();
    let b = copy_bundle(&dir, tmp.path());
    let f = b.join("blockrules/compromised-ips.txt");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&f, bytes).unwrap();
    rejected(
        &verify(&site.pubkey(), &b),
        "blockrules/compromised-ips.txt",
    );
    // The untouched original still passes: the check is about the byte, not the copy.
    assert_eq!(verify(&site.pubkey(), &dir).code(), 0);
}

#[test]
fn changed_manifest_is_rejected() {
    let (_srv, site, dir) = fetched("14d");
    let tmp = tempfile::tempdir().unwrap();
    let b = copy_bundle(&dir, tmp.path());
    let m = b.join("manifest.json");
    let t = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, t.replace("\"sequence\": 1", "\"sequence\": 9")).unwrap();
    rejected(&verify(&site.pubkey(), &b), "signature does not verify");
}

#[test]
fn wrong_key_is_rejected() {
    let (_srv, _site, dir) = fetched("14d");
    let other = tempfile::tempdir().unwrap();
    let out = etferry(&[
        "keygen",
        "--out",
        other.path().to_str().unwrap(),
        "--unencrypted",
    ]);
    assert!(out.status.success());
    rejected(
        &verify(&other.path().join("bundle.pub"), &dir),
        "not a trusted key",
    );
}

#[test]
fn expired_manifest_is_rejected() {
    let (_srv, site, dir) = fetched("1s");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    rejected(&verify(&site.pubkey(), &dir), "expired");
}

#[test]
fn truncated_signature_is_rejected() {
    let (_srv, site, dir) = fetched("14d");
    let tmp = tempfile::tempdir().unwrap();
    let b = copy_bundle(&dir, tmp.path());
    let s = b.join("manifest.json.minisig");
    let t = std::fs::read(&s).unwrap();
    std::fs::write(&s, &t[..t.len() / 2]).unwrap();
    rejected(&verify(&site.pubkey(), &b), "signature");
}

#[test]
fn several_bundles_one_line_each_and_any_failure_exits_4() {
    let (_srv, site, dir) = fetched("14d");
    let tmp = tempfile::tempdir().unwrap();
    let b = copy_bundle(&dir, tmp.path());
    std::fs::remove_file(b.join("manifest.json")).unwrap();
    let r = Run(etferry(&[
        "verify",
        "--key",
        site.pubkey().to_str().unwrap(),
        dir.to_str().unwrap(),
        b.to_str().unwrap(),
    ]));
    assert_eq!(r.code(), 4, "{}", r.all());
    let out = r.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("OK ") && lines[1].starts_with("FAIL "),
        "{out}"
    );
}

#[test]
fn keygen_with_password_file_makes_an_encrypted_key_that_fetch_can_use() {
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pass");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let out = etferry(&[
        "keygen",
        "--out",
        dir.path().join("keys").to_str().unwrap(),
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = std::fs::read_to_string(dir.path().join("keys/bundle.key")).unwrap();
    assert!(!key.contains("correct horse"));
    // No flag at all is a usage error: an unencrypted key must be asked for explicitly.
    let none = etferry(&["keygen", "--out", dir.path().join("k2").to_str().unwrap()]);
    assert_eq!(none.status.code(), Some(2));
    // fetch signs with the encrypted key when given the password file.
    let cfg = dir.path().join("fetch.yaml");
    std::fs::write(
        &cfg,
        format!(
            "spool: spool\nstate: state\nsigning_key: keys/bundle.key\nsigning_key_password_file: pass\n\
             http:\n  retries: 0\nsources:\n  - ruleset: et-blockrules\n    base_url: {}\n",
            srv.base
        ),
    )
    .unwrap();
    let r = Run(etferry(&["fetch", "-c", cfg.to_str().unwrap()]));
    assert_eq!(r.code(), 0, "{}", r.all());
    let v = verify(
        &dir.path().join("keys/bundle.pub"),
        &dir.path().join("spool/et-blockrules-00000001"),
    );
    assert_eq!(v.code(), 0, "{}", v.all());
}

#[test]
fn fetched_bundle_and_heartbeat_verify_with_the_minisign_command() {
    let have = std::process::Command::new("minisign")
        .arg("-v")
        .output()
        .is_ok();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "minisign must be installed in CI"
        );
        eprintln!("SKIPPED: minisign is not installed (apt-get install minisign)");
        return;
    }
    let (_srv, site, dir) = fetched("14d");
    let hb = site.fetch();
    assert_eq!(hb.code(), 0, "{}", hb.all());
    for b in [dir, site.spool().join("et-blockrules-00000002")] {
        let out = std::process::Command::new("minisign")
            .current_dir(&b)
            .args(["-Vm", "manifest.json", "-p"])
            .arg(site.pubkey())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            b.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("Trusted comment: etferry-bundle/1"));
    }
}
