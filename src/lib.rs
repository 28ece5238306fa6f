//! etferry: carries Proofpoint Emerging Threats rulesets from the internet into ThreatQ, across an
//! air gap. See ARCHITECTURE.md for the module map and the path a bundle takes.

pub mod archive;
pub mod bare;
pub mod bundle;
pub mod catalog;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod demo;
pub mod exit;
pub mod fetch;
pub mod fsutil;
pub mod human;
pub mod ingest;
pub mod owner;
pub mod payload;
pub mod progress;
pub mod rules;
pub mod safe_name;
pub mod secret;
pub mod sinks;
pub mod store;
pub mod sync;
pub mod timing;
