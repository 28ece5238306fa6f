//! `etferry export rules_file|stix [--dry-run]`: rewrite the sensors' rules file or the STIX
//! bundle from the whole store on demand; `--dry-run` prints the counts without writing.

use std::path::Path;

use crate::exit::{usage, Exit};
use crate::fsutil::RunLock;
use crate::ingest::pipeline::lock_path;
use crate::ingest::WatchConfig;
use crate::sinks::rules_file::RulesFileSink;
use crate::sinks::stix::StixSink;

/// Write (or count) one file sink; a rejected `test_command` or failed reload exits 3.
pub fn run(sink: &str, dry_run: bool, cfg: &WatchConfig, path: &Path) -> anyhow::Result<Exit> {
    let missing = || usage(format!("{}: no `sinks.{sink}` configured", path.display()));
    let _lock = RunLock::acquire(&lock_path(&cfg.store))?;
    if sink == "stix" {
        let sx = cfg.sinks.stix.as_ref().ok_or_else(missing)?;
        let c = StixSink::new(sx, &cfg.export_policy())?.write(dry_run)?;
        println!(
            "stix{}: {} rule indicators, {} address indicators, {} revoked, {} changed; {}",
            if dry_run { " (dry run)" } else { "" },
            c.rule_indicators,
            c.address_indicators,
            c.revoked,
            c.changed,
            if c.written {
                format!("wrote {}", sx.path.display())
            } else {
                format!("{} unchanged", sx.path.display())
            }
        );
        return Ok(Exit::Ok);
    }
    let rf = cfg.sinks.rules_file.as_ref().ok_or_else(missing)?;
    let s = RulesFileSink::new(rf)?;
    let counts = if dry_run {
        s.build()?.0.counts
    } else {
        match s.write(true) {
            Ok(w) => w.counts,
            Err(e) => {
                eprintln!("rules_file: {e:#}");
                return Ok(Exit::Partial);
            }
        }
    };
    let p = counts.by_policy;
    println!(
        "rules_file{}: {} rules from {} files: {} enabled, {} disabled; by policy: {} disabled, {} enabled, {} dropped, {} modified; {} enabled by flowbits; {} files ignored, {} lines skipped{}",
        if dry_run { " (dry run)" } else { "" },
        counts.total,
        counts.rules_files,
        counts.enabled,
        counts.disabled,
        p.disabled,
        p.enabled,
        p.dropped,
        p.modified,
        counts.by_flowbits,
        counts.ignored_files,
        counts.skipped_lines,
        if dry_run {
            String::new()
        } else {
            format!("; wrote {}", rf.path.display())
        }
    );
    Ok(Exit::Ok)
}
