//! `etferry init` driven by piped answers writes configs that `config check` accepts, with 0600
//! modes and the password in its own file.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_etferry");

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn run_init(args: &[&str], out: &Path, input: &[u8]) -> (Option<i32>, String, String) {
    // These tests set up DMZ and air-gapped hosts; the connected branch is tests/sync_init.rs.
    let connected: &[&str] = if args
        .iter()
        .any(|a| a.starts_with("--role") || a.starts_with("--connected"))
    {
        &[]
    } else {
        &["--connected", "false"]
    };
    let mut child = Command::new(BIN)
        .arg("init")
        .args(connected)
        .args(args)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The process may refuse before reading anything: a closed pipe is part of that answer.
    let _ = child.stdin.take().unwrap().write_all(input);
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn config_check(file: &Path) -> (Option<i32>, String) {
    let c = Command::new(BIN)
        .args(["config", "check"])
        .arg(file)
        .output()
        .unwrap();
    (
        c.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&c.stdout),
            String::from_utf8_lossy(&c.stderr)
        ),
    )
}

#[test]
fn piped_init_writes_configs_that_config_check_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("conf");
    let state = tmp.path().join("state");
    // ThreatQ Host, Client ID, E-mail, Password, Rulesets, Include non-standard, standard status,
    // non-standard status, also fetch.yaml; then per ruleset an engine (ET Open on Suricata, ET Pro
    // on Snort), the ET Pro oinkcode, encrypt the signing key, its password.
    let (code, stdout, stderr) = run_init(
        &["--state", state.to_str().unwrap()],
        &out,
        b"tq.example.org\nclient-abc\nsoc@example.org\nhunter2 secret\net-open,et-pro,et-blockrules\n\
          yes\n\nreview\nyes\n\nsnort-2.9.0\n0123abcdef\n\nkey pass phrase\n",
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // Prompts come in the connector's order.
    let order = [
        "ThreatQ Host",
        "Client ID",
        "E-mail",
        "Password",
        "Rulesets",
        "Include Non-Standard Rules",
        "Engine for et-open",
        "Engine for et-pro",
        "ET Pro oinkcode",
    ];
    let pos: Vec<usize> = order
        .iter()
        .map(|p| {
            stderr
                .find(p)
                .unwrap_or_else(|| panic!("{p} not asked: {stderr}"))
        })
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{stderr}");
    assert!(!stderr.contains("Engine for et-blockrules"), "{stderr}");
    for secret in ["hunter2", "0123abcdef", "key pass phrase"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret}"
        );
    }

    for f in [
        "watch.yaml",
        "fetch.yaml",
        "threatq.pass",
        "oinkcode",
        "bundle.key",
        "bundle.key.pass",
    ] {
        assert_eq!(mode(&out.join(f)), 0o600, "{f}");
    }
    let watch = std::fs::read_to_string(out.join("watch.yaml")).unwrap();
    assert!(watch.contains("host: https://tq.example.org"), "{watch}");
    assert!(watch.contains("password_file: threatq.pass"));
    assert!(watch.contains("include_non_standard: true"));
    assert!(watch.contains("non_standard_status: Review"));
    assert!(watch.contains(&format!("inbox: {}/inbox", state.display())));
    assert!(!watch.contains("hunter2"));
    assert_eq!(
        std::fs::read_to_string(out.join("threatq.pass")).unwrap(),
        "hunter2 secret\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("oinkcode")).unwrap(),
        "0123abcdef\n"
    );
    let fetch = std::fs::read_to_string(out.join("fetch.yaml")).unwrap();
    for line in [
        "- ruleset: et-open\n    engine: suricata-7.0.3\n",
        "- ruleset: et-pro\n    engine: snort-2.9.0\n    oinkcode_file: oinkcode\n",
        "- ruleset: et-blockrules\n",
        "signing_key_password_file: bundle.key.pass\n",
    ] {
        assert!(fetch.contains(line), "{line:?} missing in\n{fetch}");
    }

    // Both configs pass as written: init made the key pair beside them.
    for f in ["watch.yaml", "fetch.yaml"] {
        let (code, text) = config_check(&out.join(f));
        assert_eq!(code, Some(0), "{f}: {text}");
        assert!(text.contains("OK"), "{text}");
    }
}

#[test]
fn out_is_checked_before_the_first_question() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("conf");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("watch.yaml"), "inbox: x\n").unwrap();
    let (code, stdout, stderr) = run_init(&[], &out, b"tq.example.org\n");
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(
        !stderr.contains("ThreatQ Host"),
        "asked before refusing: {stderr}"
    );
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let (code, _, stderr) = run_init(&[], &file, b"");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("ThreatQ Host"), "{stderr}");
}

#[test]
fn watch_only_init_asks_no_engine_and_fetch_only_asks_no_threatq_question() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("watch");
    let (code, stdout, stderr) = run_init(
        &["--role", "watch"],
        &out,
        b"tq.example.org\nc\ne@x.org\npw\net-open\n\n\n\n",
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("Engine"), "{stderr}");
    assert!(!out.join("fetch.yaml").exists());

    let out = tmp.path().join("dmz");
    let (code, stdout, stderr) = run_init(
        &["--role", "fetch", "--unencrypted-key"],
        &out,
        b"et-open,et-open-nogpl\nsuricata-5.0\nsnort-edge\n",
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("ThreatQ Host"), "{stderr}");
    assert!(!out.join("watch.yaml").exists());
    let fetch = std::fs::read_to_string(out.join("fetch.yaml")).unwrap();
    assert!(
        fetch.contains("- ruleset: et-open\n    engine: suricata-5.0\n"),
        "{fetch}"
    );
    assert!(
        fetch.contains("- ruleset: et-open-nogpl\n    engine: snort-edge\n"),
        "{fetch}"
    );
    assert!(!fetch.contains("signing_key_password_file"), "{fetch}");
    let (code, text) = config_check(&out.join("fetch.yaml"));
    assert_eq!(code, Some(0), "{text}");
}

/// On a terminal (a pty made by util-linux `script`) an empty or invalid answer asks again
/// instead of ending the session.
#[test]
fn on_a_terminal_empty_and_invalid_answers_ask_again() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").map_or(true, |v| v.is_empty()),
            "util-linux `script` is missing on CI"
        );
        eprintln!("SKIPPED: util-linux `script` is not installed (it makes the pty)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("conf");
    let cmd = format!(
        "{BIN} init --role watch --out {} --state {}",
        out.display(),
        tmp.path().join("state").display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Empty host, a host, empty client id, a client id, e-mail, password, bad ruleset, rulesets,
    // then the defaults.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\ntq.example.org\n\ncid-1\na@b.c\npw\net-closed\net-open\n\nsometimes\n\n\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert_eq!(text.matches("an answer is required").count(), 2, "{text}");
    assert!(text.contains("\"et-closed\" is not a ruleset"), "{text}");
    assert!(text.contains("\"sometimes\" is not a status"), "{text}");
    let watch = std::fs::read_to_string(out.join("watch.yaml")).unwrap();
    assert!(watch.contains("client_id: cid-1"), "{watch}");
    assert_eq!(
        std::fs::read_to_string(out.join("threatq.pass")).unwrap(),
        "pw\n"
    );
}

/// Run as root, init and keygen hand their files to the service user (`--owner`), so the
/// service can read them; CI runs as root.
#[test]
fn as_root_owner_gets_the_written_files() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let probe = tmp.path().join("probe");
    std::fs::write(&probe, "").unwrap();
    if std::fs::metadata(&probe).unwrap().uid() != 0 {
        eprintln!("SKIPPED: not running as root (CI does)");
        return;
    }
    let nobody = etferry::owner::lookup("nobody").expect("user nobody");
    let out = tmp.path().join("conf");
    let (code, stdout, stderr) = run_init(
        &[
            "--role",
            "watch",
            "--owner",
            "nobody",
            "--non-interactive",
            "--host",
            "tq.example.org",
            "--client-id",
            "c",
            "--email",
            "e@x.org",
            "--password-env",
            "TQ_PASS",
        ],
        &out,
        b"",
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("owner: nobody"), "{stdout}");
    assert_eq!(
        std::fs::metadata(out.join("watch.yaml")).unwrap().uid(),
        nobody.uid
    );
    let keys = tmp.path().join("keys");
    let k = Command::new(BIN)
        .args(["keygen", "--unencrypted", "--owner", "nobody", "--out"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
    for f in ["bundle.key", "bundle.pub"] {
        assert_eq!(
            std::fs::metadata(keys.join(f)).unwrap().uid(),
            nobody.uid,
            "{f}"
        );
    }
    let bad = Command::new(BIN)
        .args([
            "keygen",
            "--unencrypted",
            "--owner",
            "no-such-user-x",
            "--out",
        ])
        .arg(tmp.path().join("k2"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn keygen_password_file_without_a_file_needs_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["keygen", "--password-file", "--out"])
        .arg(tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not a terminal") && err.contains("--password-file"),
        "{err}"
    );
    assert!(!tmp.path().join("bundle.key").exists());

    // On a terminal it asks twice (a mismatch asks again) and keeps the password beside the key.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: util-linux `script` is not installed (it makes the pty)");
        return;
    }
    let cmd = format!(
        "{BIN} keygen --password-file --out {}",
        tmp.path().display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo\nsecret pw\nsecret pw\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("differ"), "{text}");
    let pass = tmp.path().join("bundle.key.pass");
    assert_eq!(std::fs::read_to_string(&pass).unwrap(), "secret pw\n");
    assert_eq!(mode(&pass), 0o600);
    let pw = etferry::secret::Secret::new("secret pw".to_string());
    assert!(etferry::bundle::SigningKey::load(&tmp.path().join("bundle.key"), Some(&pw)).is_ok());
    assert!(etferry::bundle::SigningKey::load(&tmp.path().join("bundle.key"), None).is_err());
}

#[test]
fn config_check_names_file_and_key_of_a_bad_value() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("conf");
    let o = Command::new(BIN)
        .args([
            "init",
            "--connected",
            "false",
            "--non-interactive",
            "--host",
            "https://tq.example.org",
            "--client-id",
            "x",
            "--email",
            "a@b.c",
            "--password-env",
            "TQ_PASS",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let watch = out.join("watch.yaml");
    let text = std::fs::read_to_string(&watch).unwrap();
    assert!(text.contains("password_env: TQ_PASS"));
    std::fs::write(
        &watch,
        text.replace("standard_status: Active", "standard_status: Sometimes"),
    )
    .unwrap();
    let c = Command::new(BIN)
        .args(["config", "check"])
        .arg(&watch)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&c.stderr);
    assert_eq!(c.status.code(), Some(2), "{err}");
    assert!(
        err.contains("watch.yaml") && err.contains("standard_status"),
        "{err}"
    );
}
