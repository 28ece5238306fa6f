//! Faults that are not the bundle's fault (issue 16, findings 6 and 7): a full disk under the
//! store is exit 1 and the bundle is retried, and work/, done/, failed/ and the inbox may sit on
//! different file systems. Both need a second file system: the tests mount a tmpfs (they run as
//! root here and in CI); the cross-device test falls back to `/dev/shm` when that is another
//! device, and each says SKIPPED when neither is possible.

mod ingest_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use ingest_support::*;

/// A second file system for the life of the value: a tmpfs mounted at a directory, or a
/// directory in `/dev/shm` when that is another device and mounting is not allowed.
struct OtherFs {
    dir: PathBuf,
    mounted: bool,
}

impl OtherFs {
    /// Mount a tmpfs of `size` (e.g. `24m`) at `dir`; `None` (with a visible message) when this
    /// machine cannot mount (not root, or a container without the capability).
    fn mount(dir: &Path, size: &str) -> Option<OtherFs> {
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
            return Some(OtherFs {
                dir: dir.to_path_buf(),
                mounted: true,
            });
        }
        eprintln!(
            "SKIPPED: cannot mount a tmpfs at {} (not root, or no CAP_SYS_ADMIN)",
            dir.display()
        );
        None
    }

    /// A tmpfs at `dir`, else a fresh directory in `/dev/shm` when that is on another device
    /// than `dir`'s parent (the caller points the config at [`OtherFs::path`]).
    fn any(dir: &Path) -> Option<OtherFs> {
        if let Some(m) = OtherFs::mount(dir, "64m") {
            return Some(m);
        }
        use std::os::unix::fs::MetadataExt;
        let here = std::fs::metadata(dir.parent()?).ok()?.dev();
        let shm = Path::new("/dev/shm");
        if std::fs::metadata(shm).is_ok_and(|m| m.dev() != here) {
            let d = shm.join(format!("etferry-test-{}", std::process::id()));
            std::fs::create_dir_all(&d).ok()?;
            eprintln!("using {} as the other file system", d.display());
            return Some(OtherFs {
                dir: d,
                mounted: false,
            });
        }
        eprintln!("SKIPPED: neither a tmpfs mount nor /dev/shm on another device is available");
        None
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for OtherFs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
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
    // A full disk needs a small file system of its own: only a tmpfs mount gives one.
    let Some(_fs) = OtherFs::mount(&env.path("db"), "24m") else {
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
    let Some(other) = OtherFs::any(&env.path("other")) else {
        return;
    };
    let work = other.path().join("work");
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("work: ../spool/work", &format!("work: {}", work.display()));
    std::fs::write(&env.config, text).unwrap();
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
    let left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
