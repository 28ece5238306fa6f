//! `etferry status`: per source the last bundle, sequence, time, rule counts, pending exports and
//! held bundles; warns about a stalled courier.

use chrono::Utc;
use serde_json::json;

use crate::cli::Global;
use crate::exit::Exit;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Print the state of every source in the store.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    // A watch.yaml, or the etferry.yaml of `sync`: both write the same store.
    let (_, cfg) = crate::sync::config::store_config(g.config.as_deref())?;
    let store = Store::open(&cfg.store)?;
    let policy = cfg.export_policy();
    let sinks = cfg.sinks.names();
    let held = store.bundles_with_status("held")?;
    let now = Utc::now();
    let mut sources = Vec::new();
    let mut warnings = Vec::new();
    for s in store.sources()? {
        let (rules, standard, non_standard) = store.rule_counts(&s.name)?;
        let indicators = store.indicator_count(&s.name)?;
        let mut pending = 0usize;
        for sink in &sinks {
            pending += store
                .pending_exports(sink, &policy)?
                .iter()
                .filter(|i| i.source == s.name)
                .count();
        }
        let held_here: Vec<&str> = held
            .iter()
            .filter(|b| b.source.as_deref() == Some(s.name.as_str()))
            .map(|b| b.id.as_str())
            .collect();
        let silent = (now - s.last_seen_at).num_seconds();
        let stalled = s.lifetime_secs > 0 && silent > s.lifetime_secs;
        if stalled {
            warnings.push(format!(
                "source {}: no bundle for {} (longer than its bundle lifetime of {}): is the courier stalled?",
                s.name,
                humantime::format_duration(std::time::Duration::from_secs(silent.max(0) as u64)),
                humantime::format_duration(std::time::Duration::from_secs(s.lifetime_secs as u64))
            ));
        }
        // An auditor must see whether the source's current rules came from a signed bundle.
        let archive = store.archive_import(&s.name)?;
        let download = store.download(&s.last_bundle)?;
        let origin = match &archive {
            _ if download.is_some() => crate::ingest::diff::ORIGIN_DOWNLOAD.to_string(),
            Some(a) if a.bundle == s.last_bundle => crate::ingest::diff::ORIGIN_ARCHIVE.to_string(),
            // The last bundle's report says whether it was signed (a heartbeat has none).
            _ => store
                .bundle(&s.last_bundle)?
                .and_then(|b| b.report)
                .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok())
                .and_then(|v| v["origin"].as_str().map(str::to_string))
                .unwrap_or_else(|| crate::ingest::diff::ORIGIN_BUNDLE.to_string()),
        };
        sources.push(json!({
            "name": s.name,
            "ruleset": s.ruleset,
            "engine": s.engine,
            "last_sequence": s.last_sequence,
            "last_bundle": s.last_bundle,
            "last_bundle_at": s.last_bundle_at.to_rfc3339(),
            "last_seen_at": s.last_seen_at.to_rfc3339(),
            "origin": origin,
            "last_archive": archive.as_ref().map(|a| json!({
                "file": a.file,
                "sha256": a.sha256,
                "version_at": a.version_at.to_rfc3339(),
                "bundle": a.bundle,
            })),
            "last_download": download.as_ref().map(|d| json!({
                "url": d.url,
                "md5": d.md5,
                "downloaded_at": d.downloaded_at.to_rfc3339(),
            })),
            "rules": rules,
            "standard": standard,
            "non_standard": non_standard,
            "indicators": indicators,
            "pending_exports": pending,
            "held": held_here,
            "stalled": stalled,
        }));
    }
    // Per sink: indicators pending and why it last sent nothing on purpose (connector off).
    let mut sink_rows = Vec::new();
    for sink in &sinks {
        let indicators = match (sink.as_str(), &cfg.sinks.threatq) {
            ("threatq", Some(tq)) if tq.indicators => Some(
                store
                    .pending_indicators(sink, &cfg.indicator_policy())?
                    .len(),
            ),
            _ => None,
        };
        let note = store.sink_note(sink)?;
        sink_rows.push(json!({
            "name": sink,
            "pending_indicators": indicators,
            "paused": note.as_ref().map(|(n, _)| n),
            "paused_at": note.as_ref().map(|(_, at)| at),
        }));
    }
    // Held bundles of a source that has nothing stored yet still need to be seen.
    let orphans: Vec<&str> = held
        .iter()
        .filter(|b| {
            !sources
                .iter()
                .any(|s| Some(s["name"].as_str().unwrap_or("")) == b.source.as_deref())
        })
        .map(|b| b.id.as_str())
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "sources": sources,
                "held_without_source": orphans,
                "sinks": sink_rows,
                "warnings": warnings,
            }))?
        );
    } else {
        if sources.is_empty() {
            println!("no bundle stored yet ({})", cfg.store.display());
        }
        for s in &sources {
            println!(
                "{}  {}  seq {}  last bundle {} ({}) at {}  rules {} ({} standard, {} non-standard)  indicators {}  pending exports {}  held {}",
                s["name"].as_str().unwrap_or(""),
                s["ruleset"].as_str().unwrap_or(""),
                s["last_sequence"],
                s["last_bundle"].as_str().unwrap_or(""),
                s["origin"].as_str().unwrap_or(""),
                crate::human::time_text(s["last_bundle_at"].as_str().unwrap_or("")),
                s["rules"],
                s["standard"],
                s["non_standard"],
                s["indicators"],
                s["pending_exports"],
                s["held"].as_array().map(|a| a.len()).unwrap_or(0),
            );
        }
        for k in &sink_rows {
            if let Some(n) = k["pending_indicators"].as_u64() {
                println!(
                    "{}: indicators pending {}",
                    k["name"].as_str().unwrap_or(""),
                    n
                );
            }
            if let Some(why) = k["paused"].as_str() {
                println!(
                    "{}: PAUSED since {}: {why}; changes stay pending",
                    k["name"].as_str().unwrap_or(""),
                    crate::human::time_text(k["paused_at"].as_str().unwrap_or(""))
                );
            }
        }
        for h in &held {
            let reason = h.reason.as_deref().unwrap_or("");
            // A download of `sync` says itself how it is released (by source name).
            if reason.contains("etferry sync --approve") {
                println!("HELD {}: {reason}", h.id);
            } else {
                println!(
                    "HELD {}: {reason} (release with `etferry ingest --approve {}`)",
                    h.id, h.id
                );
            }
        }
        for w in &warnings {
            println!("WARNING {w}");
        }
    }
    Ok(Exit::Ok)
}
