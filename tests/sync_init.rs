//! `etferry init` on a host that reaches the internet: the original connector's questions in its
//! order, one etferry.yaml plus 0600 secret files, and a first `etferry sync` on what it wrote.

// fetch_support and threatq_sim each load corpus_support (the one place that knows the corpus).
#![allow(clippy::duplicate_mod)]

mod fetch_support;
mod sync_support;
mod threatq_sim;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use fetch_support::{OINKCODE, PRO, SNORT};
use sync_support::*;
use threatq_sim::{CLIENT_ID, EMAIL, PASSWORD};

#[test]
fn connected_init_asks_the_connectors_questions_and_sync_runs_on_what_it_wrote() {
    let site = SyncSite::bare();
    let mut child = fetch_support::command(&["init", "--state", "../state", "--out"])
        .arg(site.conf())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let answers = format!(
        "yes\n{}\n{CLIENT_ID}\n{EMAIL}\n{PASSWORD}\n{OINKCODE}\net-open,et-pro\nsnort-2.9.0\nno\n\nnon-malicious\n",
        site.sim.url
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answers.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}{stderr}");
    let order = [
        "reach the internet",
        "ThreatQ Host",
        "Client ID",
        "E-mail",
        "Password",
        "ET Pro Oinkcode",
        "Rulesets",
        "Include Non-Standard Rules",
        "Standard Rule Status",
        "Non-Standard Rule Status",
    ];
    let pos: Vec<usize> = order
        .iter()
        .map(|p| stderr.find(p).unwrap_or_else(|| panic!("{p}: {stderr}")))
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{stderr}");
    for secret in [PASSWORD, OINKCODE] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} echoed"
        );
    }
    for f in ["etferry.yaml", "threatq.pass", "oinkcode"] {
        let mode = std::fs::metadata(site.conf().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert!(!site.conf().join("watch.yaml").exists());
    let yaml = std::fs::read_to_string(site.conf().join("etferry.yaml")).unwrap();
    for want in [
        "state: ../state",
        "oinkcode_file: oinkcode",
        "engine: snort-2.9.0",
        "non_standard_status: Non-Malicious",
        "password_file: threatq.pass",
    ] {
        assert!(yaml.contains(want), "{want}: {yaml}");
    }
    assert!(!yaml.contains(PASSWORD) && !yaml.contains(OINKCODE));
    let c = fetch_support::etferry(&["config", "check", "-c", site.conf().to_str().unwrap()]);
    assert_eq!(c.status.code(), Some(0), "{c:?}");

    // Point both sources at the local ET-like server, as a mirror would be, and sync.
    site.serve(SNORT, targz(&sample_files()));
    site.serve(PRO, targz(&sample_files()));
    let yaml = yaml.replace(
        "    engine: snort-2.9.0\n",
        &format!(
            "    engine: snort-2.9.0\n    base_url: \"{}\"\n",
            site.srv.base
        ),
    );
    std::fs::write(site.conf().join("etferry.yaml"), yaml).unwrap();
    let o = site.sync(&[]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(!o.all().contains(OINKCODE), "{}", o.all());
    assert_eq!(site.source_status("et-open-snort-2.9.0")["rules"], 256);
    let pro = site.source_status("et-pro-snort-2.9.0");
    assert_eq!(pro["rules"], 256);
    assert!(
        pro["last_download"]["url"]
            .as_str()
            .unwrap()
            .contains("/***/snort-2.9.0/etpro.rules.tar.gz"),
        "{pro}"
    );
    assert_eq!(site.sim_counts().get("Active"), Some(&116));
    // The oinkcode is in no file sync wrote: fetch state, reports, the store.
    for e in walkdir::WalkDir::new(site.state()) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let bytes = std::fs::read(e.path()).unwrap();
            let hit = bytes
                .windows(OINKCODE.len())
                .any(|w| w == OINKCODE.as_bytes());
            assert!(!hit, "{} holds the oinkcode", e.path().display());
        }
    }
}
