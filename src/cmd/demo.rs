//! `etferry demo`: the whole pipeline, offline, on the bundled ET sample (see `crate::demo`).

pub use crate::demo::{run, Args};
