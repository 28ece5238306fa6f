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
        // .ci/run installs systemd; on CI a missing tool is a failure, not a skip.
        assert!(
            std::env::var("CI").map_or(true, |v| v.is_empty()),
            "systemd-analyze is missing on CI (.ci/run installs the systemd package)"
        );
        eprintln!(
            "SKIPPED: systemd-analyze is not installed on this machine (apt-get install systemd)"
        );
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
        std::fs::write(dir.path().join(unit), text.replace("/usr/bin/etferry", BIN)).unwrap();
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
fn units_are_hardened_and_systemd_creates_their_directories() {
    for (unit, config) in [
        ("etferry-watch.service", "/etc/etferry/watch.yaml"),
        ("etferry-fetch.service", "/etc/etferry/fetch.yaml"),
    ] {
        let text = std::fs::read_to_string(scripts().join(unit)).unwrap();
        for key in [
            "User=etferry",
            "StateDirectory=etferry",
            "LogsDirectory=etferry",
            "ConfigurationDirectory=etferry",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "--log-dir /var/log/etferry",
        ] {
            assert!(text.contains(key), "{unit}: missing {key}");
        }
        let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(exec.contains(&format!("-c {config}")), "{unit}: {exec}");
    }
    let text = std::fs::read_to_string(scripts().join("etferry-watch.service")).unwrap();
    assert!(text.contains("Restart=on-failure"));
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

/// Every path the shipped files name belongs to the one layout: config in /etc/etferry, state in
/// /var/lib/etferry, logs in /var/log/etferry.
#[test]
fn shipped_configs_units_crontab_and_carry_use_one_layout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let w = etferry::ingest::WatchConfig::load(&root.join("config/watch.yaml")).unwrap();
    for p in [&w.inbox, &w.work, &w.done, &w.failed, &w.store] {
        assert!(
            p.starts_with("/var/lib/etferry"),
            "watch.yaml: {}",
            p.display()
        );
    }
    let fetch = std::fs::read_to_string(root.join("config/fetch.yaml")).unwrap();
    assert!(fetch.contains("spool: /var/lib/etferry/outbox"), "{fetch}");
    assert!(
        fetch.contains("state: /var/lib/etferry/fetch-state"),
        "{fetch}"
    );
    let mut files = vec![
        "config/fetch.yaml",
        "config/watch.yaml",
        "scripts/etferry-watch.service",
        "scripts/etferry-fetch.service",
        "scripts/crontab.example",
        "scripts/carry.sh",
    ];
    if root.join("docs/deployment.md").exists() {
        files.push("docs/deployment.md");
    }
    for f in files {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        for old in [
            "../spool",
            "spool/inbox",
            "MOUNT/etferry/",
            "/var/lib/etferry/spool",
        ] {
            assert!(!text.contains(old), "{f} still names {old}");
        }
    }
    let cron = std::fs::read_to_string(scripts().join("crontab.example")).unwrap();
    let ingest = cron.lines().find(|l| l.contains(" ingest")).unwrap();
    // The cron form: no glob that fails on an empty inbox.
    assert!(!ingest.contains("inbox/*"), "{ingest}");
    assert!(ingest.contains("-c /etc/etferry/watch.yaml"), "{ingest}");
}

#[test]
fn help_groups_commands_by_host_and_shows_the_workflow() {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(o.stdout).unwrap();
    for (cmd, host) in [
        ("fetch", "DMZ:"),
        ("keygen", "DMZ:"),
        ("watch", "Air-gapped:"),
        ("ingest", "Air-gapped:"),
        ("report", "Air-gapped:"),
        ("init", "Both:"),
        ("verify", "Both:"),
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap_or_else(|| panic!("{cmd} missing in\n{help}"));
        assert!(line.contains(host), "{line}");
    }
    assert!(
        help.contains("Workflow") && help.contains("scripts/carry.sh"),
        "{help}"
    );
}
