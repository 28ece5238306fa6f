//! `etferry rules`: query the rules in the store.

use serde_json::json;

use crate::cli::Global;
use crate::exit::{usage, Exit};
use crate::ingest::config::STATUSES;
use crate::store::{Store, TextRef, TextWants};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this SID
    #[arg(long)]
    pub sid: Option<u32>,
    /// Rules whose text or msg contains TEXT
    #[arg(long)]
    pub grep: Option<String>,
    /// Rules with this status
    #[arg(long)]
    pub status: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// List matching rules with their class and configured status.
pub fn run(args: Args, g: &Global) -> anyhow::Result<Exit> {
    use std::io::Write;
    // A watch.yaml, or the etferry.yaml of `sync`: both write the same store.
    let (_, cfg) = crate::sync::config::store_config(g.config.as_deref())?;
    // Case-insensitive, like init's answers: `--status inactive` means Inactive.
    let status_filter = match &args.status {
        Some(s) => Some(
            STATUSES
                .iter()
                .find(|x| x.eq_ignore_ascii_case(s))
                .map(|x| x.to_string())
                .ok_or_else(|| {
                    usage(format!("--status {s:?}: allowed: {}", STATUSES.join(", ")))
                })?,
        ),
        None => None,
    };
    let policy = cfg.export_policy();
    let store = Store::open(&cfg.store)?;
    let mut st = store.conn().prepare(
        "SELECT r.source, s.ruleset, r.gid, r.sid, r.rev, r.msg, r.enabled, r.removed, r.file,
                r.category, r.classtype, r.text, r.text_hash
         FROM rules r JOIN sources s ON s.name = r.source
         WHERE (?1 IS NULL OR r.sid = ?1)
         ORDER BY r.source, r.gid, r.sid",
    )?;
    let mut rows = st.query(rusqlite::params![args.sid])?;
    let mut found = Vec::new();
    // Rules whose text is in their source's stored payload (not inline: not removed).
    let mut from_payload = TextWants::default();
    while let Some(r) = rows.next()? {
        let enabled: bool = r.get(6)?;
        let removed: bool = r.get(7)?;
        let status = policy.status_for(enabled, removed).to_string();
        if status_filter.as_deref().is_some_and(|s| s != status) {
            continue;
        }
        let mut row = Row {
            source: r.get(0)?,
            ruleset: r.get(1)?,
            gid: r.get(2)?,
            sid: r.get(3)?,
            rev: r.get(4)?,
            msg: r.get(5)?,
            class: if enabled { "standard" } else { "non-standard" },
            enabled,
            removed,
            status,
            file: r.get(8)?,
            category: r.get(9)?,
            classtype: r.get(10)?,
            text: String::new(),
        };
        match r.get::<_, Option<String>>(11)? {
            Some(t) => row.text = t,
            None => from_payload.push(
                &row.source,
                TextRef {
                    key: (row.gid, row.sid),
                    hash: r.get(12)?,
                    file: row.file.clone(),
                },
            ),
        }
        found.push(row);
    }
    let mut texts = store.read_texts(from_payload)?;
    let needle = args.grep.as_deref().map(str::to_lowercase);
    let mut out = Vec::new();
    let mut shown = 0usize;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    for mut r in found {
        if let Some(t) = texts.take(&r.source, (r.gid, r.sid)) {
            r.text = t;
        }
        if let Some(n) = &needle {
            if !r.text.to_lowercase().contains(n) && !r.msg.to_lowercase().contains(n) {
                continue;
            }
        }
        shown += 1;
        if args.json {
            out.push(r);
        } else {
            writeln!(
                w,
                "{}:{}:{}  {:<12} {:<12} {}  ({}, {})",
                r.gid, r.sid, r.rev, r.class, r.status, r.msg, r.source, r.file
            )?;
        }
    }
    if args.json {
        writeln!(
            w,
            "{}",
            serde_json::to_string_pretty(&json!({ "rules": out }))?
        )?;
    }
    w.flush()?;
    if shown == 0 && !args.json {
        // Silence would look like a broken store; say what matched nothing.
        let mut what = Vec::new();
        if let Some(sid) = args.sid {
            what.push(format!("--sid {sid}"));
        }
        if let Some(s) = &status_filter {
            what.push(format!("--status {s}"));
        }
        if let Some(g) = &args.grep {
            what.push(format!("--grep {g:?}"));
        }
        if what.is_empty() {
            eprintln!("no rules in the store yet ({})", cfg.store.display());
        } else {
            eprintln!("no rule matches {}", what.join(" "));
        }
    }
    Ok(Exit::Ok)
}

/// One rule as `rules` prints it.
#[derive(Debug, serde::Serialize)]
struct Row {
    source: String,
    ruleset: String,
    gid: u32,
    sid: u32,
    rev: u32,
    msg: String,
    class: &'static str,
    enabled: bool,
    removed: bool,
    status: String,
    file: String,
    category: Option<String>,
    classtype: Option<String>,
    text: String,
}
