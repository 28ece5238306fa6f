//! `etferry demo`: the whole pipeline offline on the ET sample embedded in the binary.
//!
//! A local mirror on 127.0.0.1 serves the sample the way rules.emergingthreats.net lays it out;
//! the real `fetch` publishes a signed bundle with a throwaway key; the bundle is carried to the
//! inbox; the real `ingest` verifies, parses, diffs and stores it; then the change report and
//! `status` are printed. A second run finds upstream unchanged and carries a heartbeat.

mod mirror;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::Global;
use crate::exit::Exit;

/// The embedded sample: ET Open, Suricata 5.0 flavour, 2024-04-21 (see tests/fixtures/README.md).
const SAMPLE: &[(&str, &[u8])] = &[
    (
        "rules/BSD-License.txt",
        include_bytes!("../../tests/fixtures/et-open-sample/rules/BSD-License.txt"),
    ),
    (
        "rules/LICENSE",
        include_bytes!("../../tests/fixtures/et-open-sample/rules/LICENSE"),
    ),
    (
        "rules/classification.config",
        include_bytes!("../../tests/fixtures/et-open-sample/rules/classification.config"),
    ),
    (
        "rules/dshield.rules",
        include_bytes!("../../tests/fixtures/et-open-sample/rules/dshield.rules"),
    ),
    (
        "rules/emerging-chat.rules",
        include_bytes!("../../tests/fixtures/et-open-sample/rules/emerging-chat.rules"),
    ),
    (
        "rules/emerging-games.rules",
        include_bytes!("../../tests/fixtures/et-open-sample/rules/emerging-games.rules"),
    ),
    (
        "rules/emerging-icmp.rules",
        include_bytes!("../../tests/fixtures/et-open-sample/rules/emerging-icmp.rules"),
    ),
    (
        "rules/emerging-voip.rules",
        include_bytes!("../../tests/fixtures/et-open-sample/rules/emerging-voip.rules"),
    ),
    (
        "rules/emerging-worm.rules",
        include_bytes!("../../tests/fixtures/et-open-sample/rules/emerging-worm.rules"),
    ),
    (
        "rules/suricata-5.0-enhanced-open.txt",
        include_bytes!("../../tests/fixtures/et-open-sample/rules/suricata-5.0-enhanced-open.txt"),
    ),
];

/// The sample's publication date, used as every member's mtime so the archive is byte-identical on
/// every run (and the second run is "unchanged").
const SAMPLE_MTIME: u64 = 1_713_657_600; // 2024-04-21T00:00:00Z
const ENGINE: &str = "suricata-5.0";

/// The sample as `emerging.rules.tar.gz`, built deterministically.
pub fn sample_archive() -> anyhow::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_mtime(SAMPLE_MTIME);
    dir.set_size(0);
    tar.append_data(&mut dir, "rules/", std::io::empty())?;
    for (path, data) in SAMPLE {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(SAMPLE_MTIME);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, path, *data)?;
    }
    Ok(tar.into_inner()?.finish()?)
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the demo's spool, keys, configs and store (default: spool/ when run from the
    /// repository, else ./etferry-demo)
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Run fetch → carry → ingest → report → status on the embedded sample.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    let dir = match args.dir {
        Some(d) => d,
        None if Path::new("spool/outbox").is_dir() => PathBuf::from("spool"),
        None => PathBuf::from("etferry-demo"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir)?;
    let keys = dir.join("demo-keys");
    let conf = dir.join("demo-config");
    std::fs::create_dir_all(&conf)?;

    println!(
        "== etferry demo (offline; everything under {})",
        dir.display()
    );
    if !keys.join("bundle.key").exists() {
        crate::bundle::keygen(&keys, None)?;
        println!("created a throwaway signing key in {}", keys.display());
    }

    // 1. A local mirror of rules.emergingthreats.net with the embedded sample.
    let archive = sample_archive()?;
    let md5 = {
        use md5::Digest;
        hex::encode(md5::Md5::digest(&archive))
    };
    let mut files = BTreeMap::new();
    let base = format!("open/{ENGINE}");
    files.insert(
        format!("{base}/emerging.rules.tar.gz.md5"),
        format!("{md5}\n").into_bytes(),
    );
    files.insert(format!("{base}/version.txt"), b"10800\n".to_vec());
    files.insert(format!("{base}/emerging.rules.tar.gz"), archive);
    let mirror = mirror::Mirror::start(files)?;
    println!(
        "serving the bundled ET Open sample at {}{base}/",
        mirror.base_url()
    );

    // 2. fetch (DMZ side) into spool/outbox.
    let fetch_yaml = conf.join("fetch.yaml");
    write_config(
        &fetch_yaml,
        &format!(
            "# Written by `etferry demo`.\nspool: ../outbox\nstate: ../fetch-state\n\
             signing_key: ../demo-keys/bundle.key\nbundle_lifetime: 14d\nkeep_bundles: 5\n\
             min_interval: 15m\nheartbeat: true\nhttp:\n  retries: 1\n  connect_timeout: 5s\n\
             sources:\n  - ruleset: et-open\n    engine: {ENGINE}\n    base_url: {}\n",
            mirror.base_url()
        ),
    )?;
    let outbox = dir.join("outbox");
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox)?;
    let before = bundle_names(&outbox);
    println!("\n== 1. fetch (DMZ side)");
    let report = crate::fetch::run_config(&fetch_yaml, crate::fetch::RunOptions { now: true })?;
    print!("{}", report.summary());
    if report.failed > 0 {
        anyhow::bail!("the demo fetch failed; see the messages above");
    }

    // 3. carry the new bundle(s) across the "air gap".
    println!("\n== 2. carry {} → {}", outbox.display(), inbox.display());
    let mut carried = Vec::new();
    for name in bundle_names(&outbox) {
        if before.contains(&name) {
            continue;
        }
        crate::ingest::medium::copy_bundle(&outbox.join(&name), &inbox.join(&name), u64::MAX)?;
        println!("copied {name}");
        carried.push(inbox.join(&name));
    }
    println!(
        "(the mirror served {} bytes in this run)",
        mirror.bytes_served()
    );
    drop(mirror);

    // 4. ingest (air-gapped side) into the embedded store.
    let watch_yaml = conf.join("watch.yaml");
    write_config(
        &watch_yaml,
        "# Written by `etferry demo`.\ninbox: ../inbox\nwork: ../work\ndone: ../done\nfailed: ../failed\n\
         store: ../etferry.db\ntrusted_keys: [../demo-keys/bundle.pub]\nrequire_signature: true\n\
         rulesets: [et-open]\ninclude_non_standard: false\nstandard_status: Active\n\
         non_standard_status: Inactive\nremoved_status: Expired\nsinks: {}\n",
    )?;
    let watch_global = Global {
        config: Some(watch_yaml.clone()),
        ..g.clone()
    };
    println!("\n== 3. ingest (air-gapped side)");
    let mut exit = Exit::Ok;
    if carried.is_empty() {
        println!("nothing new to carry");
    } else {
        exit = crate::cmd::ingest::run(
            crate::cmd::ingest::Args {
                approve: false,
                dry_run: false,
                bundles: carried,
            },
            &watch_global,
        )?;
    }

    println!("\n== 4. change report");
    if report.new_bundles == 0 {
        // Upstream unchanged: the heartbeat told the far side so; nothing changed in the store.
        println!("upstream unchanged: added 0, removed 0, modified 0, enabled↔disabled 0");
    } else {
        crate::cmd::report::run(
            crate::cmd::report::Args {
                bundle: None,
                last: true,
                json: false,
                limit: Some(5),
            },
            &watch_global,
        )?;
    }
    println!("\n== 5. status");
    crate::cmd::status::run(crate::cmd::status::Args { json: false }, &watch_global)?;

    println!("\n== where everything is");
    for (what, p) in [
        ("signed bundles (DMZ outbox)", outbox),
        ("carried bundles (inbox)", inbox),
        ("ingested bundles", dir.join("done")),
        ("embedded store (SQLite)", dir.join("etferry.db")),
        ("configs used", conf),
        ("throwaway key pair", keys),
        ("fetch run reports", dir.join("fetch-state")),
    ] {
        println!("  {what:30} {}", p.display());
    }
    println!(
        "Try: etferry -c {} rules --grep DSHIELD   |   run `etferry demo` again to see an unchanged day",
        watch_yaml.display()
    );
    std::io::stdout().flush()?;
    Ok(exit)
}

fn write_config(path: &Path, text: &str) -> anyhow::Result<()> {
    crate::fsutil::atomic_write(path, text.as_bytes())
}

fn bundle_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(crate::bundle::SIGNATURE).exists())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}
