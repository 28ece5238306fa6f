//! `etferry export threatq [--resend-all] [--dry-run]`: send what the store says is pending for
//! ThreatQ (e.g. after ThreatQ was down), or everything again for a new instance.
//! `etferry export rules_file|stix [--dry-run]`: rewrite that file from the whole store now.

use crate::cli::Global;
use crate::exit::{usage, Exit};
use crate::fsutil::RunLock;
use crate::ingest::pipeline::lock_path;
use crate::sinks::threatq::{plan, ThreatQSink};
use crate::sinks::Sink;
use crate::store::Store;
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sink name (threatq, rules_file, stix)
    pub sink: String,
    /// Send everything again (a new ThreatQ instance)
    #[arg(long)]
    pub resend_all: bool,
    /// Show what would be sent, without sending
    #[arg(long)]
    pub dry_run: bool,
}

/// Send the pending changes to ThreatQ; exit 3 when some stay pending.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    if !["threatq", "rules_file", "stix"].contains(&args.sink.as_str()) {
        return Err(usage(format!(
            "unknown sink {:?}; sinks that can be exported: threatq, rules_file, stix",
            args.sink
        )));
    }
    // A watch.yaml, or the etferry.yaml of `sync`: both write the same store.
    let (path, cfg) = crate::sync::config::store_config(g.config.as_deref())?;
    if args.sink != "threatq" {
        return super::export_files::run(&args.sink, args.dry_run, &cfg, &path);
    }
    let Some(tq) = cfg.sinks.threatq.clone() else {
        return Err(usage(format!(
            "{}: no `sinks.threatq` configured",
            path.display()
        )));
    };
    let _lock = RunLock::acquire(&lock_path(&cfg.store))?;
    let mut store = Store::open(&cfg.store)?;
    let policy = cfg.export_policy();

    let ind_policy = cfg.indicator_policy();
    if args.dry_run {
        let (items, inds) = if args.resend_all {
            // Every rule and indicator as a new instance would get them: pretend nothing was
            // confirmed.
            let tx = store.conn().unchecked_transaction()?;
            tx.execute("DELETE FROM exports WHERE sink = ?1", ["threatq"])?;
            store.forget_indicator_exports("threatq")?;
            let items = store.pending_exports("threatq", &policy)?;
            let inds = store.pending_indicators("threatq", &ind_policy)?;
            tx.rollback()?;
            (items, inds)
        } else {
            (
                store.pending_exports("threatq", &policy)?,
                store.pending_indicators("threatq", &ind_policy)?,
            )
        };
        print_plan(&tq, &items);
        if tq.indicators {
            print_indicator_plan(&tq, &inds);
        }
        return Ok(Exit::Ok);
    }

    // WatchConfig::load made the sink's paths absolute: resolve nothing a second time.
    let mut sink = ThreatQSink::connect(&tq, Path::new("."))?;
    sink.require_statuses(&policy.statuses_in_use())?;
    if args.resend_all {
        // Forget what this instance confirmed; every current rule and indicator becomes pending
        // again.
        store
            .conn()
            .execute("DELETE FROM exports WHERE sink = ?1", ["threatq"])?;
        store.forget_indicator_exports("threatq")?;
    }
    let items = store.pending_exports("threatq", &policy)?;
    let inds = if sink.takes_indicators() {
        store.pending_indicators("threatq", &ind_policy)?
    } else {
        Vec::new()
    };
    let started = std::time::Instant::now();
    // Always called: it reads the connector's toggle, and indicators follow in the same run.
    let out = sink.export(&items)?;
    store.record_export(sink.name(), &items, &out)?;
    println!(
        "{}",
        crate::sinks::summary_line(sink.name(), Some(&out), items.len(), started.elapsed())
    );
    let mut failed: Vec<String> = out.failed.iter().map(|(_, w)| w.clone()).collect();
    let mut paused = out.paused.clone();
    if sink.takes_indicators() {
        let started = std::time::Instant::now();
        let ind_out = sink.export_indicators(&inds)?;
        store.record_indicator_export(sink.name(), &inds, &ind_out)?;
        if !inds.is_empty() {
            println!(
                "{}",
                crate::sinks::summary_of(
                    sink.name(),
                    "indicator",
                    Some(&ind_out),
                    inds.len(),
                    started.elapsed()
                )
            );
        }
        failed.extend(ind_out.failed.iter().map(|(_, w)| w.clone()));
        paused = paused.or(ind_out.paused);
    }
    store.set_sink_note(sink.name(), paused.as_deref())?;
    for why in failed.iter().take(10) {
        println!("  failed: {why}");
    }
    if failed.len() > 10 {
        println!("  … {} more", failed.len() - 10);
    }
    Ok(if failed.is_empty() {
        Exit::Ok
    } else {
        Exit::Partial
    })
}

/// The dry-run summary of indicators: what would go to ThreatQ.
pub fn print_indicator_plan(
    cfg: &crate::sinks::threatq::ThreatQConfig,
    inds: &[crate::sinks::IndicatorItem],
) {
    let removed = inds.iter().filter(|i| i.removed).count();
    println!(
        "threatq (dry run): {} indicators would be sent in {} requests ({} new or changed, {removed} left every list)",
        inds.len(),
        inds.len().div_ceil(cfg.batch_size.max(1)),
        inds.len() - removed
    );
}

/// The dry-run summary: what would go to ThreatQ.
pub fn print_plan(cfg: &crate::sinks::threatq::ThreatQConfig, items: &[crate::sinks::ExportItem]) {
    let p = plan(cfg, items);
    println!(
        "threatq (dry run): {} changes would be sent as {} signatures in {} requests to {}",
        items.len(),
        p.signatures,
        p.requests,
        cfg.host
    );
    for (status, n) in &p.by_status {
        println!("  {n} with status {status}");
    }
    if p.removed > 0 {
        println!("  {} of them removed upstream", p.removed);
    }
    if p.changed > 0 {
        println!(
            "  {} changed rules whose stale attributes would be replaced",
            p.changed
        );
    }
}

/// `ingest --dry-run`: what this bundle's changes would send to ThreatQ (removed rules count
/// only if ThreatQ had them, so this is an upper bound for them).
pub fn print_dry_run_bundle(
    cfg: &crate::sinks::threatq::ThreatQConfig,
    policy: &crate::store::ExportPolicy,
    r: &crate::ingest::diff::Report,
) {
    let mut by_status: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut n = 0usize;
    let mut supersede = 0usize;
    for (list, modified) in [
        (&r.added, false),
        (&r.modified, true),
        (&r.enabled_changed, false),
    ] {
        for e in list.iter() {
            if e.enabled || policy.include_non_standard {
                *by_status
                    .entry(policy.status_for(e.enabled, false))
                    .or_default() += 1;
                n += 1;
                if modified && cfg.rev_change == crate::sinks::threatq::RevChange::NewSignature {
                    supersede += 1;
                }
            }
        }
    }
    for _ in &r.removed {
        *by_status.entry(policy.removed_status.as_str()).or_default() += 1;
        n += 1;
    }
    let sigs = n + supersede;
    println!(
        "threatq (dry run): {n} changes would be sent as {sigs} signatures in {} requests to {}",
        sigs.div_ceil(cfg.batch_size.max(1)),
        cfg.host
    );
    for (status, k) in by_status {
        println!("  {k} with status {status}");
    }
    if cfg.indicators && r.indicators > 0 {
        // The indicator delta needs the stored lists of every source; after storing,
        // `etferry export threatq --dry-run` shows it exactly.
        println!(
            "  its IP lists hold {} indicators; only those new to ThreatQ or gone from every list are sent",
            r.indicators
        );
    }
}
