//! One module per subcommand: its arguments and a short `run` that calls into the library.

pub mod completions;
pub mod config;
pub mod demo;
pub mod export;
pub mod export_files;
pub mod fetch;
pub mod ingest;
pub mod init;
pub mod init_connected;
pub mod keygen;
pub mod parse;
pub mod report;
pub mod rules;
pub mod sequence;
pub mod sign;
pub mod status;
pub mod sync;
pub mod verify;
pub mod watch;
