//! `etferry config check --online`: a ThreatQ login against the simulator and HEADs of the
//! upstream `.md5` URLs against the local ET-like server. Every answer names the config file and
//! the failing sink or source, uses the exit code the matching command would, and never shows the
//! password, a token or the oinkcode.

#[path = "fetch_support/mod.rs"]
mod fetch_support;
#[path = "ingest_support/mod.rs"]
mod ingest_support;
mod threatq_sim;

use fetch_support::{Server, Site, OINKCODE, PRO, SNORT, SURI};
use ingest_support::Env;
use threatq_sim::{Sim, CLIENT_ID, EMAIL, PASSWORD};

/// A watch.yaml with a ThreatQ sink at `host`, the password in a 0600 file.
fn watch_env(host: &str, password: &str) -> Env {
    let env = Env::with_config(&format!(
        "sinks:\n  threatq:\n    host: {host}\n    client_id: {CLIENT_ID}\n    email: {EMAIL}\n    \
         password_file: threatq.pass\n    timeout: 2s\n    retry: {{attempts: 3, base: 10ms, max_delay: 100ms}}\n"
    ));
    let pass = env.path("config/threatq.pass");
    std::fs::write(&pass, format!("{password}\n")).unwrap();
    set_0600(&pass);
    set_0600(&env.config);
    env
}

fn set_0600(p: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn check_online(config: &std::path::Path) -> ingest_support::Output {
    // Without proxy variables: every request goes straight to 127.0.0.1.
    let o = fetch_support::command(&["config", "check", "--online"])
        .arg(config)
        .env_remove("CI")
        .output()
        .unwrap();
    let o = ingest_support::Output {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    // Shown with --nocapture or on failure.
    println!("exit {:?}\n{}{}", o.code, o.stdout, o.stderr);
    o
}

/// `config check --online` of a fetch.yaml with one ET Open Suricata 5.0 source at `base`.
fn check_suricata_source(base: &str) -> ingest_support::Output {
    let site = Site::new();
    site.config(
        &format!("  - ruleset: et-open\n    engine: suricata-5.0\n    base_url: {base}\n"),
        "",
    );
    check_online(&site.path("fetch.yaml"))
}

/// A port nothing listens on.
fn dead_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn no_secret(o: &ingest_support::Output, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !o.stdout.contains(s),
            "secret {s:?} in stdout:\n{}",
            o.stdout
        );
        assert!(
            !o.stderr.contains(s),
            "secret {s:?} in stderr:\n{}",
            o.stderr
        );
    }
}

/// Every request was a HEAD and no file body left the server (a 404 page may).
fn only_heads(srv: &Server) {
    let log = srv.log();
    assert!(!log.is_empty());
    assert!(log.iter().all(|l| l.method == "HEAD"), "{log:?}");
    assert!(
        log.iter().all(|l| l.status != 200 || l.body_bytes == 0),
        "{log:?}"
    );
}

/// The access tokens the simulator saw in requests (to check they are never shown).
fn tokens(sim: &Sim) -> Vec<String> {
    sim.requests()
        .iter()
        .filter_map(|r| {
            r.authorization
                .as_deref()?
                .strip_prefix("Bearer ")
                .map(String::from)
        })
        .collect()
}

#[test]
fn good_threatq_login_passes_and_names_type_and_statuses() {
    let sim = Sim::start();
    let env = watch_env(&sim.url, PASSWORD);
    let o = check_online(&env.config);
    assert_eq!(o.code, Some(0), "{o:?}");
    let line = o
        .stdout
        .lines()
        .find(|l| l.contains("login OK"))
        .unwrap_or_else(|| panic!("no threatq line: {}", o.stdout));
    assert!(line.contains(&sim.url), "{line}");
    assert!(line.contains("login OK"), "{line}");
    assert!(line.contains(CLIENT_ID), "{line}");
    assert!(line.contains("signature type \"Snort\" found"), "{line}");
    assert!(line.contains("\"Active\""), "{line}");
    // It logged in and read, and wrote nothing.
    let log = sim.requests();
    assert!(log
        .iter()
        .any(|r| r.path == "/api/token" && r.status == 200));
    assert!(log
        .iter()
        .any(|r| r.path == "/api/signature/types" && r.status == 200));
    assert!(log
        .iter()
        .all(|r| r.method == "GET" || r.path == "/api/token"));
    assert!(sim.signatures().is_empty());
    let toks = tokens(&sim);
    assert!(!toks.is_empty());
    let mut secrets: Vec<&str> = toks.iter().map(String::as_str).collect();
    secrets.push(PASSWORD);
    no_secret(&o, &secrets);
    assert!(!o.stdout.contains("Bearer") && !o.stderr.contains("Bearer"));
}

#[test]
fn wrong_threatq_password_says_login_refused_and_exits_2() {
    let sim = Sim::start();
    let env = watch_env(&sim.url, "not-the-Pa55word");
    let o = check_online(&env.config);
    assert_eq!(o.code, Some(2), "{o:?}");
    assert!(
        o.stderr
            .contains("login refused: check client_id, e-mail and password"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("watch.yaml"), "{}", o.stderr);
    assert!(o.stderr.contains("sinks.threatq"), "{}", o.stderr);
    assert!(o.stderr.contains("HTTP 401"), "{}", o.stderr);
    no_secret(&o, &["not-the-Pa55word", PASSWORD]);
}

#[test]
fn unreachable_threatq_names_connection_refused_and_exits_3_like_ingest() {
    let dead = dead_port();
    let env = watch_env(&dead, PASSWORD);
    let o = check_online(&env.config);
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stderr.contains("connection refused"), "{}", o.stderr);
    assert!(o.stderr.contains(&dead), "{}", o.stderr);
    assert!(o.stderr.contains("watch.yaml"), "{}", o.stderr);
    no_secret(&o, &[PASSWORD]);
}

#[test]
fn watch_config_without_sink_says_so() {
    let env = Env::new();
    set_0600(&env.config);
    let o = check_online(&env.config);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("no sink configured"), "{}", o.stdout);
}

fn pro_site(srv: &Server, extra_sources: &str) -> Site {
    let site = Site::new();
    std::fs::write(site.path("oinkcode"), format!("{OINKCODE}\n")).unwrap();
    set_0600(&site.path("oinkcode"));
    site.config(
        &format!(
            "{}  - ruleset: et-pro\n    engine: snort-2.9.0\n    oinkcode_file: oinkcode\n    base_url: {b}\n{extra_sources}",
            fetch_support::standard_sources(srv),
            b = srv.base
        ),
        "",
    );
    set_0600(&site.path("fetch.yaml"));
    site
}

#[test]
fn good_fetch_config_heads_each_md5_and_downloads_no_archive() {
    let srv = Server::start();
    srv.put_archive(
        PRO,
        fetch_support::corpus("et-open-snort-2.9.0-2020-03-27/emerging.rules.tar.gz"),
    );
    let site = pro_site(&srv, "");
    let o = check_online(&site.path("fetch.yaml"));
    assert_eq!(o.code, Some(0), "{o:?}");
    for (name, path) in [
        ("et-open-suricata-5.0", format!("{SURI}.md5")),
        ("et-open-snort-2.9.0", format!("{SNORT}.md5")),
        (
            "et-blockrules",
            "/blockrules/emerging-botcc.rules".to_string(),
        ),
        (
            "et-blockrules",
            "/fwrules/emerging-Block-IPs.txt".to_string(),
        ),
    ] {
        let url = format!("{}{}", srv.base.trim_end_matches('/'), path);
        assert!(
            o.stdout
                .lines()
                .any(|l| l.contains(name) && l.contains(&url) && l.contains("HTTP 200")),
            "{name} {url}:\n{}",
            o.stdout
        );
    }
    // The ET Pro line shows the URL with the oinkcode masked.
    assert!(
        o.stdout
            .contains("/***/snort-2.9.0/etpro.rules.tar.gz.md5: HTTP 200"),
        "{}",
        o.stdout
    );
    // HEADs only: not one archive byte left the server.
    only_heads(&srv);
    no_secret(&o, &[OINKCODE]);
}

#[test]
fn upstream_404_on_one_source_names_that_source_and_exits_1() {
    let srv = Server::start();
    srv.put_archive(
        PRO,
        fetch_support::corpus("et-open-snort-2.9.0-2020-03-27/emerging.rules.tar.gz"),
    );
    // An engine the mirror does not publish.
    let site = pro_site(
        &srv,
        &format!(
            "  - ruleset: et-open\n    engine: suricata-7.0.3\n    base_url: {}\n",
            srv.base
        ),
    );
    let o = check_online(&site.path("fetch.yaml"));
    assert_eq!(o.code, Some(1), "{o:?}");
    let err: Vec<&str> = o.stderr.lines().filter(|l| l.contains("404")).collect();
    assert_eq!(err.len(), 1, "{}", o.stderr);
    assert!(err[0].contains("fetch.yaml"), "{}", err[0]);
    assert!(
        err[0].contains("source et-open-suricata-7.0.3"),
        "{}",
        err[0]
    );
    assert!(
        err[0].contains("suricata-7.0.3/emerging.rules.tar.gz"),
        "{}",
        err[0]
    );
    // The other sources were still checked and passed.
    assert!(o.stdout.contains("et-open-suricata-5.0"), "{}", o.stdout);
    assert!(o.stdout.contains("/***/snort-2.9.0/"), "{}", o.stdout);
    only_heads(&srv);
    no_secret(&o, &[OINKCODE]);
}

#[test]
fn missing_md5_with_archive_present_passes_with_a_note() {
    let srv = Server::start();
    srv.remove(&format!("{SURI}.md5"));
    let o = check_suricata_source(&srv.base);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stdout.contains("not published (HTTP 404)"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("fetch will go without an md5"),
        "{}",
        o.stdout
    );
    only_heads(&srv);
}

#[test]
fn refused_et_pro_oinkcode_says_so_without_showing_it() {
    let srv = Server::start();
    srv.put_archive(
        PRO,
        fetch_support::corpus("et-open-snort-2.9.0-2020-03-27/emerging.rules.tar.gz"),
    );
    srv.fault(&format!("{PRO}.md5"), fetch_support::Fault::Status(403), 5);
    let site = pro_site(&srv, "");
    let o = check_online(&site.path("fetch.yaml"));
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(
        o.stderr.contains("source et-pro-snort-2.9.0"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("refused the oinkcode"), "{}", o.stderr);
    no_secret(&o, &[OINKCODE]);
}

#[test]
fn unreachable_upstream_port_names_the_connection_error() {
    let dead = dead_port();
    let o = check_suricata_source(&format!("{dead}/"));
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(
        o.stderr.contains("source et-open-suricata-5.0"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.to_ascii_lowercase().contains("connection refused"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains(&dead), "{}", o.stderr);
}

#[test]
fn server_refusing_head_gets_a_one_byte_ranged_get_instead() {
    let srv = Server::start();
    let md5 = format!("{SURI}.md5");
    srv.fault(&md5, fetch_support::Fault::Status(405), 1);
    let o = check_suricata_source(&srv.base);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains(".md5: HTTP 200"), "{}", o.stdout);
    let log = srv.log();
    let methods: Vec<(&str, u16)> = log.iter().map(|l| (l.method.as_str(), l.status)).collect();
    assert_eq!(methods, [("HEAD", 405), ("GET", 200)], "{log:?}");
    assert!(
        log[1]
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("range") && v == "bytes=0-0"),
        "{log:?}"
    );
    assert!(log.iter().all(|l| l.path == md5), "{log:?}");
}

/// A TCP server that answers every connection with `reply` (or, when empty, never answers).
fn raw_server(reply: &'static [u8]) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            use std::io::{Read, Write};
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            if !reply.is_empty() {
                let _ = c.write_all(reply);
            }
            held.push(c);
        }
    });
    addr.to_string()
}

#[test]
fn https_to_a_server_without_tls_names_a_tls_error_and_exits_3() {
    let addr = raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let env = watch_env(&format!("https://{addr}"), PASSWORD);
    let o = check_online(&env.config);
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stderr.contains("TLS error"), "{}", o.stderr);
    // Issue 18: said so, instead of suggesting a CA bundle.
    assert!(
        o.stderr.contains("plain http on this https URL"),
        "{}",
        o.stderr
    );
    no_secret(&o, &[PASSWORD]);
}

#[test]
fn threatq_that_never_answers_is_a_timeout_and_exits_3() {
    let addr = raw_server(b"");
    let env = watch_env(&format!("http://{addr}"), PASSWORD);
    let o = check_online(&env.config);
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stderr.contains("timed out"), "{}", o.stderr);
    assert!(o.stderr.contains(&addr), "{}", o.stderr);
    no_secret(&o, &[PASSWORD]);
}
