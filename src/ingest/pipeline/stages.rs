//! The stages after verification, shared by signed bundles, bare archives and `sync` downloads:
//! parse, diff, sanity gate, store (one transaction).

use std::path::Path;

use super::{crash_point, say, Import, Ingestor, Options, Outcome, Stop, Store};
use crate::ingest::diff::{self, Report};
use crate::ingest::{gate, payload};
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
        let j = |s: &Store, stage: &str| -> Result<(), Stop> {
            if !dry {
                s.journal(
                    id,
                    Some(&imp.source),
                    Some(imp.sequence),
                    stage,
                    "in-progress",
                    None,
                )?;
            }
            Ok(())
        };
        let p = payload::parse_payload(&files, &self.cfg.archive_limits())
            .map_err(|e| Stop::Reject(format!("{id}: {e}")))?;
        tracing::debug!("{} rules parsed", p.rules.len());
        let parse_errors = p.errors;
        let (rules, dups) = payload::dedupe(p.rules);
        j(&self.store, "parsed")?;
        crash_point("parsed");

        let old = self.store.rules_of(&imp.source)?;
        let mut d = diff::diff(&rules, &old);
        drop(old);
        d.label_removed(&self.store.rule_labels(&imp.source, &d.removed_keys)?);
        let old_inds = self.store.indicator_count(&imp.source)?;
        j(&self.store, "diffed")?;
        crash_point("diffed");

        let new_inds = p
            .indicators
            .as_ref()
            .map(|v| v.len() as u64)
            .unwrap_or(old_inds);
        let held = gate::check(
            d.before + old_inds,
            rules.len() as u64 + new_inds,
            self.cfg.sanity.max_drop_percent,
        );
        let standard = rules.iter().filter(|r| r.enabled).count() as u64;
        let mut errors = parse_errors;
        errors.extend(p.indicator_errors.iter().cloned());
        let mut report = Report {
            bundle: id.to_string(),
            source: imp.source.clone(),
            ruleset: imp.ruleset.clone(),
            sequence: imp.sequence,
            counts: d.counts,
            added: d.added,
            removed: d.removed,
            modified: d.modified,
            enabled_changed: d.enabled_changed,
            rules: rules.len() as u64,
            standard,
            non_standard: rules.len() as u64 - standard,
            indicators: new_inds,
            duplicates: dups
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
        j(&self.store, "gated")?;
        crash_point("gated");
        if self.stopping() {
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
            rules: &rules,
            removed: &d.removed_keys,
            changes: &d.changes,
            moved: &d.moved,
            payload: &files,
            indicators: p.indicators.as_deref(),
            archive: imp.archive.clone(),
            download: imp.download.clone(),
        };
        let store = &mut self.store;
        // A full ruleset's report is several MB of JSON: it is gzipped on another core while
        // the rules are written, and joined just before the commit.
        std::thread::scope(|s| {
            let gz = s.spawn(|| crate::store::gzip_json(&report));
            store.store_bundle(
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
