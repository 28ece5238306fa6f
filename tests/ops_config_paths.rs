//! Where configs are found and what `config check` loads: a relative `-c` is resolved once for
//! every command, the default `-c` is `$ETFERRY_CONFIG`, else `./config`, else `/etc/etferry`,
//! and `config check` fails on exactly what would stop `ingest`, `export` and `fetch`.

#[path = "fetch_support/mod.rs"]
mod fetch_support;
mod threatq_sim;

use std::path::Path;
use std::process::Output;

use threatq_sim::{Sim, CLIENT_ID, EMAIL, PASSWORD};

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `root/sq/watch.yaml` with paths relative to it, a ThreatQ sink at `host`, a trusted key.
fn air_gapped(root: &Path, host: &str) {
    let sq = root.join("sq");
    std::fs::create_dir_all(&sq).unwrap();
    etferry::bundle::keygen(&root.join("keys"), None).unwrap();
    std::fs::copy(root.join("keys/bundle.pub"), sq.join("bundle.pub")).unwrap();
    std::fs::write(sq.join("tq.pass"), format!("{PASSWORD}\n")).unwrap();
    set_mode(&sq.join("tq.pass"), 0o600);
    std::fs::write(
        sq.join("watch.yaml"),
        format!(
            "inbox: state/inbox\nwork: state/work\ndone: state/done\nfailed: state/failed\n\
             store: state/etferry.db\ntrusted_keys: [bundle.pub]\n\
             sinks:\n  threatq:\n    host: {host}\n    client_id: {CLIENT_ID}\n    email: {EMAIL}\n    \
             password_file: tq.pass\n    timeout: 2s\n    retry: {{attempts: 2, base: 10ms, max_delay: 50ms}}\n"
        ),
    )
    .unwrap();
    set_mode(&sq.join("watch.yaml"), 0o600);
}

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = fetch_support::command(args);
    c.current_dir(dir).env_remove("ETFERRY_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn a_relative_config_path_is_resolved_once_for_every_command() {
    let sim = Sim::start();
    let root = tempfile::tempdir().unwrap();
    air_gapped(root.path(), &sim.url);
    for args in [
        &["-c", "sq/watch.yaml", "export", "threatq"][..],
        &["-c", "sq/watch.yaml", "ingest"],
        &["-c", "sq", "status"],
        &["config", "check", "--online", "sq/watch.yaml"],
        &["-c", "sq/watch.yaml", "config", "check", "--online"],
    ] {
        let o = run_in(root.path(), args, &[]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {t}");
        assert!(!t.contains("sq/sq"), "{args:?}: {t}");
    }
    // The store landed beside the config, where watch.yaml says.
    assert!(root.path().join("sq/state/etferry.db").is_file());
}

#[test]
fn default_config_is_etferry_config_then_dot_config_then_etc_etferry() {
    let root = tempfile::tempdir().unwrap();
    air_gapped(root.path(), "https://tq.example.org");
    // Nothing given, no ./config: the production place. (This machine may have one: whatever
    // `config check` finds or misses, it names /etc/etferry.)
    let o = run_in(root.path(), &["config", "check"], &[]);
    assert!(text(&o).contains("/etc/etferry"), "{}", text(&o));
    if !Path::new("/etc/etferry/watch.yaml").exists() {
        let o = run_in(root.path(), &["status"], &[]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("/etc/etferry/watch.yaml"), "{}", text(&o));
    }
    // $ETFERRY_CONFIG wins.
    let o = run_in(root.path(), &["status"], &[("ETFERRY_CONFIG", "sq")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // keygen and init write into that directory by default.
    let o = run_in(
        root.path(),
        &["keygen", "--unencrypted"],
        &[("ETFERRY_CONFIG", "keys2")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(root.path().join("keys2/bundle.key").is_file());
    // ./config when it exists (a checkout, the demo).
    std::fs::rename(root.path().join("sq"), root.path().join("config")).unwrap();
    let o = run_in(root.path(), &["status"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// `config check` must fail, with exit 2, on what stops `ingest` / `export`, and `ingest` must
/// fail the same way: the check and the command use one loader.
#[test]
fn config_check_fails_where_ingest_and_export_fail() {
    let root = tempfile::tempdir().unwrap();
    air_gapped(root.path(), "https://tq.example.org");
    let sq = root.path().join("sq");
    type Change<'a> = Box<dyn Fn() + 'a>;
    let faults: Vec<(&str, Change, Change)> = vec![
        (
            "missing trusted key",
            Box::new(|| std::fs::remove_file(sq.join("bundle.pub")).unwrap()),
            Box::new(|| {
                std::fs::copy(root.path().join("keys/bundle.pub"), sq.join("bundle.pub")).unwrap();
            }),
        ),
        (
            "garbage trusted key",
            Box::new(|| std::fs::write(sq.join("bundle.pub"), "not a key\n").unwrap()),
            Box::new(|| {
                std::fs::copy(root.path().join("keys/bundle.pub"), sq.join("bundle.pub")).unwrap();
            }),
        ),
        (
            "password_file is a directory",
            Box::new(|| {
                std::fs::remove_file(sq.join("tq.pass")).unwrap();
                std::fs::create_dir(sq.join("tq.pass")).unwrap();
            }),
            Box::new(|| {
                std::fs::remove_dir(sq.join("tq.pass")).unwrap();
                std::fs::write(sq.join("tq.pass"), "x\n").unwrap();
                set_mode(&sq.join("tq.pass"), 0o600);
            }),
        ),
        (
            "password_file missing",
            Box::new(|| std::fs::remove_file(sq.join("tq.pass")).unwrap()),
            Box::new(|| {
                std::fs::write(sq.join("tq.pass"), "x\n").unwrap();
                set_mode(&sq.join("tq.pass"), 0o600);
            }),
        ),
    ];
    let ok = run_in(root.path(), &["config", "check", "sq/watch.yaml"], &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    for (what, breakit, fix) in faults {
        breakit();
        let check = run_in(root.path(), &["config", "check", "sq/watch.yaml"], &[]);
        let ingest = run_in(root.path(), &["-c", "sq/watch.yaml", "ingest"], &[]);
        assert_eq!(check.status.code(), Some(2), "{what}: {}", text(&check));
        assert_eq!(ingest.status.code(), Some(2), "{what}: {}", text(&ingest));
        fix();
    }
}

fn fetch_yaml(dir: &Path, extra: &str) -> std::path::PathBuf {
    let p = dir.join("fetch.yaml");
    std::fs::write(
        &p,
        format!(
            "spool: outbox\nstate: state\nsigning_key: bundle.key\n{extra}\
             sources:\n  - ruleset: et-open\n    engine: suricata-5.0\n    base_url: http://127.0.0.1:9/\n"
        ),
    )
    .unwrap();
    set_mode(&p, 0o600);
    p
}

#[test]
fn config_check_of_fetch_yaml_fails_where_fetch_fails() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // No key at all.
    let f = fetch_yaml(dir, "");
    let check = run_in(dir, &["config", "check", f.to_str().unwrap()], &[]);
    assert_eq!(check.status.code(), Some(2), "{}", text(&check));
    assert!(text(&check).contains("signing_key"), "{}", text(&check));
    let fetch = run_in(dir, &["-c", f.to_str().unwrap(), "fetch"], &[]);
    assert_eq!(fetch.status.code(), Some(2), "{}", text(&fetch));

    // An encrypted key without signing_key_password_file.
    std::fs::write(dir.join("pw"), "correct horse\n").unwrap();
    set_mode(&dir.join("pw"), 0o600);
    let k = run_in(dir, &["keygen", "--out", ".", "--password-file", "pw"], &[]);
    assert_eq!(k.status.code(), Some(0), "{}", text(&k));
    let check = run_in(dir, &["config", "check", f.to_str().unwrap()], &[]);
    assert_eq!(check.status.code(), Some(2), "{}", text(&check));
    assert!(
        text(&check).contains("signing_key_password_file"),
        "{}",
        text(&check)
    );
    // With the password file it passes.
    let f = fetch_yaml(dir, "signing_key_password_file: pw\n");
    let check = run_in(dir, &["config", "check", f.to_str().unwrap()], &[]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
}

#[test]
fn a_watch_yaml_given_to_fetch_is_named_as_such() {
    let root = tempfile::tempdir().unwrap();
    air_gapped(root.path(), "https://tq.example.org");
    let o = run_in(root.path(), &["-c", "sq/watch.yaml", "fetch"], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("this is a watch.yaml") && t.contains("needs a fetch.yaml"),
        "{t}"
    );
    assert!(!t.contains("unknown field"), "{t}");
    let f = fetch_yaml(root.path(), "");
    let o = run_in(root.path(), &["-c", f.to_str().unwrap(), "status"], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("this is a fetch.yaml"), "{t}");
}
