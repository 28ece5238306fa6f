//! `publish:` in etferry.yaml: the connected host also publishes signed bundles of the same
//! downloads for air-gapped sites. They verify with `etferry verify` and with the minisign
//! command, and ingest on a second store to the same counts as sync's own store.

// fetch_support and threatq_sim each load corpus_support (the one place that knows the corpus).
#![allow(clippy::duplicate_mod)]

mod fetch_support;
mod sync_support;
mod threatq_sim;

use fetch_support::{etferry, SURI};
use sync_support::*;

fn have_minisign() -> bool {
    let have = std::process::Command::new("minisign")
        .arg("-v")
        .output()
        .is_ok();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "minisign must be installed in CI"
        );
        eprintln!("SKIPPED (minisign part): minisign is not installed (apt-get install minisign)");
    }
    have
}

fn counts(v: &serde_json::Value) -> [serde_json::Value; 4] {
    [
        v["rules"].clone(),
        v["standard"].clone(),
        v["non_standard"].clone(),
        v["indicators"].clone(),
    ]
}

#[test]
fn published_bundles_verify_and_ingest_on_a_second_store_with_the_same_counts() {
    let site = SyncSite::bare();
    site.serve(SURI, targz(&sample_files()));
    let keys = site.path("keys");
    let k = etferry(&["keygen", "--out", keys.to_str().unwrap(), "--unencrypted"]);
    assert!(k.status.success(), "{k:?}");
    site.write_config(
        &site.source("suricata-5.0"),
        "publish: {spool: ../outbox, signing_key: ../keys/bundle.key}\n",
    );
    let o = site.sync(&[]);
    assert_eq!(o.code(), 0, "{}", o.all());
    let id = "et-open-suricata-5.0-00000001";
    assert!(
        o.stdout().contains(&format!("published {id}")),
        "{}",
        o.stdout()
    );
    // Upstream unchanged: a signed heartbeat, so the far side can tell "no news" from "no courier".
    let o = site.sync(&["--now"]);
    assert_eq!(o.code(), 0, "{}", o.all());
    assert!(o.stdout().contains("heartbeat published"), "{}", o.stdout());
    let bundles = [
        site.path(&format!("outbox/{id}")),
        site.path("outbox/et-open-suricata-5.0-00000002"),
    ];
    let pubkey = keys.join("bundle.pub");
    for b in &bundles {
        let v = etferry(&[
            "verify",
            "--key",
            pubkey.to_str().unwrap(),
            b.to_str().unwrap(),
        ]);
        assert_eq!(v.status.code(), Some(0), "{v:?}");
    }
    if have_minisign() {
        for b in &bundles {
            let out = std::process::Command::new("minisign")
                .current_dir(b)
                .args(["-Vm", "manifest.json", "-p"])
                .arg(&pubkey)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: {out:?}", b.display());
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(said.contains("Trusted comment: etferry-bundle/1"), "{said}");
        }
    }
    // The payload is the download byte for byte.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundles[0].join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        m["upstream"]["md5_published"],
        fetch_support::md5_hex(&site.srv.get(SURI))
    );

    // An air-gapped store takes both bundles.
    let air = site.path("air");
    std::fs::create_dir_all(&air).unwrap();
    std::fs::write(
        air.join("watch.yaml"),
        "inbox: inbox\nwork: work\ndone: done\nfailed: failed\nstore: air.db\n\
         trusted_keys: [../keys/bundle.pub]\n",
    )
    .unwrap();
    let watch = air.join("watch.yaml");
    for b in &bundles {
        let i = etferry(&["ingest", "-c", watch.to_str().unwrap(), b.to_str().unwrap()]);
        assert_eq!(i.status.code(), Some(0), "{i:?}");
    }
    let s = etferry(&["status", "--json", "-c", watch.to_str().unwrap()]);
    let air_status: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    let air_src = &air_status["sources"][0];
    assert_eq!(air_src["name"], SURI_SOURCE);
    assert_eq!(air_src["last_sequence"], 2, "{air_src}");
    let here = site.source_status(SURI_SOURCE);
    assert_eq!(counts(air_src), counts(&here), "{air_src}\n{here}");
    assert_eq!(here["rules"], 256);
}
