//! `etferry sign` / `etferry verify FILE`: detached signatures of release checksum lists with the
//! bundle key, checked by etferry and by the real `minisign` program; tampering, a foreign key and an
//! oversized signature file are refused.

use std::path::Path;
use std::process::{Command, Output};

fn etferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etferry"))
        .args(args)
        .env_remove("ETFERRY_CONFIG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn have_minisign() -> bool {
    let have = Command::new("minisign").arg("-v").output().is_ok();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "minisign must be installed in CI"
        );
        eprintln!("SKIPPED (minisign part): minisign is not installed (apt-get install minisign)");
    }
    have
}

fn minisign_verifies(file: &Path, pubkey: &Path) -> bool {
    Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(pubkey)
        .arg("-m")
        .arg(file)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn signed_sha256sums_verify_with_etferry_and_minisign_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pw = d.join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let kg = etferry(&[
        "keygen",
        "--out",
        &d.join("keys").display().to_string(),
        "--password-file",
        &pw.display().to_string(),
    ]);
    assert!(kg.status.success(), "{}", text(&kg));
    let (sk, pk) = (d.join("keys/bundle.key"), d.join("keys/bundle.pub"));
    let sums = d.join("SHA256SUMS");
    std::fs::write(
        &sums,
        "0f343b0931126a20f133d67c2b018a3b5a4e8ba9a7f4e7e1c1cf5e0bd9c3e7a1  etferry_0.1.0_amd64.deb\n",
    )
    .unwrap();
    let s = etferry(&[
        "sign",
        "--key",
        &sk.display().to_string(),
        "--password-file",
        &pw.display().to_string(),
        &sums.display().to_string(),
    ]);
    assert!(s.status.success(), "{}", text(&s));
    let sig = d.join("SHA256SUMS.minisig");
    assert!(sig.is_file());

    let v = etferry(&[
        "verify",
        "--key",
        &pk.display().to_string(),
        &sums.display().to_string(),
    ]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(text(&v).contains("OK "), "{}", text(&v));
    let minisign = have_minisign();
    if minisign {
        assert!(
            minisign_verifies(&sums, &pk),
            "minisign -V refused etferry's signature"
        );
    }

    // One changed byte: both refuse.
    let mut bytes = std::fs::read(&sums).unwrap();
    bytes[0] = b'1';
    std::fs::write(&sums, &bytes).unwrap();
    let v = etferry(&[
        "verify",
        "--key",
        &pk.display().to_string(),
        &sums.display().to_string(),
    ]);
    assert_eq!(v.status.code(), Some(4), "{}", text(&v));
    assert!(text(&v).contains("does not verify"), "{}", text(&v));
    if minisign {
        assert!(!minisign_verifies(&sums, &pk));
    }

    // A key that is not trusted.
    let kg = etferry(&[
        "keygen",
        "--out",
        &d.join("other").display().to_string(),
        "--unencrypted",
    ]);
    assert!(kg.status.success(), "{}", text(&kg));
    let v = etferry(&[
        "verify",
        "--key",
        &d.join("other/bundle.pub").display().to_string(),
        &sums.display().to_string(),
    ]);
    assert_eq!(v.status.code(), Some(4), "{}", text(&v));
    assert!(
        text(&v).contains("not among the trusted keys"),
        "{}",
        text(&v)
    );

    // A "signature" far larger than any minisign signature is refused without being read whole.
    std::fs::write(&sig, vec![b'A'; 1 << 20]).unwrap();
    let v = etferry(&[
        "verify",
        "--key",
        &pk.display().to_string(),
        &sums.display().to_string(),
    ]);
    assert_eq!(v.status.code(), Some(4), "{}", text(&v));
    assert!(
        text(&v).contains("more than the 4096 allowed"),
        "{}",
        text(&v)
    );
}

#[test]
fn sign_refuses_a_directory_and_a_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kg = etferry(&[
        "keygen",
        "--out",
        &d.join("k").display().to_string(),
        "--unencrypted",
    ]);
    assert!(kg.status.success(), "{}", text(&kg));
    let s = etferry(&[
        "sign",
        "--key",
        &d.join("k/bundle.key").display().to_string(),
        &d.display().to_string(),
    ]);
    assert_eq!(s.status.code(), Some(2), "{}", text(&s));
    assert!(text(&s).contains("is a directory"), "{}", text(&s));
    let s = etferry(&[
        "sign",
        "--key",
        &d.join("nope.key").display().to_string(),
        &d.join("k/bundle.pub").display().to_string(),
    ]);
    assert_ne!(s.status.code(), Some(0), "{}", text(&s));
    assert!(text(&s).contains("nope.key"), "{}", text(&s));
}
