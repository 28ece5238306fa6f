//! The connected branch of `etferry init`: it first asks whether this host reaches the internet.
//! If it does, it asks the original connector's questions in its order (ThreatQ Host, Client ID,
//! E-mail, Password, ET Pro Oinkcode, Rulesets, Include Non-Standard Rules, Standard Rule
//! Status, Non-Standard Rule Status) and writes one `etferry.yaml` for `etferry sync`, the
//! password file and the oinkcode file (mode 0600; secrets are never echoed). If it does not,
//! `init` goes on as for an air-gapped host.

use std::path::PathBuf;

use crate::exit::{usage, Exit};

use super::init::prompt::{
    check_bool, check_engine, check_oinkcode, check_rulesets, check_status, flag, Answers,
};
use super::init::text::{write_private, yaml_str};
use super::init::Args;

/// The connected branch's own flags (flattened into `init`'s).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectedArgs {
    /// This host reaches the internet: write etferry.yaml for `etferry sync` (default: ask)
    #[arg(long, value_name = "BOOL")]
    pub connected: Option<bool>,
    /// Read the ET Pro oinkcode from this file (never from the command line)
    #[arg(long, value_name = "FILE")]
    pub oinkcode_file: Option<PathBuf>,
}

/// Ask whether the host is connected; if so, run the connected questions and return the exit.
/// `None`: an air-gapped host, `init` goes on as before.
pub(crate) fn ask_connected(
    args: &Args,
    out: &std::path::Path,
    answers: &mut Answers,
) -> anyhow::Result<Option<Exit>> {
    let connected = match args.connected.connected {
        Some(b) => b,
        None => answers.ask(
            "Does this host reach the internet (yes: etferry sync on this host; no: air-gapped)",
            Some("yes"),
            check_bool,
        )? == "true",
    };
    if !connected {
        return Ok(None);
    }
    run(args, out.to_path_buf(), answers).map(Some)
}

/// The connected questions, then etferry.yaml, threatq.pass and oinkcode in `--out`.
fn run(args: &Args, out: PathBuf, answers: &mut Answers) -> anyhow::Result<Exit> {
    let (host, client_id, email, password) = super::init::threatq_answers(args, answers)?;
    // In the original's place; it only matters (and is only required) with an ET Pro ruleset.
    let mut oinkcode: Option<String> = match &args.connected.oinkcode_file {
        Some(f) => Some(crate::config::read_secret_file(f)?.expose().to_string()),
        None if args
            .rulesets
            .as_deref()
            .is_some_and(|r| !r.contains("et-pro")) =>
        {
            None
        }
        None => {
            let a = answers.ask_checked(
                "ET Pro Oinkcode (empty without an ET Pro subscription)",
                Some(""),
                true,
                |s| Ok(s.to_string()),
            )?;
            (!a.is_empty()).then_some(a)
        }
    };
    if let Some(code) = &oinkcode {
        check_oinkcode(code).map_err(|m| usage(format!("ET Pro Oinkcode: {m}")))?;
    }
    let rulesets = match flag(args.rulesets.as_deref(), check_rulesets, "rulesets")? {
        Some(r) => r,
        None => answers.ask("Rulesets", Some("et-open"), check_rulesets)?,
    };
    let ids: Vec<&str> = rulesets.split(',').collect();
    let pro = ids.contains(&"et-pro");
    if pro && oinkcode.is_none() {
        let code = answers.ask_checked("ET Pro Oinkcode", None, true, check_oinkcode)?;
        oinkcode = Some(code);
    }
    if !pro {
        oinkcode = None;
    }
    let needs_engine = ids
        .iter()
        .any(|r| matches!(*r, "et-open" | "et-open-nogpl" | "et-pro"));
    // One engine for every ruleset, or `--engine et-open=suricata-7.0.3,et-pro=snort-2.9.0`.
    let engine = match (&args.engine, needs_engine) {
        (Some(e), _) if !e.contains('=') => {
            check_engine(e).map_err(|m| usage(format!("--engine: {m}")))?
        }
        (Some(_), _) => String::new(),
        (None, true) => answers.ask("Engine", Some("suricata-7.0.3"), check_engine)?,
        (None, false) => String::new(),
    };
    let engine_of = |id: &str| -> anyhow::Result<String> {
        match &args.engine {
            Some(e) if e.contains('=') => super::init::engine_flag(e, id)?
                .ok_or_else(|| usage(format!("--engine names no engine for {id}"))),
            _ => Ok(engine.clone()),
        }
    };
    let include_non_standard = match args.include_non_standard {
        Some(b) => b,
        None => answers.ask("Include Non-Standard Rules", Some("no"), check_bool)? == "true",
    };
    let standard_status = match flag(
        args.standard_status.as_deref(),
        check_status,
        "standard-status",
    )? {
        Some(s) => s,
        None => answers.ask("Standard Rule Status", Some("Active"), check_status)?,
    };
    let non_standard_status = match flag(
        args.non_standard_status.as_deref(),
        check_status,
        "non-standard-status",
    )? {
        Some(s) => s,
        None => answers.ask("Non-Standard Rule Status", Some("Inactive"), check_status)?,
    };

    let out = &out;
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let yaml_path = out.join(crate::sync::config::FILE_NAME);
    let pass_path = out.join("threatq.pass");
    let oink_path = out.join("oinkcode");
    let mut targets = vec![&yaml_path];
    if password.is_some() {
        targets.push(&pass_path);
    }
    if oinkcode.is_some() {
        targets.push(&oink_path);
    }
    if !args.force {
        if let Some(existing) = targets.iter().find(|p| p.exists()) {
            return Err(usage(format!(
                "{} already exists; use --force to replace it",
                existing.display()
            )));
        }
    }
    let mut sources = String::new();
    for id in &ids {
        match *id {
            "et-blockrules" => sources.push_str("  - ruleset: et-blockrules\n"),
            "et-pro" => sources.push_str(&format!(
                "  - ruleset: et-pro\n    engine: {}\n    oinkcode_file: oinkcode\n",
                engine_of("et-pro")?
            )),
            "custom" => sources.push_str(
                "  # - ruleset: custom\n  #   name: hunting\n  #   url: https://example.org/hunting.rules.tar.gz\n",
            ),
            other => sources.push_str(&format!(
                "  - ruleset: {other}\n    engine: {}\n",
                engine_of(other)?
            )),
        }
    }
    let password_line = match (&password, &args.password_env) {
        (None, Some(var)) => format!("    password_env: {var}"),
        _ => "    password_file: threatq.pass".to_string(),
    };
    let state = args.state.display().to_string();
    let text = format!(
        "# etferry.yaml for `etferry sync`, written by `etferry init`. Paths are relative to this file.\n\
         state: {state}\n\
         store: {state}/etferry.db\n\
         min_interval: 15m\n\
         http: {{connect_timeout: 10s, read_timeout: 60s, total_timeout: 10m, retries: 3}}\n\
         include_non_standard: {include_non_standard}\n\
         standard_status: {standard_status}\n\
         non_standard_status: {non_standard_status}\n\
         removed_status: Expired\n\
         sanity: {{max_drop_percent: 20}}\n\
         limits: {{max_members: 10000, max_member_size: 64MiB, max_total_size: 512MiB}}\n\
         sources:\n{sources}\
         sinks:\n  threatq:\n    host: {host}\n    client_id: {client_id}\n    email: {email}\n\
         {password_line}\n    source_name: Emerging Threats\n    batch_size: 500\n    concurrency: 2\n    signature_type: auto\n\
         # Also publish signed bundles of the same downloads for air-gapped sites:\n\
         # publish:\n#   spool: {state}/outbox\n#   signing_key: bundle.key\n",
        client_id = yaml_str(&client_id),
        email = yaml_str(&email),
    );
    write_private(&yaml_path, text.as_bytes())?;
    println!("wrote {} (mode 0600)", yaml_path.display());
    if let Some(p) = &password {
        write_private(&pass_path, format!("{p}\n").as_bytes())?;
        println!(
            "wrote {} (mode 0600; the ThreatQ password)",
            pass_path.display()
        );
    }
    if let Some(c) = &oinkcode {
        write_private(&oink_path, format!("{c}\n").as_bytes())?;
        println!(
            "wrote {} (mode 0600; the ET Pro oinkcode)",
            oink_path.display()
        );
    }
    println!(
        "next: `etferry config check --online {}`, a first `etferry sync -c {}`, then \
         `systemctl enable --now etferry-sync.timer` (or the cron line in scripts/crontab.example)",
        yaml_path.display(),
        out.display()
    );
    Ok(Exit::Ok)
}
