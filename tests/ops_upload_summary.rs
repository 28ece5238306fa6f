//! Uploads you can see without a terminal: `ingest`, `watch` and `export` print one line per sink
//! (`threatq: sent N signatures in M requests (F failed, P pending) in S s`), and with `-v` the log
//! shows the upload's progress every 10 batches.

#[path = "ingest_support/mod.rs"]
mod ingest_support;
mod threatq_sim;

use ingest_support::*;
use threatq_sim::{Sim, CLIENT_ID, EMAIL, PASSWORD};

const DNS: &str = "et-open-suricata-5.0-2024-04-21/rules/emerging-rpc.rules";

fn env_for(sim: &Sim) -> Env {
    let env = Env::with_config(&format!(
        "sinks:\n  threatq:\n    host: {}\n    client_id: {CLIENT_ID}\n    email: {EMAIL}\n    \
         password_file: threatq.pass\n    batch_size: 5\n    concurrency: 2\n    batch_pause: 0s\n    batch_pause_max: 0s\n    \
         timeout: 2s\n    retry: {{attempts: 2, base: 10ms, max_delay: 50ms}}\n",
        sim.url
    ));
    std::fs::write(env.path("config/threatq.pass"), PASSWORD).unwrap();
    env
}

/// Enabled rules of the file, counted the plain way (a line that starts with an action).
fn enabled_rules(rel: &str) -> usize {
    String::from_utf8(read(rel))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("alert ") && l.contains("sid:"))
        .count()
}

fn summary(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("threatq: sent "))
        .unwrap_or_else(|| panic!("no threatq summary line in:\n{stdout}"))
}

#[test]
fn ingest_without_a_terminal_prints_one_threatq_line_and_logs_progress_every_10_batches() {
    let sim = Sim::start();
    let env = env_for(&sim);
    let n = enabled_rules(DNS);
    assert!(
        n > 50,
        "emerging-rpc.rules has {n} enabled rules; the test needs > 10 batches of 5"
    );
    let b = env.bundle("et-open", 1, &[("emerging-rpc.rules".into(), read(DNS))]);
    // Output goes to pipes: no terminal, like cron or systemd.
    let o = env.run_env(&["-v", "ingest", b.to_str().unwrap()], &[("CI", "")]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let batches = n.div_ceil(5);
    let line = summary(&o.stdout);
    let want =
        format!("threatq: sent {n} signatures in {batches} requests (0 failed, 0 pending) in ");
    assert!(line.starts_with(&want), "{line}\nwant: {want}");
    assert!(line.ends_with(" s"), "{line}");
    assert_eq!(sim.consumed().1, n, "the simulator got another count");
    let progress: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("batches sent"))
        .collect();
    assert_eq!(
        progress.len(),
        batches / 10 + usize::from(!batches.is_multiple_of(10)),
        "{}",
        o.stderr
    );
    assert!(
        progress[0].contains(&format!("10 of {batches} batches sent")),
        "{progress:?}"
    );

    // The same bundle content again: the run still says what it sent (nothing).
    let b = env.bundle("et-open", 2, &[("emerging-rpc.rules".into(), read(DNS))]);
    let o = env.run(&["ingest", b.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        summary(&o.stdout)
            .starts_with("threatq: sent 0 signatures in 0 requests (0 failed, 0 pending)"),
        "{o:?}"
    );
}

#[test]
fn an_unreachable_threatq_says_how_many_changes_stay_pending() {
    let sim = Sim::start();
    let env = env_for(&sim);
    let n = enabled_rules(DNS);
    sim.set_down(true);
    let b = env.bundle("et-open", 1, &[("emerging-rpc.rules".into(), read(DNS))]);
    let o = env.ingest(&b);
    assert_eq!(o.code, Some(3), "{o:?}");
    let line = summary(&o.stdout);
    assert!(
        line.contains(&format!("({n} failed, {n} pending)")),
        "{line}"
    );
    sim.set_down(false);
    let o = env.run(&["export", "threatq"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        summary(&o.stdout).contains(&format!("sent {n} signatures")),
        "{o:?}"
    );
}
