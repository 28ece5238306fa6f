//! `etferry demo` runs the whole pipeline offline on the bundled sample; a second run is unchanged.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_etferry");

fn demo(dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn status_json(dir: &std::path::Path) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("-c")
        .arg(dir.join("demo-config/watch.yaml"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn demo_stores_the_sample_then_reports_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, text) = demo(tmp.path());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("new bundle et-open-suricata-5.0-00000001"),
        "{text}"
    );
    // The sample's counts (tests/fixtures/README.md): 116 enabled + 140 disabled.
    let s = status_json(tmp.path());
    let src = &s["sources"][0];
    assert_eq!(src["name"], "et-open-suricata-5.0");
    assert_eq!(src["rules"], 256);
    assert_eq!(src["standard"], 116);
    assert_eq!(src["non_standard"], 140);

    let (code, text) = demo(tmp.path());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("unchanged; heartbeat"), "{text}");
    assert!(text.contains("(0 archive bytes)"), "{text}");
    assert!(text.contains("added 0, removed 0, modified 0"), "{text}");
    let s = status_json(tmp.path());
    assert_eq!(s["sources"][0]["rules"], 256);
    assert_eq!(s["sources"][0]["last_sequence"], 2);
}
