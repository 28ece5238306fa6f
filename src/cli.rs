//! Command-line interface: the clap definition, logging set-up, and the one place where an
//! outcome becomes an exit code. Each subcommand lives in `cmd/<name>.rs`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cmd;
use crate::exit::{exit_for, Exit};

/// Carry Emerging Threats IDS rulesets across an air gap into ThreatQ.
#[derive(Debug, Parser)]
#[command(name = "etferry", version, about, propagate_version = true, after_help = WORKFLOW)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Config file, or a directory holding fetch.yaml / watch.yaml / etferry.yaml (default: $ETFERRY_CONFIG, else ./config if it exists, else /etc/etferry)
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE|DIR")]
    pub config: Option<PathBuf>,
    /// Also write logs to a daily-rotated file in DIR (the original connector's -ll DIR works too)
    #[arg(long, global = true, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// How many rotated log files to keep
    #[arg(long, global = true, default_value_t = 14, value_name = "N")]
    pub log_keep: usize,
    /// More detail in logs: -v info, -vv debug, -vvv trace (the original's -v3 / -v 3 work too)
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log line format
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Boxing the big variants would only add noise: the enum is built once per process.
// Listed in the order of the workflow, grouped by the host each runs on; every line names it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connected: download, check, store and send to ThreatQ in one run, from etferry.yaml (timer or cron)
    Sync(cmd::sync::Args),
    /// DMZ: mirror the configured ET rulesets into signed bundles in the outbox (timer or cron)
    Fetch(cmd::fetch::Args),
    /// DMZ: create the minisign key pair that signs bundles
    Keygen(cmd::keygen::Args),
    /// DMZ: sign files (e.g. a release's SHA256SUMS) with the bundle key: FILE.minisig
    Sign(cmd::sign::Args),
    /// Air-gapped: watch the inbox and ingest bundles as they arrive (the service)
    Watch(cmd::watch::Args),
    /// Air-gapped: verify, parse, diff, store and send bundles, archives or folders of them once (no path: the inbox)
    Ingest(cmd::ingest::Args),
    /// Air-gapped: per-source state of the embedded store
    Status(cmd::status::Args),
    /// Air-gapped: the per-SID change report of the last run's bundles, or of one bundle
    Report(cmd::report::Args),
    /// Air-gapped: query the rules in the embedded store
    Rules(cmd::rules::Args),
    /// Air-gapped: send pending changes to a sink (e.g. after ThreatQ was down)
    Export(cmd::export::Args),
    /// Air-gapped: recover a source whose sequence was pushed too far (`sequence reset SOURCE --to N`)
    Sequence(cmd::sequence::Args),
    /// Both: write the configs of this host interactively (or from flags and piped answers)
    Init(cmd::init::Args),
    /// Both: check configuration files (--online: ThreatQ login, upstream URLs)
    Config(cmd::config::Args),
    /// Both: check bundles (signature, manifest, sizes, sha256, expiry, e.g. on the medium) or signed files (FILE.minisig)
    Verify(cmd::verify::Args),
    /// Any host: parse rule files, directories or archives and summarise them
    Parse(cmd::parse::Args),
    /// Any host: run the whole pipeline offline on the bundled ET sample
    Demo(cmd::demo::Args),
    /// Print shell completions
    Completions(cmd::completions::Args),
    /// Print the man page
    Man(cmd::completions::ManArgs),
}

/// The workflow, shown after the command list of `etferry --help`.
pub const WORKFLOW: &str = "\
Workflow (docs/deployment.md, docs/connected-host.md):
  connected ThreatQ host (reaches the internet):
    etferry init                  answer yes: etferry.yaml and its secrets in /etc/etferry
    etferry sync                  every 4 h (etferry-sync.timer): download, store, send to ThreatQ
  DMZ host:
    etferry init --role fetch     fetch.yaml, signing key, oinkcode in /etc/etferry
    etferry fetch                 every 4 h (etferry-fetch.timer) into /var/lib/etferry/outbox
    scripts/carry.sh /media/usb   new bundles onto the medium, verified there
  air-gapped host:
    etferry init                  answer no: watch.yaml and the ThreatQ password in /etc/etferry
    etferry watch                 the service (etferry-watch.service); cron: etferry ingest
    etferry ingest DIR            a medium's folder (e.g. /media/usb/etferry), once
    etferry status | report | rules | export threatq
Config: -c FILE|DIR, else $ETFERRY_CONFIG, else ./config if it exists, else /etc/etferry.";

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(original_flags(std::env::args_os()));
    if let Some(dir) = &cli.global.log_dir {
        // A missing log directory is created; one that cannot be is a usage error naming it.
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!(
                "etferry: error: --log-dir {}: cannot create the directory: {e}",
                crate::safe_name::path(dir)
            );
            return ExitCode::from(Exit::Usage.code());
        }
    }
    crate::progress::enable_for_this_process(cli.global.log_format == LogFormat::Json);
    let _guard = init_logging(&cli.global);
    let result = run(cli);
    crate::timing::mark("command returned");
    let exit = match result {
        Ok(exit) => exit,
        Err(err) => {
            if is_broken_pipe(&err) {
                // `etferry rules | head` is a normal way to end.
                Exit::Ok
            } else {
                // Errors may carry names from the medium: control characters are escaped.
                eprintln!(
                    "etferry: error: {}",
                    crate::safe_name::escape(&format!("{err:#}"))
                );
                exit_for(&err)
            }
        }
    };
    ExitCode::from(exit.code())
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    let g = &cli.global;
    match cli.command {
        Command::Sync(a) => cmd::sync::run(a, g),
        Command::Parse(a) => cmd::parse::run(a, g),
        Command::Fetch(a) => cmd::fetch::run(a, g),
        Command::Keygen(a) => cmd::keygen::run(a, g),
        Command::Verify(a) => cmd::verify::run(a, g),
        Command::Sign(a) => cmd::sign::run(a, g),
        Command::Ingest(a) => cmd::ingest::run(a, g),
        Command::Watch(a) => cmd::watch::run(a, g),
        Command::Status(a) => cmd::status::run(a, g),
        Command::Report(a) => cmd::report::run(a, g),
        Command::Rules(a) => cmd::rules::run(a, g),
        Command::Export(a) => cmd::export::run(a, g),
        Command::Sequence(a) => cmd::sequence::run(a, g),
        Command::Init(a) => cmd::init::run(a, g),
        Command::Config(a) => cmd::config::run(a, g),
        Command::Demo(a) => cmd::demo::run(a, g),
        Command::Completions(a) => cmd::completions::run(a, g),
        Command::Man(a) => cmd::completions::run_man(a, g),
    }
}

/// The original connector's command line (`-c DIR -ll DIR -v3`), so its cron line works with
/// only the program name changed: `-ll DIR` / `-ll=DIR` become `--log-dir DIR`, and `-vN` or
/// `-v N` (N a digit) become `-v` N times. Everything after `--` is left alone.
pub fn original_flags<I: IntoIterator<Item = std::ffi::OsString>>(
    args: I,
) -> Vec<std::ffi::OsString> {
    let verbose = |n: &str| -> Option<Option<std::ffi::OsString>> {
        let n: u8 = (n.len() == 1).then(|| n.parse().ok()).flatten()?;
        Some((n > 0).then(|| format!("-{}", "v".repeat(n as usize)).into()))
    };
    let mut out = Vec::new();
    let mut it = args.into_iter().peekable();
    let mut rest = false;
    while let Some(a) = it.next() {
        let s = a.to_str().unwrap_or("");
        if rest || out.is_empty() {
            out.push(a);
            continue;
        }
        if s == "--" {
            rest = true;
            out.push(a);
        } else if s == "-ll" {
            out.push("--log-dir".into());
        } else if let Some(dir) = s.strip_prefix("-ll=") {
            out.push(format!("--log-dir={dir}").into());
        } else if let Some(v) = s.strip_prefix("-v").and_then(verbose) {
            out.extend(v);
        } else if s == "-v" {
            match it.peek().and_then(|n| n.to_str()).and_then(verbose) {
                Some(v) => {
                    it.next();
                    out.extend(v);
                }
                None => out.push(a),
            }
        } else {
            out.push(a);
        }
    }
    out
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs go to stderr (stdout is for reports and JSON), and optionally to a rotated file.
fn init_logging(g: &Global) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{fmt, EnvFilter};

    let level = match g.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("ETFERRY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("etferry={level},warn")));
    let ansi = std::io::stderr().is_terminal();
    let json = g.log_format == LogFormat::Json;

    let stderr_layer = if json {
        fmt::layer().json().with_writer(std::io::stderr).boxed()
    } else {
        // Through the progress module, so a log line does not tear a progress bar.
        fmt::layer()
            .with_ansi(ansi)
            .with_target(false)
            .with_writer(crate::progress::StderrWriter)
            .boxed()
    };

    let (file_layer, guard) = match &g.log_dir {
        Some(dir) => match tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("etferry")
            .filename_suffix("log")
            .max_log_files(g.log_keep.max(1))
            .build(dir)
        {
            Ok(appender) => {
                let (w, guard) = tracing_appender::non_blocking(appender);
                let layer = if json {
                    fmt::layer().json().with_writer(w).boxed()
                } else {
                    fmt::layer().with_ansi(false).with_writer(w).boxed()
                };
                (Some(layer), Some(guard))
            }
            Err(e) => {
                eprintln!(
                    "etferry: warning: cannot log to {}: {e}; logging to stderr only",
                    dir.display()
                );
                (None, None)
            }
        },
        None => (None, None),
    };

    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(line: &str) -> String {
        let v: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
        original_flags(v)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_original_connectors_flags_are_understood() {
        let table = [
            (
                "etferry sync -c /etc/x -ll /var/log/x -v3",
                "etferry sync -c /etc/x --log-dir /var/log/x -vvv",
            ),
            ("etferry sync -v 3", "etferry sync -vvv"),
            ("etferry sync -v 1 -ll=/l", "etferry sync -v --log-dir=/l"),
            ("etferry -v0 sync", "etferry sync"),
            ("etferry sync -v -vv", "etferry sync -v -vv"),
            ("etferry parse -v 12", "etferry parse -v 12"),
            ("etferry parse -- -ll -v3", "etferry parse -- -ll -v3"),
        ];
        for (given, want) in table {
            assert_eq!(norm(given), want, "{given}");
        }
        let cli = Cli::try_parse_from(original_flags(
            "etferry sync -c /etc/tq -ll /tmp/logs -v3"
                .split(' ')
                .map(std::ffi::OsString::from),
        ))
        .unwrap();
        assert_eq!(cli.global.verbose, 3);
        assert_eq!(
            cli.global.log_dir.as_deref(),
            Some(std::path::Path::new("/tmp/logs"))
        );
        assert!(matches!(cli.command, Command::Sync(_)));
    }
}
