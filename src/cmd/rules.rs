//! `etferry rules`: query the rules in the store.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::cli::Global;
use crate::exit::{usage, Exit};
use crate::ingest::config::STATUSES;
use crate::ingest::WatchConfig;
use crate::store::Store;

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
    let path = crate::config::locate(g.config.as_deref(), "watch.yaml")?;
    let cfg = WatchConfig::load(&path)?;
    if let Some(s) = &args.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(usage(format!(
                "--status {s:?}: allowed: {}",
                STATUSES.join(", ")
            )));
        }
    }
    let policy = cfg.export_policy();
    let store = Store::open(&cfg.store)?;
    let mut st = store.conn().prepare(
        "SELECT r.source, s.ruleset, r.gid, r.sid, r.rev, r.msg, r.enabled, r.removed, r.file,
                r.category, r.classtype
         FROM rules r JOIN sources s ON s.name = r.source
         WHERE (?1 IS NULL OR r.sid = ?1)
         ORDER BY r.source, r.gid, r.sid",
    )?;
    let mut rows = st.query(rusqlite::params![args.sid])?;
    let mut found = Vec::new();
    while let Some(r) = rows.next()? {
        let enabled: bool = r.get(6)?;
        let removed: bool = r.get(7)?;
        let status = policy.status_for(enabled, removed).to_string();
        if args.status.as_deref().is_some_and(|s| s != status) {
            continue;
        }
        found.push(json!({
            "source": r.get::<_, String>(0)?,
            "ruleset": r.get::<_, String>(1)?,
            "gid": r.get::<_, u32>(2)?,
            "sid": r.get::<_, u32>(3)?,
            "rev": r.get::<_, u32>(4)?,
            "msg": r.get::<_, String>(5)?,
            "class": if enabled { "standard" } else { "non-standard" },
            "enabled": enabled,
            "removed": removed,
            "status": status,
            "file": r.get::<_, String>(8)?,
            "category": r.get::<_, Option<String>>(9)?,
            "classtype": r.get::<_, Option<String>>(10)?,
        }));
    }
    // Texts live in each source's stored payload: read them back per source, in one parse each.
    let mut keys: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
    for v in &found {
        let key = (num(&v["gid"]), num(&v["sid"]));
        keys.entry(str_of(&v["source"]).to_string())
            .or_default()
            .push(key);
    }
    let mut texts = HashMap::new();
    for (source, ks) in &keys {
        for (k, t) in store.texts(source, ks)? {
            texts.insert((source.clone(), k), t);
        }
    }
    let needle = args.grep.as_deref().map(str::to_lowercase);
    let mut out = Vec::new();
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    for mut v in found {
        let key = (
            str_of(&v["source"]).to_string(),
            (num(&v["gid"]), num(&v["sid"])),
        );
        let text = texts.remove(&key).unwrap_or_default();
        if let Some(n) = &needle {
            if !text.to_lowercase().contains(n) && !str_of(&v["msg"]).to_lowercase().contains(n) {
                continue;
            }
        }
        v["text"] = json!(text);
        if args.json {
            out.push(v);
        } else {
            writeln!(
                w,
                "{}:{}:{}  {:<12} {:<12} {}  ({}, {})",
                v["gid"],
                v["sid"],
                v["rev"],
                str_of(&v["class"]),
                str_of(&v["status"]),
                str_of(&v["msg"]),
                str_of(&v["source"]),
                str_of(&v["file"])
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
    Ok(Exit::Ok)
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn num(v: &Value) -> u32 {
    v.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}
