//! `etferry ingest` on folders: the folder `carry.sh` fills and the inbox are processed entry by
//! entry, a path that is no bundle, archive or folder of them is refused with exit 2 and nothing
//! moves, and `ingest` with no path processes the configured inbox once (the cron form).

mod ingest_support;

use ingest_support::*;

fn dns() -> Vec<(String, Vec<u8>)> {
    vec![(
        "emerging-dns.rules".to_string(),
        read("et-open-suricata-5.0-2024-04-21/rules/emerging-dns.rules"),
    )]
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn folder_filled_by_carry_is_ingested_bundle_by_bundle_and_never_moved_to_failed() {
    let env = Env::new();
    // A medium after three trips: bundles 1..3 of one source and 1 of another.
    let usb = env.path("usb/etferry");
    for seq in 1..=3 {
        let b = env.bundle("et-open", seq, &dns());
        copy_dir(&b, &usb.join(format!("et-open-{seq:08}")));
    }
    let other = env.bundle_in(
        &env.path("spool/outbox"),
        "et-blockrules",
        "et-blockrules",
        1,
        &[(
            "emerging-dshield.rules".to_string(),
            small_rules(2_402_000, 5),
        )],
    );
    copy_dir(&other, &usb.join("et-blockrules-00000001"));

    let o = env.ingest(&usb);
    assert_eq!(o.code, Some(0), "{o:?}");
    for id in [
        "et-open-00000001",
        "et-open-00000002",
        "et-open-00000003",
        "et-blockrules-00000001",
    ] {
        assert!(env.path("spool/done").join(id).is_dir(), "{id}: {o:?}");
    }
    assert_eq!(env.source_status("et-open")["last_sequence"], 3, "{o:?}");
    assert!(
        !env.path("spool/failed").exists(),
        "{:?}",
        names(&env.path("spool/failed"))
    );
    // A folder outside the inbox is left as it was: the courier's copies are not ours to delete.
    assert_eq!(names(&usb).len(), 4);

    // The next trip brings one new bundle beside the old ones: the old ones are "already done".
    let b = env.bundle("et-open", 4, &dns());
    copy_dir(&b, &usb.join("et-open-00000004"));
    let o = env.ingest(&usb);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(env.path("spool/done/et-open-00000004").is_dir(), "{o:?}");
    assert!(!env.path("spool/failed").exists(), "{o:?}");
}

#[test]
fn the_inbox_itself_given_as_a_path_is_emptied_not_moved() {
    let env = Env::new();
    for seq in 1..=2 {
        let b = env.bundle("et-open", seq, &dns());
        copy_dir(&b, &env.inbox().join(format!("et-open-{seq:08}")));
    }
    let o = env.ingest(&env.inbox());
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(env.inbox().is_dir(), "the inbox itself was moved: {o:?}");
    assert!(names(&env.inbox()).is_empty(), "{:?}", names(&env.inbox()));
    assert_eq!(
        names(&env.path("spool/done")),
        ["et-open-00000001", "et-open-00000002"]
    );
    assert!(!env.path("spool/failed").exists());
}

#[test]
fn a_path_that_is_no_bundle_archive_or_folder_of_them_is_refused_with_exit_2_and_stays() {
    let env = Env::new();
    // A folder of unrelated files, a bundle still being copied (no manifest yet), a text file.
    let notes = env.path("usb/notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("README.txt"), "hello").unwrap();
    let half = env.inbox().join("et-open-00000001");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("emerging-dns.rules"), &dns()[0].1).unwrap();
    let text = env.path("usb/notes/README.txt");
    // A good bundle named alongside: refused paths stop the run before anything is processed.
    let good = env.bundle("et-open", 1, &dns());
    for p in [&notes, &half, &text] {
        let o = env.run(&["ingest", good.to_str().unwrap(), p.to_str().unwrap()]);
        assert_eq!(o.code, Some(2), "{}: {o:?}", p.display());
        assert!(o.stderr.contains("nothing was moved"), "{o:?}");
        assert!(p.exists(), "{} moved", p.display());
    }
    assert!(half.join("emerging-dns.rules").is_file());
    assert!(
        !env.path("spool/failed").exists(),
        "{:?}",
        names(&env.path("spool/failed"))
    );
    assert!(
        !env.path("spool/done").exists(),
        "processed before the refusal"
    );
}

#[test]
fn ingest_without_a_path_processes_the_inbox_once_and_says_nothing_to_do_when_empty() {
    let env = Env::new();
    let o = env.run(&["ingest"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("nothing to do"), "{o:?}");

    let b = env.bundle("et-open", 1, &dns());
    copy_dir(&b, &env.inbox().join("et-open-00000001"));
    // A copy in progress (hidden name) is left for the next run.
    copy_dir(&b, &env.inbox().join(".carry-et-open-00000002"));
    let o = env.run(&["ingest"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(env.path("spool/done/et-open-00000001").is_dir(), "{o:?}");
    assert_eq!(names(&env.inbox()), [".carry-et-open-00000002"]);

    // A bundle still arriving without a hidden name (no manifest yet) does not fail the cron run.
    let half = env.inbox().join("et-open-00000003");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("emerging-dns.rules"), &dns()[0].1).unwrap();
    let o = env.run(&["ingest"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stderr.contains("left 1 entry"), "{o:?}");
    assert!(half.join("emerging-dns.rules").is_file());
    assert!(!env.path("spool/failed").exists());

    // The medium's folder copied into the inbox as it is: its bundles are taken, the folder goes.
    let b = env.bundle("et-open", 4, &dns());
    copy_dir(&b, &env.inbox().join("etferry/et-open-00000004"));
    let o = env.run(&["ingest"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(env.path("spool/done/et-open-00000004").is_dir(), "{o:?}");
    assert!(!env.inbox().join("etferry").exists(), "{o:?}");
}

#[test]
fn watch_takes_the_bundles_of_a_folder_dropped_into_the_inbox() {
    let env = Env::new();
    // The medium's whole etferry/ folder copied into the inbox (under a hidden name, then renamed).
    let staged = env.inbox().join(".etferry");
    for seq in 1..=2 {
        let b = env.bundle("et-open", seq, &dns());
        copy_dir(&b, &staged.join(format!("et-open-{seq:08}")));
    }
    std::fs::rename(&staged, env.inbox().join("etferry")).unwrap();
    let w = Watch::start(&env, &[]);
    assert!(
        wait_for(30, || env.path("spool/done/et-open-00000002").is_dir()),
        "not taken"
    );
    assert!(
        wait_for(10, || !env.inbox().join("etferry").exists()),
        "folder left"
    );
    let o = w.terminate();
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(env.path("spool/done/et-open-00000001").is_dir(), "{o:?}");
    assert!(!env.path("spool/failed").exists(), "{o:?}");
    assert_eq!(env.source_status("et-open")["last_sequence"], 2);
}
