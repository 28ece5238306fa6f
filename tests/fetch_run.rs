//! `etferry fetch` end to end against a local ET-like server built from the real corpus.

mod fetch_support;

use fetch_support::*;

fn suricata_only(srv: &Server) -> String {
    format!(
        "  - ruleset: et-open\n    engine: suricata-5.0\n    base_url: {}\n",
        srv.base
    )
}

fn no_tmp_left(site: &Site) {
    let tmp: Vec<_> = site
        .bundles()
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(tmp.is_empty(), "partial bundle left in the spool: {tmp:?}");
}

/// The new upstream content for fault cases: a real, smaller Suricata archive with a new serial.
fn upstream_changes(srv: &Server) -> Vec<u8> {
    let a = small_archive(3);
    srv.put_archive(SURI, a.clone());
    srv.put("/open/suricata-5.0/version.txt", b"7167\n".to_vec());
    a
}

/// A first good run, then `fault`; the second run must fail cleanly and keep the first bundle.
fn fault_case(fault: impl Fn(&Server, &Site), expect: &[&str]) -> (Server, Site, Run) {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    let first = site.fetch();
    assert_eq!(first.code(), 0, "{}", first.all());
    let before = site.spool_snapshot();
    fault(&srv, &site);
    let run = site.fetch();
    // What the user sees (shown with --nocapture).
    eprintln!("---- fault output:\n{}", run.all());
    assert_eq!(run.code(), 1, "{}", run.all());
    for e in expect {
        assert!(run.all().contains(e), "expected {e:?} in:\n{}", run.all());
    }
    assert!(run.stdout().contains("FAILED"), "{}", run.stdout());
    assert_eq!(site.spool_snapshot(), before, "earlier bundles changed");
    no_tmp_left(&site);
    let rep = site.last_report();
    assert_eq!(rep["sources"][0]["status"], "failed");
    (srv, site, run)
}

#[test]
fn first_run_publishes_then_unchanged_run_downloads_no_archive_then_change_gives_next_sequence() {
    let srv = Server::start();
    let site = Site::new();
    site.standard(&srv);

    let r1 = site.fetch();
    assert_eq!(r1.code(), 0, "{}", r1.all());
    assert_eq!(
        site.bundles(),
        [
            "et-blockrules-00000001",
            "et-open-snort-2.9.0-00000001",
            "et-open-suricata-5.0-00000001"
        ]
    );
    assert!(
        r1.stdout().contains("3 new, 0 heartbeat, 0 failed"),
        "{}",
        r1.stdout()
    );
    site.verify_all();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            site.spool()
                .join("et-open-suricata-5.0-00000001/manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["upstream"]["md5_published"],
        "3ed507977921535c79d7d322803cdd34"
    );
    assert_eq!(manifest["upstream"]["md5_matched"], true);
    assert_eq!(manifest["upstream"]["version"], "4548");
    assert_eq!(manifest["files"][0]["size"], 2_094_690);
    let block: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.spool().join("et-blockrules-00000001/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(block["files"].as_array().unwrap().len(), 3);

    // Second run: upstream unchanged → no archive bytes, heartbeats.
    srv.clear_log();
    let r2 = site.fetch();
    eprintln!("---- unchanged run:\n{}", r2.stdout());
    assert_eq!(r2.code(), 0, "{}", r2.all());
    assert_eq!(srv.archive_bytes_sent(), 0, "{:?}", srv.log());
    assert_eq!(srv.requests_for(SURI), 0, "version.txt said unchanged");
    let rep = site.last_report();
    assert_eq!(rep["archive_bytes"], 0);
    assert_eq!(rep["heartbeats"], 3);
    assert!(r2.stdout().contains("(0 archive bytes)"), "{}", r2.stdout());
    assert!(site
        .bundles()
        .contains(&"et-open-suricata-5.0-00000002".to_string()));
    let hb: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            site.spool()
                .join("et-open-suricata-5.0-00000002/manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(hb["unchanged_since"].is_string());
    assert_eq!(hb["files"].as_array().unwrap().len(), 0);

    // Upstream changes → a new bundle with the next sequence; the others heartbeat.
    let new = upstream_changes(&srv);
    let r3 = site.fetch();
    assert_eq!(r3.code(), 0, "{}", r3.all());
    let dir = site.spool().join("et-open-suricata-5.0-00000003");
    assert_eq!(
        std::fs::read(dir.join("emerging.rules.tar.gz")).unwrap(),
        new
    );
    assert!(
        r3.stdout()
            .contains("et-open-suricata-5.0: new bundle et-open-suricata-5.0-00000003 (sequence 3"),
        "{}",
        r3.stdout()
    );
    site.verify_all();
}

#[test]
fn md5_changed_but_version_missing_still_detects_change_without_version_txt() {
    // No version.txt upstream: the .md5 alone decides.
    let srv = Server::start();
    srv.remove("/open/suricata-5.0/version.txt");
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    assert_eq!(site.fetch().code(), 0);
    srv.clear_log();
    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(srv.requests_for(SURI), 0);
    assert_eq!(srv.requests_for(&format!("{SURI}.md5")), 1);
}

#[test]
fn truncated_gzip_publishes_nothing() {
    fault_case(
        |srv, _| {
            let full = small_archive(3);
            // Upstream publishes a cut archive with a matching .md5: only decoding can tell.
            srv.put_archive(SURI, full[..full.len() / 2].to_vec());
            srv.put("/open/suricata-5.0/version.txt", b"7167\n".to_vec());
        },
        &["truncated", "nothing was published"],
    );
}

#[test]
fn md5_mismatch_is_retried_a_bounded_number_of_times_then_fails() {
    let (srv, _, _) = fault_case(
        |srv, _| {
            upstream_changes(srv);
            srv.put(
                &format!("{SURI}.md5"),
                b"0123456789abcdef0123456789abcdef\n".to_vec(),
            );
            srv.clear_log();
        },
        &[
            "md5 of the download is",
            "0123456789abcdef0123456789abcdef",
            "after 3 downloads",
        ],
    );
    assert_eq!(
        srv.requests_for(SURI),
        3,
        "retries: 2 → 3 downloads, no more"
    );
}

#[test]
fn md5_file_holding_an_html_page_fails_the_gate() {
    fault_case(
        |srv, _| {
            upstream_changes(srv);
            srv.put(
                &format!("{SURI}.md5"),
                b"<html><head><title>502 Bad Gateway</title></head></html>\n".to_vec(),
            );
        },
        &["holds no md5 checksum", "<html>"],
    );
}

#[test]
fn not_found_says_the_engine_version_is_not_published() {
    let srv = Server::start();
    let site = Site::new();
    site.config(
        &format!(
            "  - ruleset: et-open\n    engine: suricata-9.9\n    base_url: {}\n",
            srv.base
        ),
        "",
    );
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all()
            .contains("engine version suricata-9.9 is not published upstream"),
        "{}",
        r.all()
    );
    assert!(r.all().contains("HTTP 404"), "{}", r.all());
    assert!(site.bundles().is_empty());
}

#[test]
fn server_error_then_success_publishes() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    assert_eq!(site.fetch().code(), 0);
    upstream_changes(&srv);
    srv.fault(SURI, Fault::Status(500), 1);
    srv.clear_log();
    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(srv.requests_for(SURI), 2);
    assert!(site
        .bundles()
        .contains(&"et-open-suricata-5.0-00000002".to_string()));
    site.verify_all();
}

#[test]
fn rate_limit_with_retry_after_sets_a_cool_down_honoured_next_run() {
    let (srv, site, run) = fault_case(
        |srv, _| {
            upstream_changes(srv);
            srv.fault(SURI, Fault::RetryAfter(429, 3600), 1);
        },
        &["HTTP 429", "cooling down until"],
    );
    assert!(run.all().contains("1h"), "{}", run.all());
    srv.clear_log();
    // Without --now (which would override it): not contacted, and exit 1 with the end time.
    let next = Run(etferry(&[
        "fetch",
        "-c",
        site.path("fetch.yaml").to_str().unwrap(),
    ]));
    assert_eq!(next.code(), 1, "{}", next.all());
    assert!(
        srv.log().is_empty(),
        "cooling source contacted upstream: {:?}",
        srv.log()
    );
    assert!(
        next.stdout().contains("cooling down until"),
        "{}",
        next.stdout()
    );
    assert_eq!(site.last_report()["sources"][0]["status"], "cooling_down");
}

#[test]
fn slow_drip_body_past_the_total_timeout_fails() {
    fault_case(
        |srv, site| {
            upstream_changes(srv);
            let cfg = site.path("fetch.yaml");
            let t = std::fs::read_to_string(&cfg).unwrap();
            std::fs::write(&cfg, t.replace("total_timeout: 20s", "total_timeout: 1s")).unwrap();
            srv.fault(
                SURI,
                Fault::Drip {
                    chunk: 512,
                    delay: std::time::Duration::from_millis(200),
                },
                3,
            );
        },
        // total_timeout bounds the download with its retries (issue 18): no second attempt.
        &["total_timeout 1s", "no retry: total_timeout 1s is spent"],
    );
}

#[test]
fn connection_reset_mid_body_fails_after_retries() {
    let (srv, _, _) = fault_case(
        |srv, _| {
            upstream_changes(srv);
            srv.fault(SURI, Fault::Reset(1000), 3);
            srv.clear_log();
        },
        &["after 3 attempts"],
    );
    assert_eq!(srv.requests_for(SURI), 3);
}

#[test]
fn proxy_with_credentials_works_and_without_gets_407() {
    let srv = Server::start();
    let proxy = Proxy::start("etf", "pr0xyS3cret");
    let site = Site::new();
    site.config(
        &suricata_only(&srv),
        &format!("  proxy: {}\n", proxy.url_with_credentials),
    );
    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(
        *proxy.forwarded.lock().unwrap() >= 2,
        "requests did not go through the proxy"
    );
    assert!(!r.all().contains("pr0xyS3cret"));
    assert_no_secret_in_files(&site, "pr0xyS3cret");

    let site2 = Site::new();
    site2.config(
        &suricata_only(&srv),
        &format!("  proxy: {}\n", proxy.url_without_credentials),
    );
    let r2 = site2.fetch();
    assert_eq!(r2.code(), 1, "{}", r2.all());
    assert!(r2.all().contains("407"), "{}", r2.all());
    assert!(site2.bundles().is_empty());
}

#[test]
fn write_error_while_publishing_leaves_no_partial_bundle_and_skips_the_sequence_visibly() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    assert_eq!(site.fetch().code(), 0);
    let before = site.spool_snapshot();
    // A 2.5 MB upstream change against a 100 kB file-size limit: writing the payload fails
    // (EFBIG), the way a full disk fails a write.
    srv.put_archive(
        SURI,
        corpus("et-open-snort-2.9.0-2020-03-27/emerging.rules.tar.gz"),
    );
    srv.put("/open/suricata-5.0/version.txt", b"7167\n".to_vec());
    let cfg = site.path("fetch.yaml");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 200; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_etferry"))
        .args(["fetch", "-c", cfg.to_str().unwrap(), "--now"])
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .unwrap();
    let run = Run(out);
    assert_eq!(run.code(), 1, "{}", run.all());
    assert!(
        run.all()
            .contains("cannot publish bundle et-open-suricata-5.0-00000002"),
        "{}",
        run.all()
    );
    assert!(run.all().contains("sequence 2 is skipped"), "{}", run.all());
    assert_eq!(site.spool_snapshot(), before);
    no_tmp_left(&site);
    // With room again, the next run publishes with the next unused sequence.
    let again = site.fetch();
    assert_eq!(again.code(), 0, "{}", again.all());
    assert!(
        site.bundles()
            .contains(&"et-open-suricata-5.0-00000003".to_string()),
        "{:?}",
        site.bundles()
    );
    site.verify_all();
}

#[test]
fn concurrent_run_exits_75_naming_the_lock() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    std::fs::create_dir_all(site.state()).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(site.state().join("fetch.lock"))
        .unwrap();
    lock.lock().unwrap();
    let r = site.fetch();
    assert_eq!(r.code(), 75, "{}", r.all());
    assert!(r.all().contains("fetch.lock"), "{}", r.all());
    assert!(srv.log().is_empty());
    drop(lock);
    assert_eq!(site.fetch().code(), 0);
}

fn assert_no_secret_in_files(site: &Site, secret: &str) {
    for e in walkdir::WalkDir::new(site.dir.path()) {
        let e = e.unwrap();
        let name = e.path().to_string_lossy().into_owned();
        assert!(!name.contains(secret), "secret in file name {name}");
        if e.file_type().is_file() && !name.ends_with("fetch.yaml") && !name.contains("oinkcode") {
            let b = std::fs::read(e.path()).unwrap();
            assert!(
                !b.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "secret found in {name}"
            );
        }
    }
}

#[test]
fn oinkcode_appears_nowhere_even_on_failure() {
    let srv = Server::start();
    let site = Site::new();
    std::fs::write(site.path("oinkcode"), format!("{OINKCODE}\n")).unwrap();
    site.config(
        &format!(
            "  - ruleset: et-pro\n    engine: snort-2.9.0\n    oinkcode_file: oinkcode\n    base_url: {}\n",
            srv.base
        ),
        "",
    );
    // Not published yet: 404 on a URL that holds the code.
    let fail = etferry(&[
        "-vv",
        "fetch",
        "-c",
        site.path("fetch.yaml").to_str().unwrap(),
        "--now",
    ]);
    let fail = Run(fail);
    assert_eq!(fail.code(), 1, "{}", fail.all());
    assert!(
        fail.all().contains("/***/snort-2.9.0/etpro.rules.tar.gz"),
        "{}",
        fail.all()
    );
    assert!(!fail.all().contains(OINKCODE), "{}", fail.all());
    // A 500 storm, then success; the bundle's manifest shows the redacted URL.
    srv.put_archive(PRO, small_archive(2));
    srv.fault(PRO, Fault::Status(500), 1);
    let ok = Run(etferry(&[
        "-vv",
        "fetch",
        "-c",
        site.path("fetch.yaml").to_str().unwrap(),
        "--now",
    ]));
    assert_eq!(ok.code(), 0, "{}", ok.all());
    assert!(!ok.all().contains(OINKCODE), "{}", ok.all());
    assert_no_secret_in_files(&site, OINKCODE);
    let m = std::fs::read_to_string(
        site.spool()
            .join("et-pro-snort-2.9.0-00000001/manifest.json"),
    )
    .unwrap();
    assert!(m.contains("/***/snort-2.9.0/etpro.rules.tar.gz"), "{m}");
}

#[test]
fn bad_config_exits_2_naming_file_and_key() {
    let site = Site::new();
    let p = site.path("fetch.yaml");
    std::fs::write(&p, "spool: s\nstate: t\nsigning_key: keys/bundle.key\nsources:\n  - ruleset: et-open\n    engine: suricata-7.0.3\n    colour: blue\n").unwrap();
    let r = Run(etferry(&["fetch", "-c", p.to_str().unwrap()]));
    assert_eq!(r.code(), 2, "{}", r.all());
    assert!(
        r.stderr().contains("fetch.yaml") && r.stderr().contains("colour"),
        "{}",
        r.stderr()
    );
}

#[test]
fn min_interval_skips_a_recently_checked_source_unless_now() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    assert_eq!(site.fetch().code(), 0);
    srv.clear_log();
    let r = Run(etferry(&[
        "fetch",
        "-c",
        site.path("fetch.yaml").to_str().unwrap(),
    ]));
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout().contains("skipped"), "{}", r.stdout());
    assert!(srv.log().is_empty());
}

#[test]
fn custom_plain_rules_source_with_and_without_checksum() {
    let srv = Server::start();
    let hunting = corpus("et-open-suricata-5.0-2024-04-21/rules/emerging-hunting.rules");
    srv.put("/custom/hunting.rules", hunting.clone());
    srv.put_archive("/custom/mixed.tar.gz", small_archive(2));
    let site = Site::new();
    site.config(
        &format!(
            "  - ruleset: custom\n    name: hunting\n    url: {b}custom/hunting.rules\n  \
             - ruleset: custom\n    name: mixed\n    url: {b}custom/mixed.tar.gz\n    checksum_url: {b}custom/mixed.tar.gz.md5\n",
            b = srv.base
        ),
        "",
    );
    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(
        std::fs::read(site.spool().join("hunting-00000001/hunting.rules")).unwrap(),
        hunting
    );
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.spool().join("mixed-00000001/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["upstream"]["md5_matched"], true);
    site.verify_all();
    // Unchanged plain file: the conditional GET answers 304, no bytes move.
    srv.clear_log();
    assert_eq!(site.fetch().code(), 0);
    assert_eq!(srv.archive_bytes_sent(), 0, "{:?}", srv.log());
}

#[test]
fn one_failing_source_does_not_stop_the_others() {
    let srv = Server::start();
    let site = Site::new();
    site.standard(&srv);
    srv.fault(SNORT, Fault::Status(404), 10);
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.stdout().contains("et-open-snort-2.9.0: FAILED"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout()
            .contains("engine version snort-2.9.0 is not published"),
        "{}",
        r.stdout()
    );
    assert_eq!(
        site.bundles(),
        ["et-blockrules-00000001", "et-open-suricata-5.0-00000001"]
    );
    let rep = site.last_report();
    assert_eq!(rep["failed"], 1);
    assert_eq!(rep["new_bundles"], 2);
}

#[test]
fn proxy_from_the_environment_is_used_and_no_proxy_is_honoured() {
    let srv = Server::start();
    let proxy = Proxy::start("etf", "envS3cret");
    let site = Site::new();
    let cfg = site.config(&suricata_only(&srv), "");
    let run = |extra: &[(&str, &str)]| {
        let mut c = command(&["fetch", "-c", cfg.to_str().unwrap(), "--now"]);
        c.env("HTTP_PROXY", &proxy.url_with_credentials);
        for (k, v) in extra {
            c.env(k, v);
        }
        Run(c.output().unwrap())
    };
    let r = run(&[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let through = *proxy.forwarded.lock().unwrap();
    assert!(through >= 2, "HTTP_PROXY was not used");
    let r = run(&[("NO_PROXY", "127.0.0.1")]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(
        *proxy.forwarded.lock().unwrap(),
        through,
        "NO_PROXY was ignored"
    );
}

#[test]
fn unreadable_ca_bundle_is_a_config_error() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "  ca_bundle: missing-ca.pem\n");
    let r = site.fetch();
    assert_eq!(r.code(), 2, "{}", r.all());
    assert!(r.stderr().contains("missing-ca.pem"), "{}", r.stderr());
}

#[test]
fn one_changed_block_list_gives_a_complete_new_bundle() {
    let srv = Server::start();
    let site = Site::new();
    site.config(
        &format!("  - ruleset: et-blockrules\n    base_url: {}\n", srv.base),
        "",
    );
    assert_eq!(site.fetch().code(), 0);
    // Upstream regenerates one list (drop its last address).
    let ips = srv.get("/blockrules/compromised-ips.txt");
    let text = String::from_utf8(ips).unwrap();
    let shorter: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    srv.put(
        "/blockrules/compromised-ips.txt",
        shorter.clone().into_bytes(),
    );
    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    let dir = site.spool().join("et-blockrules-00000002");
    assert_eq!(
        std::fs::read_to_string(dir.join("blockrules/compromised-ips.txt")).unwrap(),
        shorter
    );
    // The unchanged files travel too: every bundle is complete on its own.
    assert_eq!(
        std::fs::read(dir.join("blockrules/emerging-botcc.rules")).unwrap(),
        srv.get("/blockrules/emerging-botcc.rules")
    );
    assert_eq!(
        std::fs::read(dir.join("fwrules/emerging-Block-IPs.txt")).unwrap(),
        srv.get("/fwrules/emerging-Block-IPs.txt")
    );
    site.verify_all();
}

#[test]
fn block_list_that_turned_into_an_html_page_is_refused() {
    let srv = Server::start();
    let site = Site::new();
    site.config(
        &format!("  - ruleset: et-blockrules\n    base_url: {}\n", srv.base),
        "",
    );
    assert_eq!(site.fetch().code(), 0);
    let before = site.spool_snapshot();
    srv.put(
        "/fwrules/emerging-Block-IPs.txt",
        b"<html><body>maintenance</body></html>\n".to_vec(),
    );
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all().contains("fwrules/emerging-Block-IPs.txt line 1"),
        "{}",
        r.all()
    );
    assert_eq!(site.spool_snapshot(), before);
}

#[test]
fn cool_down_ends_when_its_time_has_passed() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    srv.fault(SURI, Fault::RetryAfter(429, 1), 1);
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(site.bundles(), ["et-open-suricata-5.0-00000001"]);
}

#[test]
fn retention_keeps_the_newest_bundles_and_heartbeat_can_be_off() {
    let srv = Server::start();
    let site = Site::new();
    let cfg = site.config(
        &format!("  - ruleset: et-blockrules\n    base_url: {}\n", srv.base),
        "",
    );
    let t = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, t.replace("keep_bundles: 30", "keep_bundles: 2")).unwrap();
    for _ in 0..3 {
        assert_eq!(site.fetch().code(), 0);
    }
    assert_eq!(
        site.bundles(),
        ["et-blockrules-00000002", "et-blockrules-00000003"]
    );
    let t = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, t.replace("heartbeat: true", "heartbeat: false")).unwrap();
    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(
        r.stdout().contains("et-blockrules: unchanged\n"),
        "{}",
        r.stdout()
    );
    assert_eq!(site.bundles().len(), 2);
}

#[test]
fn corrupt_state_fails_that_source_only_and_is_left_for_the_operator() {
    let srv = Server::start();
    let site = Site::new();
    site.standard(&srv);
    assert_eq!(site.fetch().code(), 0);
    let st = site.state().join("sources/et-open-snort-2.9.0.json");
    std::fs::write(&st, b"{ not json").unwrap();
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.stdout()
            .contains("et-open-snort-2.9.0: FAILED: fetch state"),
        "{}",
        r.stdout()
    );
    assert!(r.stdout().contains("is corrupt"), "{}", r.stdout());
    assert!(
        r.stdout().contains("2 heartbeat, 1 failed"),
        "{}",
        r.stdout()
    );
    assert_eq!(std::fs::read(&st).unwrap(), b"{ not json");
    // Removing it is safe: the sequence continues from the spool.
    std::fs::remove_file(&st).unwrap();
    assert_eq!(site.fetch().code(), 0);
    assert!(
        site.bundles()
            .contains(&"et-open-snort-2.9.0-00000002".to_string()),
        "{:?}",
        site.bundles()
    );
}
