//! `etferry report`: the per-SID change report of one stored bundle.

use crate::cli::Global;
use crate::exit::{usage, Exit};
use crate::ingest::diff::{Entry, Report};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundle id or path (default: every bundle of the last run that stored any)
    pub bundle: Option<String>,
    /// The same as no BUNDLE: every bundle of the last run (kept for scripts)
    #[arg(long, hide = true, conflicts_with = "bundle")]
    pub last: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// At most N rules per section in the text output (the counts stay complete)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// Print the change report of a bundle, or of every bundle of the last run.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    // A watch.yaml, or the etferry.yaml of `sync`: both write the same store.
    let (_, cfg) = crate::sync::config::store_config(g.config.as_deref())?;
    let store = Store::open(&cfg.store)?;
    let rows = match &args.bundle {
        Some(b) => {
            // Accept a path too: the bundle id is its directory name.
            let id = std::path::Path::new(b)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| b.clone());
            vec![store
                .bundle(&id)?
                .ok_or_else(|| usage(format!("bundle {id} is not in the store")))?]
        }
        None => {
            let mut rows = store.last_run_reports()?;
            if rows.is_empty() {
                // A store from before runs were marked: its newest report.
                rows.extend(store.last_report()?);
            }
            if rows.is_empty() {
                println!("no bundle stored yet");
                return Ok(Exit::Ok);
            }
            rows
        }
    };
    // Buffered: a first import's report is a line per rule, tens of thousands of them (a
    // closed pipe ends the command quietly, `cli::main`).
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut reports = Vec::new();
    for row in rows {
        let Some(json) = row.report.as_deref() else {
            let why = row.reason.as_deref().unwrap_or("");
            writeln!(
                w,
                "{}",
                escape(&format!(
                    "{}: {} ({}) {why}: no change report",
                    row.id, row.status, row.stage
                ))
            )?;
            continue;
        };
        reports.push(serde_json::from_str::<Report>(json)?);
    }
    if args.json {
        // One bundle: its report object, as before; several: an array.
        match reports.as_slice() {
            [one] => serde_json::to_writer_pretty(&mut w, one)?,
            many => serde_json::to_writer_pretty(&mut w, many)?,
        };
        writeln!(w)?;
    } else {
        for (i, report) in reports.iter().enumerate() {
            if i > 0 {
                writeln!(w)?;
            }
            print_report(&mut w, report, args.limit)?;
        }
    }
    w.flush()?;
    Ok(Exit::Ok)
}

fn print_report(w: &mut impl Write, report: &Report, limit: Option<usize>) -> std::io::Result<()> {
    // Ids, file names and messages come from the medium: control characters are escaped.
    writeln!(w, "{}", escape(&report.summary()))?;
    for (title, list) in [
        ("added", &report.added),
        ("removed", &report.removed),
        ("modified", &report.modified),
        ("enabled↔disabled", &report.enabled_changed),
    ] {
        writeln!(w, "{title}: {}", list.len())?;
        let shown = limit.unwrap_or(usize::MAX).min(list.len());
        for e in &list[..shown] {
            writeln!(w, "  {}", escape(&line(e)))?;
        }
        if shown < list.len() {
            writeln!(
                w,
                "  … and {} more (etferry report {} for all)",
                list.len() - shown,
                report.bundle
            )?;
        }
    }
    Ok(())
}

use std::io::Write;

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
