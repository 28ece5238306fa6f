//! `etferry watch` as a real child process: takes bundles from the inbox on an event or on the
//! periodic rescan, waits for partial copies, and exits 0 on SIGTERM.

mod ingest_support;

use ingest_support::*;

fn files() -> Vec<(String, Vec<u8>)> {
    vec![(
        "emerging-info.rules".to_string(),
        read("et-open-suricata-5.0-2024-04-21/rules/emerging-info.rules"),
    )]
}

fn info_rule_count() -> u64 {
    let text = String::from_utf8(read(
        "et-open-suricata-5.0-2024-04-21/rules/emerging-info.rules",
    ))
    .unwrap();
    text.lines()
        .filter(|l| {
            let b = l.trim_start_matches(['#', ' ']);
            b.starts_with("alert ") && b.contains("sid:")
        })
        .count() as u64
}

#[test]
fn watch_takes_a_bundle_dropped_into_the_inbox() {
    // A long rescan interval: only the filesystem event can find the bundle in time.
    let env = Env::with_config("rescan_interval: 1h\n");
    let w = Watch::start(&env, &[]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let b = env.bundle("et-open", 1, &files());
    copy_dir(&b, &env.inbox().join("et-open-00000001"));
    assert!(
        wait_for(20, || env
            .path("spool/done/et-open-00000001/manifest.json")
            .exists()),
        "not taken"
    );
    let o = w.terminate();
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("et-open-00000001"), "{o:?}");
    assert!(
        !env.inbox().join("et-open-00000001").exists(),
        "left in the inbox"
    );
    assert_eq!(env.source_status("et-open")["rules"], info_rule_count());
}

#[test]
fn bundle_arriving_without_a_filesystem_event_is_found_by_the_rescan() {
    let env = Env::with_config("rescan_interval: 300ms\n");
    let w = Watch::start(&env, &[("ETFERRY_TEST_NO_NOTIFY", "1")]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let b = env.bundle("et-open", 1, &files());
    copy_dir(&b, &env.inbox().join("et-open-00000001"));
    assert!(
        wait_for(20, || env.path("spool/done/et-open-00000001").exists()),
        "not found by the rescan"
    );
    let o = w.terminate();
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("et-open")["rules"], info_rule_count());
}

#[test]
fn partially_copied_bundle_is_not_taken_until_complete() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &files());
    let dest = env.inbox().join("et-open-00000001");
    copy_dir(&b, &dest);
    // The courier is still writing the payload: half of it is there.
    let full = std::fs::read(b.join("emerging-info.rules")).unwrap();
    std::fs::write(dest.join("emerging-info.rules"), &full[..full.len() / 2]).unwrap();
    let w = Watch::start(&env, &[]);
    // Several rescans (200 ms) and debounce periods (300 ms) pass.
    std::thread::sleep(std::time::Duration::from_millis(2000));
    assert!(dest.exists());
    assert!(!env.path("spool/done/et-open-00000001").exists());
    assert!(!env.path("spool/failed/et-open-00000001").exists());
    assert_eq!(env.status()["sources"].as_array().unwrap().len(), 0);
    std::fs::write(dest.join("emerging-info.rules"), &full).unwrap();
    assert!(
        wait_for(20, || env.path("spool/done/et-open-00000001").exists()),
        "complete bundle not taken"
    );
    let o = w.terminate();
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("et-open")["rules"], info_rule_count());
    assert!(!env.path("spool/failed/et-open-00000001").exists());
}

#[test]
fn garbage_bundle_in_the_inbox_is_rejected_not_left_lingering() {
    let env = Env::new();
    let dest = env.inbox().join("et-open-00000007");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("manifest.json"), b"{ not json").unwrap();
    std::fs::write(dest.join("manifest.json.minisig"), b"junk").unwrap();
    let w = Watch::start(&env, &[]);
    assert!(
        wait_for(20, || env
            .path("spool/failed/et-open-00000007.reason.txt")
            .exists()),
        "not rejected"
    );
    let o = w.terminate();
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(!dest.exists());
    assert_eq!(env.status()["sources"].as_array().unwrap().len(), 0);
}
