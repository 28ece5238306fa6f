//! The ThreatQ client against a hostile ThreatQ on 127.0.0.1 (issue 18): redirects that would
//! carry the password elsewhere, answers that stall mid-body, a login without a token, 401 after
//! a fresh login, endless 429. Each test fails on the code before the fix.

#[path = "ingest_support/mod.rs"]
mod ingest_support;
mod threatq_sim;
#[path = "fetch_support/tls.rs"]
mod tls;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etferry::sinks::threatq::{ThreatQConfig, ThreatQSink};
use etferry::sinks::{ExportItem, Sink};
use ingest_support::*;
use threatq_sim::{corpus, Fault, Sim, SimConfig, TokenFault, CLIENT_ID, EMAIL, PASSWORD};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/et-open-sample/rules"
);

/// A foreign host: counts connections and keeps what was sent to it.
struct Foreign {
    url: String,
    hits: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Foreign {
    fn start() -> Foreign {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, s) = (hits.clone(), seen.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                h.fetch_add(1, Ordering::SeqCst);
                let _ = c.set_read_timeout(Some(Duration::from_millis(300)));
                let mut buf = [0u8; 4096];
                if let Ok(n) = c.read(&mut buf) {
                    s.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = std::io::Write::write_all(
                    &mut c,
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 44\r\n\r\n{\"access_token\":\"stolen\",\"expires_in\":1800}",
                );
            }
        });
        Foreign { url, hits, seen }
    }

    fn untouched(&self) {
        assert_eq!(
            self.hits.load(Ordering::SeqCst),
            0,
            "the foreign host was contacted"
        );
        assert!(!String::from_utf8_lossy(&self.seen.lock().unwrap()).contains(PASSWORD));
    }
}

fn config(sim_url: &str, dir: &Path, extra: &str) -> ThreatQConfig {
    std::fs::write(dir.join("threatq.pass"), format!("{PASSWORD}\n")).unwrap();
    let timeout = if extra.contains("timeout:") {
        ""
    } else {
        "timeout: 2s\n"
    };
    let yaml = format!(
        "host: {sim_url}\nclient_id: {CLIENT_ID}\nemail: {EMAIL}\npassword_file: threatq.pass\n\
         batch_size: 20\nconcurrency: 1\nbatch_pause: 0s\nbatch_pause_max: 0s\n{timeout}{extra}"
    );
    etferry::config::parse_yaml(&dir.join("watch.yaml"), &yaml).unwrap()
}

fn items() -> Vec<ExportItem> {
    corpus::load_dir(SAMPLE, "suricata-5.0")
        .into_iter()
        .filter(|i| i.enabled)
        .collect()
}

// Finding 1: no credential follows a redirect.

#[test]
fn token_redirect_to_another_origin_is_refused_naming_the_location_and_the_password_stays() {
    for code in [307, 308] {
        let sim = Sim::start();
        let foreign = Foreign::start();
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&sim.url, dir.path(), "retry: {attempts: 2, base: 10ms}\n");
        let to = format!("{}/api/token?grant_type=password", foreign.url);
        sim.push_token_fault(TokenFault::Redirect(code, to.clone()));
        let err = ThreatQSink::connect(&cfg, dir.path()).err().unwrap();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!("HTTP {code} redirecting to {to}"))
                && msg.contains("never follows"),
            "{msg}"
        );
        assert!(!msg.contains(PASSWORD), "{msg}");
        foreign.untouched();
    }
}

#[test]
fn https_threatq_redirecting_the_login_to_plain_http_gets_no_password() {
    let foreign = Foreign::start();
    let tq = tls::TlsRedirect::start(307, &foreign.url);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &tq.url,
        dir.path(),
        &format!(
            "ca_bundle: {}\nretry: {{attempts: 2, base: 10ms}}\n",
            tls::ca_pem().display()
        ),
    );
    let err = ThreatQSink::connect(&cfg, dir.path()).err().unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("HTTP 307 redirecting to http://127.0.0.1"),
        "{msg}"
    );
    assert!(!msg.contains(PASSWORD), "{msg}");
    assert_eq!(tq.paths.lock().unwrap().len(), 1);
    foreign.untouched();
}

#[test]
fn api_call_redirect_is_not_followed_and_nothing_is_confirmed() {
    let sim = Sim::start();
    let foreign = Foreign::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sim.url, dir.path(), "");
    let mut sink = ThreatQSink::connect(&cfg, dir.path()).unwrap();
    let to = format!("{}/api/signatures/consume", foreign.url);
    sim.push_fault(Fault::Redirect(308, to.clone()));
    let items = items();
    let out = sink.export(&items).unwrap();
    assert!(out.confirmed.is_empty());
    assert_eq!(out.failed.len(), items.len());
    assert!(out.failed[0].1.contains(&to), "{}", out.failed[0].1);
    foreign.untouched();
}

// Finding 8: clear errors.

#[test]
fn timeout_while_reading_the_token_answer_is_retried_as_a_timeout() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &sim.url,
        dir.path(),
        "timeout: 1s\nretry: {attempts: 3, base: 10ms}\n",
    );
    sim.push_token_fault(TokenFault::Stall(Duration::from_secs(3)));
    let sink = ThreatQSink::connect(&cfg, dir.path()).unwrap();
    assert_eq!(sink.stats().logins, 1);
    assert!(sink.stats().retries >= 1, "{:?}", sink.stats());
    let tokens = sim
        .requests()
        .iter()
        .filter(|r| r.path == "/api/token")
        .count();
    assert_eq!(tokens, 2);
}

#[test]
fn https_host_answered_in_plain_http_says_so() {
    // A plain-http server (as nginx answers a TLS hello on its http port: 400).
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf);
            let _ = std::io::Write::write_all(
                &mut c,
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&url, dir.path(), "retry: {attempts: 1}\n");
    let err = ThreatQSink::connect(&cfg, dir.path()).err().unwrap();
    let msg = format!("{err:#}");
    assert!(msg.contains("plain http on this https URL"), "{msg}");
}

#[test]
fn duplicate_signature_type_names_are_noted_with_the_choice() {
    let sim = Sim::with(SimConfig {
        types: vec!["YARA", "Snort", "snort", "Suricata"],
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sim.url, dir.path(), "");
    let sink = ThreatQSink::connect(&cfg, dir.path()).unwrap();
    assert_eq!(
        sink.notes(),
        ["ThreatQ has 2 signature types named \"Snort\": ids 2 (Snort), 3 (snort); using id 2"]
    );
}

// Finding 9: ThreatQ faults before anything is stored.

fn env_for(sim: &Sim, retry: &str) -> Env {
    let env = Env::with_config(&format!(
        "sinks:\n  threatq:\n    host: {}\n    client_id: {CLIENT_ID}\n    email: {EMAIL}\n    \
         password_file: threatq.pass\n    batch_size: 100\n    concurrency: 1\n    batch_pause: 0s\n    batch_pause_max: 0s\n    \
         timeout: 2s\n    retry: {retry}\n",
        sim.url
    ));
    std::fs::write(env.path("config/threatq.pass"), PASSWORD).unwrap();
    env
}

fn sample_bundle(env: &Env) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(SAMPLE)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let files: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| {
            (
                format!("rules/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    env.bundle(
        "et-open-suricata-5.0",
        1,
        &[("emerging.rules.tar.gz".into(), targz(&files))],
    )
}

#[test]
fn login_without_a_token_still_stores_the_bundle_and_exits_3() {
    let sim = Sim::start();
    let env = env_for(&sim, "{attempts: 2, base: 10ms, max_delay: 100ms}");
    sim.push_token_fault(TokenFault::NoToken);
    let o = env.ingest(&sample_bundle(&env));
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stderr.contains("without an access_token"), "{}", o.stderr);
    // Stored and pending: the next export sends all of it.
    let o = env.run(&["export", "threatq"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    // tests/fixtures/README.md: 116 enabled rules in the sample.
    assert_eq!(sim.signatures().len(), 116);
}

#[test]
fn unauthorized_after_a_fresh_login_still_stores_the_bundle_and_exits_3() {
    let sim = Sim::start();
    let env = env_for(&sim, "{attempts: 2, base: 10ms, max_delay: 100ms}");
    sim.refuse_tokens(true);
    let o = env.ingest(&sample_bundle(&env));
    assert_eq!(o.code, Some(3), "{o:?}");
    assert!(o.stderr.contains("after a fresh login"), "{}", o.stderr);
    sim.refuse_tokens(false);
    let o = env.run(&["export", "threatq"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(sim.signatures().len(), 116);
}

#[test]
fn endless_429_trips_the_circuit_breaker_after_max_total_wait_and_the_rest_stays_pending() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &sim.url,
        dir.path(),
        "retry: {attempts: 20, base: 10ms, max_delay: 1s, max_total_wait: 2s}\n",
    );
    let mut sink = ThreatQSink::connect(&cfg, dir.path()).unwrap();
    for _ in 0..100 {
        sim.push_fault(Fault::Status {
            code: 429,
            retry_after: Some(1),
        });
    }
    let items = items();
    let out = sink.export(&items).unwrap();
    assert!(out.confirmed.is_empty());
    assert_eq!(out.failed.len(), items.len());
    assert!(
        out.failed
            .iter()
            .all(|(_, m)| m.contains("max_total_wait 2s")),
        "{:?}",
        out.failed[0]
    );
    // Waits of 1 s each: two fit in 2 s, so three tries in all, then nothing more is sent.
    assert_eq!(sim.consumed().0, 3);
    // The next export (the next bundle, in `watch`) has its own budget: ThreatQ recovered.
    sim.clear_faults();
    let out = sink.export(&items).unwrap();
    assert_eq!(out.confirmed.len(), items.len());
}
