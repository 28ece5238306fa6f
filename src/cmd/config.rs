//! `etferry config check [FILE]`: validate a fetch.yaml or watch.yaml with the same loaders the
//! commands use, so a config that passes here is one the service will accept.

use std::path::{Path, PathBuf};

use crate::cli::Global;
use crate::exit::{usage, Exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do: `check`
    #[arg(value_parser = ["check"])]
    pub action: String,
    /// Config file (default: -c, else config/fetch.yaml and config/watch.yaml)
    pub file: Option<PathBuf>,
}

/// Which role a config file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Fetch,
    Watch,
}

fn role_of(path: &Path) -> anyhow::Result<Role> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.contains("fetch") {
        return Ok(Role::Fetch);
    }
    if name.contains("watch") {
        return Ok(Role::Watch);
    }
    // Otherwise look at the keys: only fetch.yaml has `sources`, only watch.yaml has `inbox`.
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read config {}: {e}", path.display())))?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| usage(format!("config {}: {e}", path.display())))?;
    if v.get("sources").is_some() {
        Ok(Role::Fetch)
    } else if v.get("inbox").is_some() {
        Ok(Role::Watch)
    } else {
        Err(usage(format!(
            "config {}: cannot tell whether it is a fetch.yaml (has `sources`) or a watch.yaml (has `inbox`)",
            path.display()
        )))
    }
}

fn check(path: &Path) -> anyhow::Result<()> {
    crate::config::warn_if_world_readable(path);
    match role_of(path)? {
        Role::Fetch => {
            let cfg = crate::fetch::config::FetchConfig::load(path)?;
            println!(
                "{}: OK (fetch.yaml, {} source(s))",
                path.display(),
                cfg.sources.len()
            );
        }
        Role::Watch => {
            let cfg = crate::ingest::WatchConfig::load(path)?;
            let sinks = cfg.sinks.names();
            println!(
                "{}: OK (watch.yaml, rulesets {}, sinks: {})",
                path.display(),
                cfg.rulesets.join(", "),
                if sinks.is_empty() {
                    "store only".to_string()
                } else {
                    sinks.join(", ")
                }
            );
        }
    }
    Ok(())
}

/// Check one file, or both default configs.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    let files: Vec<PathBuf> = match (args.file, &g.config) {
        (Some(f), _) => vec![f],
        (None, Some(c)) if c.is_dir() => ["fetch.yaml", "watch.yaml"]
            .iter()
            .map(|n| c.join(n))
            .filter(|p| p.exists())
            .collect(),
        (None, Some(c)) => vec![c.clone()],
        (None, None) => ["config/fetch.yaml", "config/watch.yaml"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect(),
    };
    if files.is_empty() {
        return Err(usage(
            "no config file found; give one: etferry config check FILE",
        ));
    }
    let mut exit = Exit::Ok;
    for f in &files {
        if !f.exists() {
            return Err(usage(format!("config file {} not found", f.display())));
        }
        if let Err(e) = check(f) {
            eprintln!("{}: {e:#}", f.display());
            exit = exit.worst(crate::exit::exit_for(&e));
        }
    }
    Ok(exit)
}
