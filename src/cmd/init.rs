//! `etferry init`: write a watch.yaml (and optionally a fetch.yaml) by asking the same questions
//! as the original connector: ThreatQ Host, Client ID, E-mail, Password; then rulesets, whether to
//! include non-standard rules, and the two statuses. Answers come from flags, from the terminal, or
//! line by line from standard input when it is not a terminal (so it can be scripted).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::Global;
use crate::exit::{usage, Exit};

use crate::ingest::config::RULESETS;
/// The statuses ThreatQ offers for signatures (and the connector offered).
pub use crate::ingest::config::STATUSES;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the written config files
    #[arg(long, default_value = "config")]
    pub out: PathBuf,
    /// Spool directory the configs point to (relative paths are relative to --out)
    #[arg(long, default_value = "../spool")]
    pub spool: PathBuf,
    /// ThreatQ host, e.g. https://threatq.example.org
    #[arg(long)]
    pub host: Option<String>,
    /// ThreatQ API client id (User > My Account > API Credentials)
    #[arg(long)]
    pub client_id: Option<String>,
    /// ThreatQ user e-mail
    #[arg(long)]
    pub email: Option<String>,
    /// Read the ThreatQ password from this file (never from the command line)
    #[arg(long, conflicts_with = "password_env")]
    pub password_file: Option<PathBuf>,
    /// Read the ThreatQ password from this environment variable at run time
    #[arg(long)]
    pub password_env: Option<String>,
    /// Comma-separated catalog ids to import (et-open, et-open-nogpl, et-pro, et-blockrules, custom)
    #[arg(long)]
    pub rulesets: Option<String>,
    /// Engine flavour to fetch, e.g. suricata-7.0.3 or snort-2.9.0
    #[arg(long)]
    pub engine: Option<String>,
    /// Also send rules that ET ships disabled
    #[arg(long)]
    pub include_non_standard: Option<bool>,
    /// Status for rules ET ships enabled
    #[arg(long)]
    pub standard_status: Option<String>,
    /// Status for rules ET ships disabled
    #[arg(long)]
    pub non_standard_status: Option<String>,
    /// Also write fetch.yaml (for the DMZ host)
    #[arg(long)]
    pub with_fetch: Option<bool>,
    /// Take defaults for everything not given as a flag; never prompt
    #[arg(long)]
    pub non_interactive: bool,
    /// Replace existing files in --out
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub connected: super::init_connected::ConnectedArgs,
}

/// Where answers come from when a flag did not give one.
pub(crate) enum Answers {
    Terminal,
    Lines(Box<dyn BufRead>),
    Defaults,
}

impl Answers {
    /// Ask `question`; an empty answer takes `default`. `secret` answers are not echoed.
    pub(crate) fn ask(
        &mut self,
        question: &str,
        default: Option<&str>,
        secret: bool,
    ) -> anyhow::Result<String> {
        let shown = match default {
            Some(d) if !secret => format!("{question} [{d}]: "),
            _ => format!("{question}: "),
        };
        let answer = match self {
            Answers::Defaults => String::new(),
            Answers::Terminal if secret => rpassword::prompt_password(&shown)?,
            Answers::Terminal => {
                eprint!("{shown}");
                std::io::stderr().flush()?;
                let mut s = String::new();
                std::io::stdin().lock().read_line(&mut s)?;
                s
            }
            Answers::Lines(r) => {
                // Echo the prompt so a scripted run's log still shows what was asked.
                eprintln!("{shown}");
                let mut s = String::new();
                r.read_line(&mut s)?;
                s
            }
        };
        let answer = answer.trim_end_matches(['\r', '\n']).trim().to_string();
        if answer.is_empty() {
            match default {
                Some(d) => Ok(d.to_string()),
                None => Err(usage(format!("{question}: an answer is required"))),
            }
        } else {
            Ok(answer)
        }
    }
}

/// Ask until valid on a terminal; fail at once otherwise (a script gets a clear error).
pub(crate) fn ask_valid(
    answers: &mut Answers,
    question: &str,
    default: Option<&str>,
    check: impl Fn(&str) -> Result<String, String>,
) -> anyhow::Result<String> {
    loop {
        let a = answers.ask(question, default, false)?;
        match check(&a) {
            Ok(v) => return Ok(v),
            Err(msg) if matches!(answers, Answers::Terminal) => eprintln!("  {msg}"),
            Err(msg) => return Err(usage(format!("{question}: {msg}"))),
        }
    }
}

pub(crate) fn check_host(h: &str) -> Result<String, String> {
    let h = h.trim_end_matches('/');
    let local = |rest: &str| {
        let host = rest.split(['/', ':']).next().unwrap_or("");
        host == "127.0.0.1" || host == "localhost"
    };
    if let Some(rest) = h.strip_prefix("https://") {
        if rest.is_empty() {
            return Err("the host name is missing".into());
        }
        Ok(h.to_string())
    } else if let Some(rest) = h.strip_prefix("http://") {
        if local(rest) {
            Ok(h.to_string())
        } else {
            Err(
                "ThreatQ must be reached over https:// (http is accepted only for localhost)"
                    .into(),
            )
        }
    } else if !h.is_empty() && !h.contains("://") {
        Ok(format!("https://{h}"))
    } else {
        Err(format!("{h:?} is not an https:// URL"))
    }
}

pub(crate) fn check_status(s: &str) -> Result<String, String> {
    STATUSES
        .iter()
        .find(|x| x.eq_ignore_ascii_case(s))
        .map(|x| x.to_string())
        .ok_or_else(|| {
            format!(
                "{s:?} is not a status; choose one of {}",
                STATUSES.join(", ")
            )
        })
}

pub(crate) fn check_rulesets(s: &str) -> Result<String, String> {
    let ids: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect();
    if ids.is_empty() {
        return Err("name at least one ruleset".into());
    }
    for id in &ids {
        if !RULESETS.contains(id) {
            return Err(format!(
                "{id:?} is not a ruleset; choose from {}",
                RULESETS.join(", ")
            ));
        }
    }
    Ok(ids.join(","))
}

pub(crate) fn check_bool(s: &str) -> Result<String, String> {
    match s.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "on" | "1" => Ok("true".into()),
        "n" | "no" | "false" | "off" | "0" => Ok("false".into()),
        _ => Err(format!("{s:?}: answer yes or no")),
    }
}

pub(crate) fn check_nonempty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("an answer is required".into())
    } else {
        Ok(s.trim().to_string())
    }
}

/// Ask every question, write the files, print what was written and what to do next.
pub fn run(args: Args, _g: &Global) -> anyhow::Result<Exit> {
    let mut answers = if args.non_interactive {
        Answers::Defaults
    } else if std::io::stdin().is_terminal() {
        Answers::Terminal
    } else {
        Answers::Lines(Box::new(std::io::BufReader::new(std::io::stdin())))
    };
    // A host that reaches the internet gets one etferry.yaml for `etferry sync` instead.
    if let Some(exit) = super::init_connected::ask_connected(&args, &mut answers)? {
        return Ok(exit);
    }
    let flag_or = |v: &Option<String>, check: fn(&str) -> Result<String, String>, name: &str| {
        v.as_deref()
            .map(|x| check(x).map_err(|m| usage(format!("--{name}: {m}"))))
            .transpose()
    };

    let host = match flag_or(&args.host, check_host, "host")? {
        Some(h) => h,
        None => ask_valid(&mut answers, "ThreatQ Host", None, check_host)?,
    };
    let client_id = match flag_or(&args.client_id, check_nonempty, "client-id")? {
        Some(c) => c,
        None => ask_valid(&mut answers, "Client ID", None, check_nonempty)?,
    };
    let email = match flag_or(&args.email, check_nonempty, "email")? {
        Some(e) => e,
        None => ask_valid(&mut answers, "E-mail", None, check_nonempty)?,
    };
    // The password never goes on the command line: a file, an env var name, or a prompt.
    let password: Option<String> = match (&args.password_file, &args.password_env) {
        (Some(f), _) => Some(crate::config::read_secret_file(f)?.expose().to_string()),
        (None, Some(_)) => None,
        (None, None) => {
            let p = answers.ask("Password", None, true)?;
            Some(p)
        }
    };
    let rulesets = match flag_or(&args.rulesets, check_rulesets, "rulesets")? {
        Some(r) => r,
        None => ask_valid(&mut answers, "Rulesets", Some("et-open"), check_rulesets)?,
    };
    let engine = match &args.engine {
        Some(e) => e.clone(),
        None => ask_valid(
            &mut answers,
            "Engine",
            Some("suricata-7.0.3"),
            check_nonempty,
        )?,
    };
    let include_non_standard = match args.include_non_standard {
        Some(b) => b,
        None => {
            ask_valid(
                &mut answers,
                "Include Non-Standard Rules",
                Some("no"),
                check_bool,
            )? == "true"
        }
    };
    let standard_status = match flag_or(&args.standard_status, check_status, "standard-status")? {
        Some(s) => s,
        None => ask_valid(
            &mut answers,
            "Standard Rule Status",
            Some("Active"),
            check_status,
        )?,
    };
    let non_standard_status = match flag_or(
        &args.non_standard_status,
        check_status,
        "non-standard-status",
    )? {
        Some(s) => s,
        None => ask_valid(
            &mut answers,
            "Non-Standard Rule Status",
            Some("Inactive"),
            check_status,
        )?,
    };
    let with_fetch = match args.with_fetch {
        Some(b) => b,
        None => {
            ask_valid(
                &mut answers,
                "Also write fetch.yaml for the DMZ host",
                Some("no"),
                check_bool,
            )? == "true"
        }
    };

    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let watch_path = out.join("watch.yaml");
    let fetch_path = out.join("fetch.yaml");
    let pass_path = out.join("threatq.pass");
    let mut targets = vec![&watch_path];
    if with_fetch {
        targets.push(&fetch_path);
    }
    if password.is_some() {
        targets.push(&pass_path);
    }
    if !args.force {
        if let Some(existing) = targets.iter().find(|p| p.exists()) {
            return Err(usage(format!(
                "{} already exists; use --force to replace it",
                existing.display()
            )));
        }
    }

    let spool = args.spool.display().to_string();
    let password_line = match (&password, &args.password_env) {
        (None, Some(var)) => format!("    password_env: {var}"),
        _ => "    password_file: threatq.pass".to_string(),
    };
    let ruleset_list: Vec<&str> = rulesets.split(',').collect();
    let watch = format!(
        "# etferry watch.yaml, written by `etferry init`. Paths are relative to this file.\n\
         inbox: {spool}/inbox\n\
         work: {spool}/work\n\
         done: {spool}/done\n\
         failed: {spool}/failed\n\
         store: {spool}/etferry.db\n\
         # Copy the DMZ host's bundle.pub here (etferry keygen writes it there).\n\
         trusted_keys: [bundle.pub]\n\
         require_signature: true\n\
         rulesets: [{rulesets}]\n\
         include_non_standard: {include_non_standard}\n\
         standard_status: {standard_status}\n\
         non_standard_status: {non_standard_status}\n\
         removed_status: Expired\n\
         # Hand-dropped ET archives (no DMZ fetcher): see docs/bare-archives.md.\n\
         accept_unsigned_archives: false\n\
         sanity:\n  max_drop_percent: 20\n\
         rescan_interval: 30s\n\
         debounce: 5s\n\
         limits:\n  max_members: 10000\n  max_member_size: 64MiB\n  max_total_size: 512MiB\n\
         sinks:\n  threatq:\n    host: {host}\n    client_id: {client_id}\n    email: {email}\n\
         {password_line}\n    source_name: Emerging Threats\n    batch_size: 500\n    concurrency: 2\n    signature_type: auto\n",
        rulesets = ruleset_list.join(", "),
        client_id = yaml_str(&client_id),
        email = yaml_str(&email),
    );
    write_private(&watch_path, watch.as_bytes())?;
    if let Some(p) = &password {
        write_private(&pass_path, format!("{p}\n").as_bytes())?;
    }
    if with_fetch {
        let mut sources = String::new();
        for id in &ruleset_list {
            match *id {
                "et-blockrules" => sources.push_str("  - ruleset: et-blockrules\n"),
                "et-pro" => sources.push_str(&format!(
                    "  - ruleset: et-pro\n    engine: {engine}\n    oinkcode_file: oinkcode\n"
                )),
                "custom" => sources.push_str(
                    "  # - ruleset: custom\n  #   name: hunting\n  #   url: https://example.org/hunting.rules.tar.gz\n",
                ),
                other => sources.push_str(&format!("  - ruleset: {other}\n    engine: {engine}\n")),
            }
        }
        let fetch = format!(
            "# etferry fetch.yaml, written by `etferry init`. Paths are relative to this file.\n\
             spool: {spool}/outbox\n\
             state: {spool}/fetch-state\n\
             # Create the key pair with: etferry keygen --out {out} --password-file FILE\n\
             signing_key: bundle.key\n\
             bundle_lifetime: 14d\n\
             keep_bundles: 30\n\
             min_interval: 15m\n\
             heartbeat: true\n\
             sources:\n{sources}",
            out = out.display()
        );
        write_private(&fetch_path, fetch.as_bytes())?;
    }

    println!("wrote {} (mode 0600)", watch_path.display());
    if password.is_some() {
        println!(
            "wrote {} (mode 0600; the ThreatQ password)",
            pass_path.display()
        );
    }
    if with_fetch {
        println!("wrote {} (mode 0600)", fetch_path.display());
    }
    println!(
        "next: copy bundle.pub from the DMZ host to {}, then run `etferry config check {}`",
        out.display(),
        watch_path.display()
    );
    Ok(Exit::Ok)
}

/// Quote a scalar for YAML when it could be misread.
pub(crate) fn yaml_str(s: &str) -> String {
    serde_yaml::to_string(s)
        .map(|y| y.trim_end().to_string())
        .unwrap_or_else(|_| format!("{s:?}"))
}

/// Create or replace a file with mode 0600 (it may hold or point to secrets).
pub(crate) fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let mut f = opts
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        // An existing file keeps its old mode on open; force 0600.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let mut f = opts.open(path)?;
        f.write_all(data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_validated() {
        assert_eq!(
            check_host("tq.example.org").unwrap(),
            "https://tq.example.org"
        );
        assert!(check_host("http://tq.example.org").is_err());
        assert!(check_host("http://127.0.0.1:8080").is_ok());
        assert_eq!(check_status("non-malicious").unwrap(), "Non-Malicious");
        assert!(check_status("Indirect").is_err());
        assert!(check_rulesets("et-open, et-pro").is_ok());
        assert!(check_rulesets("et-closed").is_err());
        assert_eq!(yaml_str("a: b"), "'a: b'");
    }
}
