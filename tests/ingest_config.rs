//! watch.yaml: the shipped example loads; mistakes are errors naming the file and the key.

mod ingest_support;

use std::path::Path;

use etferry::ingest::WatchConfig;
use ingest_support::*;

#[test]
fn shipped_example_watch_yaml_loads_with_the_production_layout() {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/watch.yaml"));
    let c = WatchConfig::load(p).unwrap();
    assert_eq!(c.inbox, Path::new("/var/lib/etferry/inbox"));
    assert_eq!(c.store, Path::new("/var/lib/etferry/etferry.db"));
    assert_eq!(c.trusted_keys, [Path::new("/etc/etferry/bundle.pub")]);
    assert_eq!(c.sanity.max_drop_percent, 20.0);
    assert_eq!(c.limits.max_member_size.0, 64 << 20);
    assert_eq!(c.removed_status.0, "Expired");
    assert!(c.sinks.names().is_empty());
}

#[test]
fn config_mistakes_name_the_key_and_exit_2() {
    for (extra, words) in [
        (
            "standard_status: Enabled\n",
            &["standard_status", "Whitelisted"][..],
        ),
        ("sanity:\n  max_drop: 5\n", &["sanity", "max_drop"][..]),
        ("rulesets: [et-foo]\n", &["rulesets", "et-foo"][..]),
        ("debounce: soon\n", &["debounce", "soon"][..]),
    ] {
        let env = Env::with_config(extra);
        let o = env.run(&["status"]);
        assert_eq!(o.code, Some(2), "{extra}: {o:?}");
        for w in words {
            assert!(o.stderr.contains(w), "{extra}: {w} missing in {}", o.stderr);
        }
        assert!(o.stderr.contains("watch.yaml"), "{o:?}");
    }
}
