//! The air-gapped side: watcher, journal stages, payload reading, diff, sanity gate, pipeline.
//! Stages read in order: `watcher` → `pipeline` (copy off the medium in `medium`, verify, `payload`, `diff`, `gate`, store,
//! export).

pub mod config;
pub mod diff;
pub mod gate;
pub mod import;
pub mod inbox;
pub mod medium;
pub mod payload;
pub mod pipeline;
pub mod report_gz;
pub mod stream;
pub mod watcher;

pub use config::WatchConfig;
pub use pipeline::{Download, Ingestor, Options, Outcome};
