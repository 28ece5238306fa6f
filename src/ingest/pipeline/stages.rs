//! The stages after verification, shared by signed bundles, bare archives and `sync` downloads:
//! parse, diff, sanity gate, store, all in one transaction whose rule rows are written while the
//! payload is still being parsed ([`crate::ingest::import`]).

use std::path::Path;

use std::sync::atomic::Ordering;

use super::{crash_point, say, Import, Ingestor, Options, Outcome, Stop};
use crate::ingest::diff::{self, Report};
use crate::ingest::{gate, import};
use crate::store::StoreBatch;

impl Ingestor {
    /// The stages after verification, shared by signed bundles and bare archives: archive limits,
    /// parse, diff, sanity gate, store (one transaction), export, done.
    pub(super) fn import_payload(
        &mut self,
        id: &str,
        src: &Path,
        imp: &Import,
        files: Vec<(String, Vec<u8>)>,
        opts: Options,
    ) -> Result<Outcome, Stop> {
        let dry = opts.dry_run;
        let limits = self.cfg.archive_limits();
        let old_inds = self.store.indicator_count(&imp.source)?;
        let (max_drop, stop) = (self.cfg.sanity.max_drop_percent, self.stop.clone());
        let fail = |e: import::Failed| match e {
            import::Failed::Payload(why) => Stop::Reject(format!("{id}: {why}")),
            import::Failed::Store(e) => Stop::Fault(e),
        };
        // One transaction from the first row written to the commit: a crash, a hold, a
        // rejection or a dry run leaves the store as it was.
        let mut tx = self.store.begin_bundle(&imp.source, id, dry)?;
        let s = match import::stream(&tx, &imp.source, &files, &limits).map_err(fail)? {
            Some(s) => s,
            None => {
                // A (gid, sid) came twice: deduplicate the whole payload first.
                drop(tx);
                tx = self.store.begin_bundle(&imp.source, id, dry)?;
                import::deduplicated(&tx, &imp.source, &files, &limits).map_err(fail)?
            }
        };
        tracing::debug!("{} rules parsed", s.diff.rules);
        tx.journal("parsed", imp.sequence)?;
        crash_point("parsed");

        let mut d = s.diff;
        d.label_removed(&crate::store::labels_in(
            tx.conn(),
            &imp.source,
            &d.removed_keys,
        )?);
        tx.journal("diffed", imp.sequence)?;
        crash_point("diffed");

        let new_inds = s
            .indicators
            .as_ref()
            .map(|v| v.len() as u64)
            .unwrap_or(old_inds);
        let held = gate::check(d.before + old_inds, d.rules + new_inds, max_drop);
        let mut errors = s.errors;
        errors.extend(s.indicator_errors.iter().cloned());
        let mut report = Report {
            bundle: id.to_string(),
            source: imp.source.clone(),
            ruleset: imp.ruleset.clone(),
            sequence: imp.sequence,
            counts: d.counts,
            added: std::mem::take(&mut d.added),
            removed: std::mem::take(&mut d.removed),
            modified: std::mem::take(&mut d.modified),
            enabled_changed: std::mem::take(&mut d.enabled_changed),
            rules: d.rules,
            standard: d.standard,
            non_standard: d.rules - d.standard,
            indicators: new_inds,
            duplicates: s
                .duplicates
                .iter()
                .map(|r| diff::Entry {
                    gid: r.gid,
                    sid: r.sid,
                    rev: r.rev,
                    msg: r.msg.clone(),
                    file: format!("{}:{}", r.file, r.line).into(),
                    category: r.category.clone(),
                    enabled: r.enabled,
                    previous_rev: None,
                })
                .collect(),
            errors,
            outcome: "stored".into(),
            held_reason: None,
            origin: imp.origin.to_string(),
            download: imp.download.clone(),
        };
        if dry {
            report.outcome = "dry-run".into();
            report.held_reason = held;
            return Ok(Outcome::DryRun(Box::new(report)));
        }
        // A download of `sync` is released by source name, not by a bundle path.
        let held = match (held, &imp.download) {
            (Some(r), Some(_)) => Some(r.replace(
                "etferry ingest --approve BUNDLE",
                &format!("etferry sync --approve {}", imp.source),
            )),
            (h, _) => h,
        };
        if let Some(reason) = held {
            if !opts.approve {
                drop(tx);
                let reason = format!("{id}: held by the sanity gate: {reason}");
                self.store
                    .journal(
                        id,
                        Some(&imp.source),
                        Some(imp.sequence),
                        "gated",
                        "held",
                        Some(&reason),
                    )
                    .map_err(Stop::from)?;
                return Err(Stop::Hold(reason));
            }
            say(&format!("{id}: approved by the operator: {reason}"));
        }
        tx.journal("gated", imp.sequence)?;
        crash_point("gated");
        if stop.load(Ordering::SeqCst) {
            return Err(Stop::Abandon);
        }

        let batch = StoreBatch {
            bundle: id,
            source: &imp.source,
            ruleset: &imp.ruleset,
            engine: imp.engine.as_deref(),
            sequence: imp.sequence,
            created_at: imp.created_at,
            lifetime_secs: imp.lifetime,
            removed: &d.removed_keys,
            history: &d.history,
            replaced: &d.replaced,
            indicators: s.indicators.as_deref(),
            archive: imp.archive.clone(),
            download: imp.download.clone(),
        };
        // The report's `added` list was gzipped as the rules came (`d.report_gz`); the rest
        // is added on another core while the rest of the bundle is written, and joined just
        // before the commit.
        let streamed = d.report_gz.take();
        std::thread::scope(|sc| {
            let gz = sc.spawn(|| match streamed {
                Some(gz) => gz.finish(&report),
                None => crate::timing::timed(crate::timing::Activity::Report, || {
                    crate::store::gzip_json(&report)
                }),
            });
            tx.commit(
                &batch,
                || {
                    gz.join()
                        .map_err(|_| anyhow::anyhow!("the report thread panicked"))?
                },
                || crash_point("storing"),
            )
        })
        .map_err(|e| Stop::Fault(e.context(format!("{id}: storing failed, nothing stored"))))?;
        crash_point("stored");
        self.finish(id, src, Some(&imp.source), Some(report), opts)
            .map_err(Stop::from)
    }
}
