//! `etferry sequence reset SOURCE --to N`: the operator's recovery when a source's last accepted
//! sequence was pushed too far (a bundle approved past `max_sequence_jump` by mistake, a DMZ
//! whose fetch state was reset): every later bundle would be refused as a replay until the
//! sequence is set back.

use crate::cli::Global;
use crate::exit::{usage, Exit};
use crate::fsutil::RunLock;
use crate::ingest::pipeline::lock_path;
use crate::ingest::WatchConfig;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Set SOURCE's last accepted sequence to N; the next bundle must be above N
    Reset {
        /// Source name, as `etferry status` shows it
        source: String,
        /// The sequence to go back to (the last one the DMZ really published, or 0)
        #[arg(long, value_name = "N")]
        to: u64,
    },
}

/// Change a source's last accepted sequence, under the same lock as `ingest` and `watch`.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    let Action::Reset { source, to } = args.action;
    let path = crate::config::locate(g.config.as_deref(), "watch.yaml")?;
    let cfg = WatchConfig::load(&path)?;
    let _lock = RunLock::acquire(&lock_path(&cfg.store))?;
    let store = Store::open(&cfg.store)?;
    match store.set_last_sequence(&source, to)? {
        Some(before) => {
            println!(
                "source {source}: last accepted sequence {before} → {to}; the next bundle must have a sequence above {to}"
            );
            Ok(Exit::Ok)
        }
        None => Err(usage(format!(
            "no source {:?} in the store {} (etferry status lists them)",
            crate::config::clip(&source),
            cfg.store.display()
        ))),
    }
}
