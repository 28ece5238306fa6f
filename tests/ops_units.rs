//! Operator files in `scripts/`: the systemd units pass `systemd-analyze verify`, and the
//! completions / man page come from the real CLI.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_etferry");

fn scripts() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"))
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: systemd-analyze is not installed on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for unit in [
        "etferry-watch.service",
        "etferry-fetch.service",
        "etferry-fetch.timer",
        "etferry-sync.service",
        "etferry-sync.timer",
    ] {
        // Point ExecStart at the binary just built, so the check covers the command line too.
        let text = std::fs::read_to_string(scripts().join(unit)).unwrap();
        std::fs::write(
            dir.path().join(unit),
            text.replace("/usr/local/bin/etferry", BIN),
        )
        .unwrap();
    }
    for unit in [
        "etferry-watch.service",
        "etferry-fetch.service",
        "etferry-fetch.timer",
        "etferry-sync.service",
        "etferry-sync.timer",
    ] {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join(unit))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Lines about the host's own units are not ours; only complain about lines naming ours.
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("etferry")).collect();
        assert!(out.status.success() && ours.is_empty(), "{unit}: {stderr}");
    }
}

#[test]
fn watch_unit_is_hardened() {
    let text = std::fs::read_to_string(scripts().join("etferry-watch.service")).unwrap();
    for key in [
        "User=etferry",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ReadWritePaths=/var/lib/etferry",
        "Restart=on-failure",
    ] {
        assert!(text.contains(key), "missing {key}");
    }
    let timer = std::fs::read_to_string(scripts().join("etferry-fetch.timer")).unwrap();
    assert!(timer.contains("OnCalendar=00/4:00") && timer.contains("RandomizedDelaySec="));
}

#[test]
fn sync_unit_is_hardened_and_its_timer_runs_every_4_hours() {
    let text = std::fs::read_to_string(scripts().join("etferry-sync.service")).unwrap();
    for key in [
        "User=etferry",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=etferry",
        "LogsDirectory=etferry",
        "ConfigurationDirectory=etferry",
        "SuccessExitStatus=75",
        "sync -c /etc/etferry/etferry.yaml",
    ] {
        assert!(text.contains(key), "missing {key}");
    }
    let timer = std::fs::read_to_string(scripts().join("etferry-sync.timer")).unwrap();
    assert!(timer.contains("OnCalendar=00/4:00") && timer.contains("RandomizedDelaySec="));
    assert!(timer.contains("Unit=etferry-sync.service"));
    // The cron line is the original's with only the program name changed.
    let cron = std::fs::read_to_string(scripts().join("crontab.example")).unwrap();
    assert!(cron.contains("etferry sync -c /etc/etferry/ -ll /var/log/etferry/ -v 3"));
}

#[test]
fn completions_and_man_page_cover_every_subcommand() {
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let bash = String::from_utf8(out.stdout).unwrap();
    let man = Command::new(BIN).arg("man").output().unwrap();
    assert!(man.status.success());
    let man = String::from_utf8(man.stdout).unwrap();
    for sub in [
        "sync", "fetch", "verify", "watch", "ingest", "status", "report", "rules", "keygen",
    ] {
        assert!(bash.contains(sub), "completions lack {sub}");
        assert!(man.contains(sub), "man page lacks {sub}");
    }
    let bad = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "unknown shell is a usage error");
}
