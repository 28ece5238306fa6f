//! `etferry fetch` against a hostile ET-like mirror on 127.0.0.1 (issue 18): redirects that try
//! to move the download to another origin, bodies without end, a drip feed, absurd cool-downs,
//! an unasked-for 304, duplicate-stuffed archives. Each test fails on the code before the fix.

mod fetch_support;

use std::time::Duration;

use fetch_support::*;

fn suricata_only(srv: &Server) -> String {
    format!(
        "  - ruleset: et-open\n    engine: suricata-5.0\n    base_url: {}\n",
        srv.base
    )
}

fn fetch_without_now(site: &Site) -> Run {
    Run(etferry(&[
        "fetch",
        "-c",
        site.path("fetch.yaml").to_str().unwrap(),
    ]))
}

fn state(site: &Site, source: &str) -> serde_json::Value {
    let p = site.state().join(format!("sources/{source}.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn no_file_holds(site: &Site, secret: &str) {
    for e in walkdir::WalkDir::new(site.dir.path()) {
        let e = e.unwrap();
        if e.file_type().is_file() && !e.path().ends_with("oinkcode") {
            let b = std::fs::read(e.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&b).contains(secret),
                "{} holds the secret",
                e.path().display()
            );
        }
    }
}

// Finding 2: cross-origin redirects.

#[test]
fn redirect_of_et_pro_to_another_origin_is_refused_and_the_oinkcode_never_leaves() {
    let srv = Server::start();
    let foreign = Server::start();
    let site = Site::new();
    std::fs::write(site.path("oinkcode"), format!("{OINKCODE}\n")).unwrap();
    srv.put_archive(PRO, small_archive(2));
    // The mirror sends the archive (with the code in its path) to another host.
    let elsewhere = format!("{}{}", foreign.base, &PRO[1..]);
    srv.fault(PRO, Fault::Redirect(302, elsewhere), 10);
    site.config(
        &format!(
            "  - ruleset: et-pro\n    engine: snort-2.9.0\n    oinkcode_file: oinkcode\n    base_url: {}\n    allow_redirect_hosts: [127.0.0.1]\n",
            srv.base
        ),
        "",
    );
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all()
            .contains("would send the oinkcode to a host other than the configured one"),
        "{}",
        r.all()
    );
    assert!(foreign.log().is_empty(), "{:?}", foreign.log());
    assert!(site.bundles().is_empty());
    assert!(!r.all().contains(OINKCODE), "{}", r.all());
    no_file_holds(&site, OINKCODE);
}

#[test]
fn cross_origin_redirect_needs_allow_redirect_hosts_and_the_manifest_records_the_final_url() {
    let srv = Server::start();
    let cdn = Server::start();
    let site = Site::new();
    let archive = small_archive(2);
    cdn.put_archive("/cdn/emerging.rules.tar.gz", archive.clone());
    srv.put_archive("/x/emerging.rules.tar.gz", archive);
    let to_cdn = format!("{}cdn/emerging.rules.tar.gz", cdn.base);
    srv.fault(
        "/x/emerging.rules.tar.gz",
        Fault::Redirect(307, to_cdn.clone()),
        10,
    );
    let source = |extra: &str| {
        format!(
            "  - ruleset: custom\n    name: hunting\n    url: {b}x/emerging.rules.tar.gz\n    checksum_url: {b}x/emerging.rules.tar.gz.md5\n{extra}",
            b = srv.base
        )
    };
    site.config(&source(""), "");
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all().contains("redirect to another origin") && r.all().contains(&to_cdn),
        "{}",
        r.all()
    );
    assert!(r.all().contains("allow_redirect_hosts"), "{}", r.all());
    assert_eq!(cdn.requests_for("/cdn/emerging.rules.tar.gz"), 0);
    assert!(site.bundles().is_empty());

    site.config(&source("    allow_redirect_hosts: [127.0.0.1]\n"), "");
    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(cdn.requests_for("/cdn/emerging.rules.tar.gz"), 1);
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.spool().join("hunting-00000001/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["upstream"]["final_url"], to_cdn.as_str());
    site.verify_all();
}

#[test]
fn https_to_plain_http_redirect_is_refused_even_to_an_allowed_host() {
    let srv = Server::start();
    let site = Site::new();
    let tls = tls::TlsRedirect::start(302, srv.base.trim_end_matches('/'));
    site.config(
        &format!(
            "  - ruleset: et-open\n    engine: suricata-5.0\n    base_url: {}/\n    allow_redirect_hosts: [127.0.0.1]\n",
            tls.url
        ),
        &format!("  ca_bundle: {}\n", tls::ca_pem().display()),
    );
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all().contains("redirect from https to plain http"),
        "{}",
        r.all()
    );
    assert!(
        !tls.paths.lock().unwrap().is_empty(),
        "the https mirror was not asked"
    );
    assert!(
        srv.log().is_empty(),
        "fetched over plain http: {:?}",
        srv.log()
    );
    assert!(site.bundles().is_empty());
}

// Finding 3: bounded bodies.

#[test]
fn endless_archive_body_stops_at_max_download_size_and_publishes_nothing() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "  max_download_size: 1MiB\n");
    srv.fault(SURI, Fault::Endless { limit: 64 << 30 }, 10);
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all().contains("max_download_size") && r.all().contains("1048576"),
        "{}",
        r.all()
    );
    // Not retried: a body over the cap is not a transient failure.
    assert_eq!(srv.requests_for(SURI), 1);
    let got = site.last_report()["sources"][0]["archive_bytes"]
        .as_u64()
        .unwrap();
    assert!(got <= (1 << 20) + (64 << 10), "read {got} bytes");
    assert!(site.bundles().is_empty());
}

#[test]
fn huge_md5_fails_before_the_archive_is_downloaded() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    let md5 = format!("{SURI}.md5");
    // Announced (Content-Length 1 GiB), then one without any length.
    srv.fault(&md5, Fault::Huge(1 << 30), 1);
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.all().contains("1073741824"), "{}", r.all());
    assert_eq!(srv.requests_for(SURI), 0, "archive downloaded anyway");
    srv.fault(&md5, Fault::Endless { limit: 1 << 30 }, 1);
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.all().contains("16384 bytes allowed"), "{}", r.all());
    assert_eq!(srv.requests_for(SURI), 0, "archive downloaded anyway");
    assert!(site.bundles().is_empty());
}

#[test]
fn binary_version_txt_is_a_clear_error() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    srv.put(
        "/open/suricata-5.0/version.txt",
        vec![0x1f, 0x8b, 0, 0, 1, 2],
    );
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all()
            .contains("version.txt: the body (6 bytes) is binary"),
        "{}",
        r.all()
    );
    assert_eq!(srv.requests_for(SURI), 0);
    assert!(site.bundles().is_empty());
}

#[test]
fn config_check_online_reports_an_md5_over_the_cap() {
    let srv = Server::start();
    let site = Site::new();
    let cfg = site.config(&suricata_only(&srv), "");
    srv.fault(&format!("{SURI}.md5"), Fault::Huge(1 << 30), 1);
    let r = Run(etferry(&[
        "config",
        "check",
        cfg.to_str().unwrap(),
        "--online",
    ]));
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all().contains("announces 1073741824 bytes"),
        "{}",
        r.all()
    );
    assert_eq!(srv.requests_for(SURI), 0);
}

// Finding 4: total_timeout bounds the download with its retries.

#[test]
fn total_timeout_bounds_the_whole_download_with_its_retries() {
    let srv = Server::start();
    let site = Site::new();
    let cfg = site.config(&suricata_only(&srv), "");
    let t = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, t.replace("total_timeout: 20s", "total_timeout: 2s")).unwrap();
    // One byte every 200 ms: never idle long enough for read_timeout, never done.
    srv.fault(
        SURI,
        Fault::Drip {
            chunk: 1,
            delay: Duration::from_millis(200),
        },
        10,
    );
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.all().contains("total_timeout 2s"), "{}", r.all());
    // Before the fix each of the 3 attempts had its own 2 s.
    assert_eq!(srv.started(SURI), 1, "{:?}", srv.log());
    assert!(site.bundles().is_empty());
}

// Finding 5: bounded cool-downs.

#[test]
fn ten_year_retry_after_is_capped_exits_1_and_now_overrides_it() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    srv.fault(SURI, Fault::RetryAfter(429, 10 * 365 * 86400), 1);
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all().contains("capped at max_cool_down 1day"),
        "{}",
        r.all()
    );
    let until = state(&site, "et-open-suricata-5.0")["cool_down_until"]
        .as_str()
        .unwrap()
        .to_string();
    let until = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
    assert!(
        until < chrono::Utc::now() + chrono::Duration::hours(25),
        "{until}"
    );

    srv.clear_log();
    let r = fetch_without_now(&site);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout().contains("cooling down until"), "{}", r.stdout());
    assert!(srv.log().is_empty());

    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(
        r.all().contains("--now overrides the cool-down"),
        "{}",
        r.all()
    );
    assert_eq!(site.bundles(), ["et-open-suricata-5.0-00000001"]);
    assert!(state(&site, "et-open-suricata-5.0")["cool_down_until"].is_null());
}

#[test]
fn retry_after_in_year_9999_or_overflowing_is_capped_and_a_past_date_means_now() {
    for raw in [
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "99999999999999999999999999",
    ] {
        let srv = Server::start();
        let site = Site::new();
        site.config(&suricata_only(&srv), "  max_cool_down: 2h\n");
        srv.fault(SURI, Fault::RetryAfterRaw(429, raw.into()), 1);
        let r = site.fetch();
        assert_eq!(r.code(), 1, "{raw}: {}", r.all());
        assert!(r.all().contains("cooling down until"), "{raw}: {}", r.all());
        let until = state(&site, "et-open-suricata-5.0")["cool_down_until"]
            .as_str()
            .unwrap()
            .to_string();
        let until = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
        let now = chrono::Utc::now();
        assert!(
            until > now + chrono::Duration::minutes(110)
                && until < now + chrono::Duration::hours(2),
            "{raw}: {until}"
        );
    }
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    srv.fault(
        SURI,
        Fault::RetryAfterRaw(429, "Thu, 01 Jan 1970 00:00:00 GMT".into()),
        1,
    );
    let r = site.fetch();
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(srv.requests_for(SURI), 2);
}

#[test]
fn cool_down_ends_when_the_base_url_changes() {
    let old = Server::start();
    let new = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&old), "");
    old.fault(SURI, Fault::RetryAfter(429, 3600), 1);
    assert_eq!(site.fetch().code(), 1);
    site.config(&suricata_only(&new), "");
    let r = fetch_without_now(&site);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(new.requests_for(SURI), 1);
    assert_eq!(site.bundles(), ["et-open-suricata-5.0-00000001"]);
}

// Finding 6: an unasked-for 304.

#[test]
fn not_modified_to_a_first_download_is_an_error_not_a_heartbeat() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    srv.fault(SURI, Fault::NotModified, 10);
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.all().contains("sent no validators"), "{}", r.all());
    assert!(site.bundles().is_empty());
}

// Finding 7: duplicates counted in the gate.

#[test]
fn archive_stuffed_with_duplicate_rules_is_refused_with_the_counts() {
    let srv = Server::start();
    let site = Site::new();
    let rule = "alert tcp $HOME_NET any -> $EXTERNAL_NET 80 (msg:\"ET TEST dup\"; flow:established,to_server; sid:2999999; rev:1;)\n";
    let member = rule.repeat(5000);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for i in 0..4 {
        let mut h = tar::Header::new_gnu();
        h.set_size(member.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("rules/dup-{i}.rules"), member.as_bytes())
            .unwrap();
    }
    let archive = tar.into_inner().unwrap().finish().unwrap();
    srv.put_archive(SURI, archive);
    site.config(&suricata_only(&srv), "");
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all()
            .contains("holds 20000 rules but only 1 distinct (gid, sid): 19999 duplicates"),
        "{}",
        r.all()
    );
    assert!(site.bundles().is_empty());
}

// Finding 8 (fetch side): clear errors.

#[test]
fn gzip_content_encoding_is_named_in_the_md5_mismatch() {
    let srv = Server::start();
    let site = Site::new();
    site.config(&suricata_only(&srv), "");
    srv.fault(SURI, Fault::GzipEncoded, 10);
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.all().contains("md5 of the download") && r.all().contains("Content-Encoding: gzip"),
        "{}",
        r.all()
    );
}

#[test]
fn refusing_proxy_is_named_as_the_proxy() {
    let srv = Server::start();
    let site = Site::new();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    site.config(&suricata_only(&srv), &format!("  proxy: {dead}\n"));
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.all().contains(&format!("proxy {dead}")), "{}", r.all());
}

#[test]
fn https_url_answered_in_plain_http_says_so() {
    let srv = Server::start();
    let site = Site::new();
    let https = srv.base.replace("http://", "https://");
    site.config(
        &format!("  - ruleset: custom\n    name: hunting\n    url: {https}x.tar.gz\n"),
        "",
    );
    let r = site.fetch();
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.all().contains("plain http"), "{}", r.all());
}
