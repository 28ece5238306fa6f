//! `etferry watch`: the air-gapped service; takes bundles from the inbox until SIGTERM.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::cli::Global;
use crate::exit::Exit;
use crate::ingest::WatchConfig;

#[derive(Debug, clap::Args)]
pub struct Args {}

/// Watch the inbox; SIGTERM or SIGINT finishes or abandons the current stage and exits 0.
pub fn run(_args: Args, g: &Global) -> anyhow::Result<Exit> {
    let path = crate::config::locate(g.config.as_deref(), "watch.yaml")?;
    let cfg = WatchConfig::load(&path)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    crate::ingest::watcher::watch(cfg, stop)
}
