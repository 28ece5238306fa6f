//! `etferry init`: write the configs of the production layout by asking the same questions as the
//! original connector: ThreatQ Host, Client ID, E-mail, Password; then rulesets, whether to
//! include non-standard rules, and the two statuses. For the DMZ host (`--role fetch` or `both`)
//! it asks an engine per ruleset, the ET Pro oinkcode, and how to protect the signing key, and
//! makes the key pair, so the written fetch.yaml passes `config check` as it is. Answers come
//! from flags, the terminal, or line by line from standard input (scripts).

pub(crate) mod prompt;
pub(crate) mod text;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::Global;
use crate::exit::{usage, Exit};
use crate::secret::Secret;
use prompt::*;
use text::write_private;

/// The statuses ThreatQ offers for signatures (and the connector offered).
pub use crate::ingest::config::STATUSES;

/// Which files `init` writes: the air-gapped side's, the DMZ side's, or both (one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// watch.yaml and the ThreatQ password (air-gapped ThreatQ host)
    Watch,
    /// fetch.yaml, the signing key pair, the oinkcode (DMZ host)
    Fetch,
    /// both
    Both,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the written files (default: the -c directory: $ETFERRY_CONFIG, ./config
    /// if it exists, else /etc/etferry)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// State directory the configs point to: inbox, work, done, failed, store, outbox
    #[arg(long, alias = "spool", default_value = "/var/lib/etferry")]
    pub state: PathBuf,
    /// Which configs to write (asked when not given: "Also write fetch.yaml")
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// Also write fetch.yaml (the same as --role both / --role watch)
    #[arg(long, conflicts_with = "role")]
    pub with_fetch: Option<bool>,
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
    /// Comma-separated catalog ids (et-open, et-open-nogpl, et-pro, et-blockrules, custom)
    #[arg(long)]
    pub rulesets: Option<String>,
    /// Engine for every ruleset (suricata-7.0.3), or per ruleset: et-open=suricata-7.0.3,et-pro=snort-2.9.0
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
    /// Base URL of an internal mirror of the ET servers, for every source (default: ET's own)
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// ET Pro: read the oinkcode at run time from this environment variable instead of a file
    #[arg(long)]
    pub oinkcode_env: Option<String>,
    /// File holding the password that encrypts the signing key (else asked)
    #[arg(long, conflicts_with = "unencrypted_key")]
    pub key_password_file: Option<PathBuf>,
    /// Make the signing key unencrypted (unattended DMZ host; see docs/deployment.md)
    #[arg(long)]
    pub unencrypted_key: bool,
    /// As root: give the written files to USER (default: etferry, when that user exists)
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
    /// Take defaults for everything not given as a flag; never prompt
    #[arg(long)]
    pub non_interactive: bool,
    /// Replace existing config files in --out (keys are never replaced)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub connected: super::init_connected::ConnectedArgs,
}

/// The default engine for a ruleset that needs one.
const DEFAULT_ENGINE: &str = "suricata-7.0.3";

/// `--out`, else the directory of `-c` (its parent when `-c` names a file).
fn out_dir(args: &Args, g: &Global) -> PathBuf {
    match &args.out {
        Some(o) => o.clone(),
        None => crate::config::config_dir(g.config.as_deref()),
    }
}

/// Before the first question: the directory can be written and nothing would be overwritten.
fn check_out(out: &Path, names: &[&str], force: bool) -> anyhow::Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(usage(format!("--out {}: not a directory", out.display())));
    }
    std::fs::create_dir_all(out).map_err(|e| {
        usage(format!(
            "--out {}: cannot create it: {e} (run as root for /etc/etferry, or give --out DIR)",
            out.display()
        ))
    })?;
    let probe = out.join(".etferry-init-probe");
    std::fs::write(&probe, b"").map_err(|e| {
        usage(format!(
            "--out {}: cannot write there: {e} (run as root for /etc/etferry, or give --out DIR)",
            out.display()
        ))
    })?;
    let _ = std::fs::remove_file(&probe);
    if !force {
        if let Some(p) = names.iter().map(|n| out.join(n)).find(|p| p.exists()) {
            return Err(usage(format!(
                "{} already exists; use --force to replace it",
                p.display()
            )));
        }
    }
    Ok(())
}

/// `--engine` as one engine for all, or `ruleset=engine` pairs.
pub(crate) fn engine_flag(v: &str, ruleset: &str) -> anyhow::Result<Option<String>> {
    if !v.contains('=') {
        return flag(Some(v), check_engine, "engine");
    }
    for pair in v.split(',') {
        let (r, e) = pair.split_once('=').unwrap_or((pair, ""));
        if r.trim().eq_ignore_ascii_case(ruleset) {
            return flag(Some(e), check_engine, "engine");
        }
    }
    Ok(None)
}

/// The original connector's first four answers, flag first, else asked: ThreatQ Host, Client ID,
/// E-mail and the password (`None` when it comes from `--password-env`). The air-gapped and the
/// connected branch both start with them.
pub(crate) fn threatq_answers(
    args: &Args,
    answers: &mut Answers,
) -> anyhow::Result<(String, String, String, Option<String>)> {
    let host = match flag(args.host.as_deref(), check_host, "host")? {
        Some(h) => h,
        None => answers.ask("ThreatQ Host", None, check_host)?,
    };
    let client_id = match flag(args.client_id.as_deref(), check_nonempty, "client-id")? {
        Some(c) => c,
        None => answers.ask("Client ID", None, check_nonempty)?,
    };
    let email = match flag(args.email.as_deref(), check_nonempty, "email")? {
        Some(e) => e,
        None => answers.ask("E-mail", None, check_nonempty)?,
    };
    // The password never goes on the command line: a file, an env var name, or a prompt.
    let password: Option<String> = match (&args.password_file, &args.password_env) {
        (Some(f), _) => Some(crate::config::read_secret_file(f)?.expose().to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(answers.ask_secret("Password", false)?),
    };
    Ok((host, client_id, email, password))
}

/// Ask every question, write the files, print what was written and what to do next.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    let out = out_dir(&args, g);
    let role_known = args.role.or(args
        .with_fetch
        .map(|b| if b { Role::Both } else { Role::Watch }));
    let early: &[&str] = match role_known {
        Some(Role::Fetch) => &["fetch.yaml"],
        Some(Role::Both) => &["watch.yaml", "fetch.yaml"],
        _ => &["watch.yaml"],
    };
    check_out(&out, early, args.force)?;
    let mut answers = Answers::for_this_process(args.non_interactive);
    // A host that reaches the internet gets one etferry.yaml for `etferry sync` instead; a role
    // given on the command line means a DMZ or air-gapped host.
    if role_known.is_none() {
        if let Some(exit) = super::init_connected::ask_connected(&args, &out, &mut answers)? {
            return Ok(exit);
        }
    }
    let mut written: Vec<(PathBuf, &'static str)> = Vec::new();

    let watch_side = role_known != Some(Role::Fetch);
    let mut tq = None;
    if watch_side {
        tq = Some(threatq_answers(&args, &mut answers)?);
    }
    let rulesets: Vec<String> = match flag(args.rulesets.as_deref(), check_rulesets, "rulesets")? {
        Some(r) => r,
        None => answers.ask("Rulesets", Some("et-open"), check_rulesets)?,
    }
    .split(',')
    .map(str::to_string)
    .collect();
    let mut statuses = None;
    if watch_side {
        let include = match args.include_non_standard {
            Some(b) => b,
            None => answers.ask("Include Non-Standard Rules", Some("no"), check_bool)? == "true",
        };
        let std = match flag(
            args.standard_status.as_deref(),
            check_status,
            "standard-status",
        )? {
            Some(s) => s,
            None => answers.ask("Standard Rule Status", Some("Active"), check_status)?,
        };
        let nonstd = match flag(
            args.non_standard_status.as_deref(),
            check_status,
            "non-standard-status",
        )? {
            Some(s) => s,
            None => answers.ask("Non-Standard Rule Status", Some("Inactive"), check_status)?,
        };
        statuses = Some((include, std, nonstd));
    }
    let role = match role_known {
        Some(r) => r,
        None => {
            let both = answers.ask(
                "Also write fetch.yaml for the DMZ host",
                Some("no"),
                check_bool,
            )? == "true";
            if both {
                check_out(&out, &["fetch.yaml"], args.force)?;
                Role::Both
            } else {
                Role::Watch
            }
        }
    };

    let state = args.state.display().to_string();
    if let (Some((host, client_id, email, password)), Some((include, std, nonstd))) =
        (&tq, &statuses)
    {
        let password_line = match (password, &args.password_env) {
            (None, Some(var)) => format!("    password_env: {var}"),
            _ => "    password_file: threatq.pass".to_string(),
        };
        let watch = text::watch_yaml(&text::Watch {
            state: &state,
            rulesets: &rulesets,
            include_non_standard: *include,
            standard_status: std,
            non_standard_status: nonstd,
            host,
            client_id,
            email,
            password_line,
        });
        let p = out.join("watch.yaml");
        write_private(&p, watch.as_bytes())?;
        written.push((p, ""));
        if let Some(pw) = password {
            let p = out.join("threatq.pass");
            write_private(&p, format!("{pw}\n").as_bytes())?;
            written.push((p, "the ThreatQ password"));
        }
    }
    if role != Role::Watch {
        written.extend(dmz_side(&args, &mut answers, &out, &state, &rulesets)?);
    }

    let files: Vec<PathBuf> = written.iter().map(|(p, _)| p.clone()).collect();
    let notes = crate::owner::hand_over(&files, args.owner.as_deref())?;
    for (p, what) in &written {
        let mode = if p.extension().is_some_and(|e| e == "pub") {
            "0644"
        } else {
            "0600"
        };
        match *what {
            "" => println!("wrote {} (mode {mode})", p.display()),
            w => println!("wrote {} (mode {mode}; {w})", p.display()),
        }
    }
    for n in notes {
        println!("{n}");
    }
    let dir = out.display();
    if role != Role::Fetch {
        println!(
            "next (air-gapped host): copy bundle.pub from the DMZ host to {dir}/, then \
             `etferry config check --online {dir}/watch.yaml`"
        );
    }
    if role != Role::Watch {
        println!(
            "next (DMZ host): `etferry config check --online {dir}/fetch.yaml`, then copy \
             {dir}/bundle.pub (never bundle.key) to the air-gapped host"
        );
    }
    Ok(Exit::Ok)
}

/// The DMZ host's part: an engine per ruleset, the oinkcode for ET Pro, the signing key (made
/// here unless one exists), and fetch.yaml. Returns the files written.
fn dmz_side(
    args: &Args,
    answers: &mut Answers,
    out: &Path,
    state: &str,
    rulesets: &[String],
) -> anyhow::Result<Vec<(PathBuf, &'static str)>> {
    let mut written = Vec::new();
    let mut sources = Vec::new();
    for r in rulesets {
        let needs_engine = matches!(r.as_str(), "et-open" | "et-open-nogpl" | "et-pro");
        let engine = if needs_engine {
            match args
                .engine
                .as_deref()
                .map(|e| engine_flag(e, r))
                .transpose()?
                .flatten()
            {
                Some(e) => Some(e),
                None => Some(answers.ask(
                    &format!("Engine for {r}"),
                    Some(DEFAULT_ENGINE),
                    check_engine,
                )?),
            }
        } else {
            None
        };
        let oinkcode_line = if r == "et-pro" {
            match &args.oinkcode_env {
                Some(var) => Some(format!("oinkcode_env: {var}")),
                None => {
                    let code = answers.ask_secret("ET Pro oinkcode", false)?;
                    let code = check_oinkcode(&code)
                        .map_err(|m| usage(format!("ET Pro oinkcode: {m}")))?;
                    let p = out.join("oinkcode");
                    write_private(&p, format!("{code}\n").as_bytes())?;
                    written.push((p, "the ET Pro oinkcode"));
                    Some("oinkcode_file: oinkcode".to_string())
                }
            }
        } else {
            None
        };
        sources.push(text::SourceText {
            ruleset: r.clone(),
            engine,
            oinkcode_line,
            base_url: args.base_url.clone(),
        });
    }

    let (encrypted, key_files) = signing_key(args, answers, out)?;
    written.extend(key_files);
    let p = out.join("fetch.yaml");
    write_private(&p, text::fetch_yaml(state, encrypted, &sources).as_bytes())?;
    written.push((p, ""));
    Ok(written)
}

/// Use the key pair in `out`, or make one: encrypted with a password kept in
/// `bundle.key.pass` (fetch runs unattended), or unencrypted when asked for. Returns whether the
/// key is encrypted and the files written.
fn signing_key(
    args: &Args,
    answers: &mut Answers,
    out: &Path,
) -> anyhow::Result<(bool, Vec<(PathBuf, &'static str)>)> {
    let key = out.join("bundle.key");
    let pass = out.join("bundle.key.pass");
    let mut written = Vec::new();
    if key.exists() {
        // An existing key is kept; only its password file may be missing.
        if crate::bundle::SigningKey::load(&key, None).is_ok() {
            return Ok((false, written));
        }
        if !pass.exists() {
            let pw = match &args.key_password_file {
                Some(f) => crate::config::read_secret_file(f)?,
                None => {
                    Secret::new(answers.ask_secret("Password of the existing signing key", false)?)
                }
            };
            crate::bundle::SigningKey::load(&key, Some(&pw))
                .with_context(|| format!("{}: the password does not open it", key.display()))?;
            write_private(&pass, format!("{}\n", pw.expose()).as_bytes())?;
            written.push((pass, "the signing key's password"));
        }
        return Ok((true, written));
    }
    let encrypt = if args.unencrypted_key {
        false
    } else if args.key_password_file.is_some() {
        true
    } else {
        answers.ask(
            "Encrypt the signing key with a password (kept in bundle.key.pass for the unattended fetch)",
            Some("yes"),
            check_bool,
        )? == "true"
    };
    let password = if encrypt {
        let pw = match &args.key_password_file {
            Some(f) => crate::config::read_secret_file(f)?,
            None => Secret::new(answers.ask_secret("Signing key password", true)?),
        };
        write_private(&pass, format!("{}\n", pw.expose()).as_bytes())?;
        written.push((pass, "the signing key's password"));
        Some(pw)
    } else {
        None
    };
    let (sk, pk) = crate::bundle::keygen(out, password.as_ref())?;
    written.push((
        sk,
        if encrypt {
            "signing key, encrypted"
        } else {
            "signing key, UNENCRYPTED"
        },
    ));
    written.push((pk, "public key: copy it to the air-gapped host"));
    Ok((encrypt, written))
}
