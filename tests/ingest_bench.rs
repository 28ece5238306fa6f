//! Helper for `scripts/bench-ingest.sh` (ignored in normal runs): publishes a signed bundle
//! holding one archive, so the benchmark times `etferry ingest` on a real signed bundle.
//! Env: BENCH_KEYS (dir; a key pair is made there if missing), BENCH_OUT (spool), BENCH_ARCHIVE,
//! BENCH_SEQ.

use std::path::PathBuf;

use chrono::Utc;
use etferry::bundle::{self, Manifest, SigningKey, SourceInfo};

#[test]
#[ignore = "run by scripts/bench-ingest.sh"]
fn make_bench_bundle() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let keys = PathBuf::from(var("BENCH_KEYS"));
    if !keys.join("bundle.key").exists() {
        bundle::keygen(&keys, None).unwrap();
    }
    let key = SigningKey::load(&keys.join("bundle.key"), None).unwrap();
    let archive = std::fs::read(var("BENCH_ARCHIVE")).unwrap();
    let seq: u64 = var("BENCH_SEQ").parse().unwrap();
    let m = Manifest::new(
        SourceInfo {
            name: "et-open-suricata-5.0".into(),
            ruleset: "et-open".into(),
            engine: Some("suricata-5.0".into()),
            url: "https://rules.emergingthreats.net/open/suricata-5.0/emerging.rules.tar.gz".into(),
        },
        seq,
        Utc::now(),
        std::time::Duration::from_secs(14 * 86400),
    );
    let dir = bundle::publish(
        &PathBuf::from(var("BENCH_OUT")),
        m,
        &[("emerging.rules.tar.gz".to_string(), archive)],
        &key,
    )
    .unwrap();
    println!("BUNDLE {}", dir.display());
}
