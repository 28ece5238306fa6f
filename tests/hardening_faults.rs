//! Faults that are not the bundle's fault (issue 16, findings 6 and 7): a full disk under the
//! store is exit 1 and the bundle is retried, and work/, done/, failed/ and the inbox may sit on
//! different file systems. Both need a second file system: the test mounts a tmpfs (it runs as
//! root here and in CI).

mod ingest_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use ingest_support::*;

/// A tmpfs mounted at a directory for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `4m`) at `dir`; `None` (with a visible message) when this
    /// machine cannot mount, which fails instead under CI.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Some(Tmpfs(dir.to_path_buf()));
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must be able to mount a tmpfs"
        );
        eprintln!(
            "SKIPPED: cannot mount a tmpfs at {} (not root?)",
            dir.display()
        );
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn rules_file(sid: u32, n: u32) -> Vec<(String, Vec<u8>)> {
    vec![("emerging-test.rules".to_string(), small_rules(sid, n))]
}

fn journal(store: &Path, id: &str) -> Option<(String, String, Option<String>)> {
    let c = rusqlite::Connection::open(store).ok()?;
    c.query_row(
        "SELECT stage, status, reason FROM bundles WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

#[test]
fn full_disk_under_the_store_is_exit_1_and_the_bundle_is_stored_after_the_fix() {
    let env = Env::with_config("");
    // The store lives on a small file system of its own.
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("store: ../spool/etferry.db", "store: ../db/etferry.db");
    std::fs::write(&env.config, text).unwrap();
    let Some(_fs) = Tmpfs::mount(&env.path("db"), "24m") else {
        return;
    };
    let store = env.path("db/etferry.db");
    // A first small bundle creates the store; then the disk fills up.
    let b1 = env.bundle("et-open", 1, &rules_file(2_000_000, 5));
    assert_eq!(env.ingest(&b1).code, Some(0));
    // Fill it, then free a little: the journal's small writes fit, the bundle does not.
    let filler = env.path("db/filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[7u8; 16 << 10]).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(192 << 10)).unwrap();
    }

    let big = env.bundle("et-open", 2, &rules_file(2_000_000, 6000));
    let inbox_copy = env.inbox().join("et-open-00000002");
    copy_dir(&big, &inbox_copy);
    let o = env.ingest(&inbox_copy);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(!o.stdout.contains("REJECTED"), "{o:?}");
    // The good bundle stays where it can be retried, and nothing went to failed/.
    assert!(inbox_copy.join("manifest.json").is_file());
    assert!(!env.path("spool/failed/et-open-00000002").exists());
    assert_eq!(env.source_status("et-open")["last_sequence"], 1);

    std::fs::remove_file(&filler).unwrap();
    if let Some((_, status, _)) = journal(&store, "et-open-00000002") {
        assert_eq!(status, "failed", "a retryable failure, not a rejection");
    }
    let o = env.ingest(&inbox_copy);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("et-open")["rules"], 6000);
    assert_eq!(
        journal(&store, "et-open-00000002").unwrap().1,
        "done".to_string()
    );
}

#[test]
fn work_done_and_failed_on_another_file_system_still_work() {
    let env = Env::with_config("accept_unsigned_archives: true\narchive_sources:\n  - match: \"hand-*\"\n    ruleset: et-open\n    name: hand\n");
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("work: ../spool/work", "work: ../other/work");
    std::fs::write(&env.config, text).unwrap();
    let Some(_fs) = Tmpfs::mount(&env.path("other"), "64m") else {
        return;
    };
    // Signed bundles: stored and moved from work/ (tmpfs) to done/ (the temp dir's disk).
    for seq in 1..=2 {
        let b = env.bundle("et-open", seq, &rules_file(2_000_000, 5 + seq as u32));
        let inbox_copy = env.inbox().join(format!("et-open-{seq:08}"));
        copy_dir(&b, &inbox_copy);
        let o = env.ingest(&inbox_copy);
        assert_eq!(o.code, Some(0), "seq {seq}: {o:?}");
        assert!(env
            .path(&format!("spool/done/et-open-{seq:08}/manifest.json"))
            .is_file());
        assert!(!inbox_copy.exists());
    }
    assert_eq!(env.source_status("et-open")["rules"], 7);
    // A rejected bundle moves from work/ to failed/ across the devices too.
    let bad = env.bundle("et-open", 3, &rules_file(2_000_000, 5));
    std::fs::write(bad.join("emerging-test.rules"), b"changed").unwrap();
    let inbox_copy = env.inbox().join("et-open-00000003");
    copy_dir(&bad, &inbox_copy);
    let o = env.ingest(&inbox_copy);
    assert_eq!(o.code, Some(4), "{o:?}");
    assert!(env
        .path("spool/failed/et-open-00000003/manifest.json")
        .is_file());
    // A bare archive.
    let a = env.inbox().join("hand-1.rules");
    std::fs::write(&a, small_rules(3_000_000, 4)).unwrap();
    let o = env.run(&["ingest", a.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(env.source_status("hand")["rules"], 4);
    // Nothing is left behind in work/.
    let left: Vec<_> = std::fs::read_dir(env.path("other/work"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
