//! Unit tests of the pure parts: retry policy, dates, host check.

use std::time::Duration;

use super::config::{RetryConfig, ThreatQConfig};
use super::mapping::published_at;
use super::retry::{backoff, classify, Verdict};
use crate::config::Dur;
use crate::sinks::ExportItem;

fn item() -> ExportItem {
    ExportItem {
        source: "et-open-suricata-5.0".into(),
        ruleset: "et-open".into(),
        engine: Some("suricata-5.0".into()),
        gid: 1,
        sid: 2000001,
        rev: 2,
        msg: "ET INFO Test".into(),
        text: "alert ip any any -> any any (msg:\"ET INFO Test\"; sid:2000001; rev:2;)".into(),
        enabled: true,
        removed: false,
        status: "Active".into(),
        classtype: None,
        file: "rules/emerging-info.rules".into(),
        references: vec![],
        metadata: vec![],
        previous_rev: None,
        previous_text: None,
    }
}

#[test]
fn retry_policy_table() {
    let table: Vec<(u16, Verdict)> = [
        200, 201, 204, 400, 401, 403, 404, 408, 413, 422, 429, 500, 501, 502, 503, 504,
    ]
    .iter()
    .map(|&c| (c, classify(c)))
    .collect();
    use Verdict::*;
    assert_eq!(
        table,
        vec![
            (200, Done),
            (201, Done),
            (204, Done),
            (400, Fail),
            (401, Reauth),
            (403, Fail),
            (404, Fail),
            (408, Retry),
            (413, Fail),
            (422, Fail),
            (429, Retry),
            (500, Retry),
            (501, Fail),
            (502, Retry),
            (503, Retry),
            (504, Retry),
        ]
    );
}

#[test]
fn retry_after_caps_at_max_delay() {
    let r = RetryConfig {
        attempts: 3,
        base: Dur(Duration::from_millis(10)),
        max_delay: Dur(Duration::from_secs(2)),
        ..RetryConfig::default()
    };
    assert_eq!(
        backoff(&r, 1, Some(Duration::from_secs(1))),
        Duration::from_secs(1)
    );
    assert_eq!(
        backoff(&r, 1, Some(Duration::from_secs(600))),
        Duration::from_secs(2)
    );
    let d = backoff(&r, 3, None);
    assert!(
        d >= Duration::from_millis(20) && d <= Duration::from_millis(40),
        "{d:?}"
    );
}

#[test]
fn published_at_prefers_updated_at() {
    let mut it = item();
    it.metadata = vec![
        ("created_at".into(), "2010_07_30".into()),
        ("updated_at".into(), "2024_04_19".into()),
    ];
    assert_eq!(published_at(&it).as_deref(), Some("2024-04-19 00:00:00"));
    it.metadata.truncate(1);
    assert_eq!(published_at(&it).as_deref(), Some("2010-07-30 00:00:00"));
    it.metadata = vec![("updated_at".into(), "soon".into())];
    assert_eq!(published_at(&it), None);
}

#[test]
fn http_is_refused_except_for_localhost() {
    let base: ThreatQConfig = serde_yaml::from_str(
        "host: http://threatq.example.org\nclient_id: x\nemail: a@b\npassword_env: P\n",
    )
    .unwrap();
    let e = base.validate().unwrap_err().to_string();
    assert!(e.contains("only https://"), "{e}");
    let mut ok = base.clone();
    ok.host = "http://127.0.0.1:8080".into();
    assert!(ok.validate().is_ok());
    ok.host = "https://threatq.example.org".into();
    assert!(ok.validate().is_ok());
}
