//! The last stages: export to every sink (`export_pending`), move to `done/`, mark done.

use std::path::Path;

use anyhow::Context;

use super::{crash_point, remove_dir, Ingestor, Options, Outcome, Report};
use crate::exit::Exit;
use crate::fsutil;

impl Ingestor {
    /// Export, move the bundle to `done/`, and mark it done.
    pub(super) fn finish(
        &mut self,
        id: &str,
        src: &Path,
        source: Option<&str>,
        report: Option<Report>,
        opts: Options,
    ) -> anyhow::Result<Outcome> {
        let exit = self.export_pending()?;
        self.store.journal(
            id,
            None,
            None,
            "exported",
            "in-progress",
            (exit != Exit::Ok).then_some("a sink failed; the changes stay pending"),
        )?;
        crash_point("exported");
        let work = self.cfg.work.join(id);
        if work.is_dir() {
            fsutil::create_private_dir(&self.cfg.done)
                .with_context(|| format!("cannot create {}", self.cfg.done.display()))?;
            let dest = self.cfg.done.join(id);
            if dest.exists() {
                std::fs::remove_dir_all(&dest)?;
            }
            // work/ and done/ may be on different file systems.
            fsutil::move_tree(&work, &dest)?;
        }
        if opts.remove_source && src != work && src.exists() {
            remove_dir(src);
        }
        self.store.journal(id, None, None, "done", "done", None)?;
        Ok(match report {
            Some(r) => Outcome::Done(Box::new(r)),
            None => match self.store.bundle(id)?.and_then(|b| b.report) {
                Some(j) if source.is_some() => match serde_json::from_str::<Report>(&j) {
                    Ok(r) => Outcome::Done(Box::new(r)),
                    Err(_) => Outcome::AlreadyDone,
                },
                _ => Outcome::Heartbeat {
                    source: source.unwrap_or_default().to_string(),
                },
            },
        })
    }

    /// Send every pending change to every sink; failed items stay pending. `Partial` when a sink
    /// failed. A sink that takes indicators gets the pending block-list indicators right after
    /// the rules; a sink that paused on purpose (ThreatQ connector off) keeps everything pending
    /// and is not a failure.
    pub fn export_pending(&mut self) -> anyhow::Result<Exit> {
        let policy = self.cfg.export_policy();
        let ind_policy = self.cfg.indicator_policy();
        let mut exit = Exit::Ok;
        for sink in self.sinks.iter_mut() {
            let name = sink.name().to_string();
            let items = self.store.pending_exports(&name, &policy)?;
            let inds = if sink.takes_indicators() {
                self.store.pending_indicators(&name, &ind_policy)?
            } else {
                Vec::new()
            };
            let started = std::time::Instant::now();
            if items.is_empty() && inds.is_empty() && !sink.whole_store() {
                println!(
                    "{}",
                    crate::sinks::summary_line(
                        &name,
                        Some(&Default::default()),
                        0,
                        started.elapsed()
                    )
                );
                continue;
            }
            let result = sink.export(&items);
            // One line per sink and run, terminal or not: an upload is never silent. Whole-store
            // sinks (rules file, STIX) say what they wrote themselves.
            if !sink.whole_store() {
                println!(
                    "{}",
                    crate::sinks::summary_line(
                        &name,
                        result.as_ref().ok(),
                        items.len(),
                        started.elapsed()
                    )
                );
            }
            let mut paused = None;
            match result {
                Ok(outcome) => {
                    paused = outcome.paused.clone();
                    if !outcome.failed.is_empty() {
                        exit = Exit::Partial;
                        eprintln!(
                            "sink {name}: {} of {} changes failed and stay pending (first: {})",
                            outcome.failed.len(),
                            items.len(),
                            outcome.failed[0].1
                        );
                    }
                    self.store.record_export(&name, &items, &outcome)?;
                    self.exported += outcome.confirmed.len();
                }
                Err(e) => {
                    exit = Exit::Partial;
                    eprintln!(
                        "sink {name}: export failed, {} changes stay pending: {e:#}",
                        items.len()
                    );
                }
            }
            if sink.takes_indicators() {
                let started = std::time::Instant::now();
                let result = sink.export_indicators(&inds);
                if !inds.is_empty() {
                    println!(
                        "{}",
                        crate::sinks::summary_of(
                            &name,
                            "indicator",
                            result.as_ref().ok(),
                            inds.len(),
                            started.elapsed()
                        )
                    );
                }
                match result {
                    Ok(outcome) => {
                        if !outcome.failed.is_empty() {
                            exit = Exit::Partial;
                            eprintln!(
                                "sink {name}: {} of {} indicators failed and stay pending (first: {})",
                                outcome.failed.len(),
                                inds.len(),
                                outcome.failed[0].1
                            );
                        }
                        // `exported` counts rule changes (the run summary's "changes sent");
                        // indicators have their own summary line.
                        self.store.record_indicator_export(&name, &inds, &outcome)?;
                    }
                    Err(e) => {
                        exit = Exit::Partial;
                        eprintln!(
                            "sink {name}: indicator export failed, {} stay pending: {e:#}",
                            inds.len()
                        );
                    }
                }
            }
            // `status` shows why a sink sent nothing on purpose; a normal run clears it.
            self.store.set_sink_note(&name, paused.as_deref())?;
        }
        self.export_exit = self.export_exit.worst(exit);
        Ok(exit)
    }
}
