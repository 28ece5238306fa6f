//! `etferry report`: the per-SID change report of one stored bundle.

use crate::cli::Global;
use crate::exit::{usage, Exit};
use crate::ingest::diff::{Entry, Report};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundle id (default: the last one)
    pub bundle: Option<String>,
    /// The last ingested bundle
    #[arg(long)]
    pub last: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// At most N rules per section in the text output (the counts stay complete)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// Print the change report of a bundle (default: the last stored one).
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    // A watch.yaml, or the etferry.yaml of `sync`: both write the same store.
    let (_, cfg) = crate::sync::config::store_config(g.config.as_deref())?;
    let store = Store::open(&cfg.store)?;
    let row = match (&args.bundle, args.last) {
        (Some(_), true) => return Err(usage("give a BUNDLE or --last, not both")),
        (Some(b), false) => {
            // Accept a path too: the bundle id is its directory name.
            let id = std::path::Path::new(b)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| b.clone());
            store
                .bundle(&id)?
                .ok_or_else(|| usage(format!("bundle {id} is not in the store")))?
        }
        (None, _) => match store.last_report()? {
            Some(r) => r,
            None => {
                println!("no bundle stored yet");
                return Ok(Exit::Ok);
            }
        },
    };
    let Some(json) = row.report.as_deref() else {
        let why = row.reason.as_deref().unwrap_or("");
        println!(
            "{}",
            escape(&format!(
                "{}: {} ({}) {why}: no change report",
                row.id, row.status, row.stage
            ))
        );
        return Ok(Exit::Ok);
    };
    let report: Report = serde_json::from_str(json)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(Exit::Ok);
    }
    // Ids, file names and messages come from the medium: control characters are escaped.
    println!("{}", escape(&report.summary()));
    for (title, list) in [
        ("added", &report.added),
        ("removed", &report.removed),
        ("modified", &report.modified),
        ("enabled↔disabled", &report.enabled_changed),
    ] {
        println!("{title}: {}", list.len());
        let shown = args.limit.unwrap_or(usize::MAX).min(list.len());
        for e in &list[..shown] {
            println!("  {}", escape(&line(e)));
        }
        if shown < list.len() {
            println!(
                "  … and {} more (etferry report {} for all)",
                list.len() - shown,
                report.bundle
            );
        }
    }
    Ok(Exit::Ok)
}

use crate::safe_name::escape;

fn line(e: &Entry) -> String {
    format!(
        "{}:{}:{}  {}  [{}] {}{}",
        e.gid,
        e.sid,
        e.rev,
        if e.enabled {
            "standard    "
        } else {
            "non-standard"
        },
        e.category.as_deref().unwrap_or("-"),
        e.msg,
        format_args!("  ({})", e.file)
    )
}
