//! `etferry init` driven by piped answers writes configs that `config check` accepts, with 0600
//! modes and the password in its own file.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_etferry");

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn piped_init_writes_configs_that_config_check_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("conf");
    let mut child = Command::new(BIN)
        .args(["init", "--out"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Reaches the internet (no: air-gapped), ThreatQ Host, Client ID, E-mail, Password,
    // Rulesets, Engine, Include non-standard, standard status, non-standard status, also fetch.yaml.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"no\ntq.example.org\nclient-abc\nsoc@example.org\nhunter2 secret\net-open,et-blockrules\n\nyes\n\nreview\nyes\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}{stderr}");
    // Prompts come in the connector's order.
    let order = [
        "ThreatQ Host",
        "Client ID",
        "E-mail",
        "Password",
        "Rulesets",
    ];
    let pos: Vec<usize> = order.iter().map(|p| stderr.find(p).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{stderr}");
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));

    for f in ["watch.yaml", "fetch.yaml", "threatq.pass"] {
        assert_eq!(mode(&out.join(f)), 0o600, "{f}");
    }
    let watch = std::fs::read_to_string(out.join("watch.yaml")).unwrap();
    assert!(watch.contains("host: https://tq.example.org"), "{watch}");
    assert!(watch.contains("password_file: threatq.pass"));
    assert!(watch.contains("include_non_standard: true"));
    assert!(watch.contains("non_standard_status: Review"));
    assert!(!watch.contains("hunter2"));
    assert_eq!(
        std::fs::read_to_string(out.join("threatq.pass")).unwrap(),
        "hunter2 secret\n"
    );

    // The watch side trusts the DMZ key: create one as an operator would, beside the configs.
    let keys = tmp.path().join("keys");
    let k = Command::new(BIN)
        .args(["keygen", "--unencrypted", "--out"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
    std::fs::copy(keys.join("bundle.pub"), out.join("bundle.pub")).unwrap();
    std::fs::copy(keys.join("bundle.key"), out.join("bundle.key")).unwrap();
    std::fs::set_permissions(
        out.join("bundle.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    for f in ["watch.yaml", "fetch.yaml"] {
        let c = Command::new(BIN)
            .args(["config", "check"])
            .arg(out.join(f))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&c.stdout),
            String::from_utf8_lossy(&c.stderr)
        );
        assert!(c.status.success(), "{f}: {text}");
        assert!(text.contains("OK"), "{text}");
    }
}

#[test]
fn config_check_names_file_and_key_of_a_bad_value() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("conf");
    let o = Command::new(BIN)
        .args([
            "init",
            "--non-interactive",
            "--connected",
            "false",
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
