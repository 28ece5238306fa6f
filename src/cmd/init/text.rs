//! The YAML `init` writes: one watch.yaml and one fetch.yaml on the production layout (config
//! beside them in the config directory, state under `--state`), and the 0600 file writer.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// What the watch.yaml says.
pub struct Watch<'a> {
    pub state: &'a str,
    pub rulesets: &'a [String],
    pub include_non_standard: bool,
    pub standard_status: &'a str,
    pub non_standard_status: &'a str,
    pub host: &'a str,
    pub client_id: &'a str,
    pub email: &'a str,
    /// `password_file: threatq.pass` or `password_env: VAR`.
    pub password_line: String,
}

pub fn watch_yaml(w: &Watch) -> String {
    let state = w.state;
    format!(
        "# etferry watch.yaml, written by `etferry init`. Relative paths resolve against this file.\n\
         inbox: {state}/inbox\n\
         work: {state}/work\n\
         done: {state}/done\n\
         failed: {state}/failed\n\
         store: {state}/etferry.db\n\
         # Copy the DMZ host's bundle.pub here (etferry keygen writes it there).\n\
         trusted_keys: [bundle.pub]\n\
         require_signature: true\n\
         rulesets: [{rulesets}]\n\
         include_non_standard: {ins}\n\
         standard_status: {std}\n\
         non_standard_status: {nonstd}\n\
         removed_status: Expired\n\
         # Hand-dropped ET archives (no DMZ fetcher): see docs/bare-archives.md.\n\
         accept_unsigned_archives: false\n\
         sanity:\n  max_drop_percent: 20\n\
         rescan_interval: 30s\n\
         debounce: 5s\n\
         limits:\n  max_members: 10000\n  max_member_size: 64MiB\n  max_total_size: 512MiB\n\
         sinks:\n  threatq:\n    host: {host}\n    client_id: {client_id}\n    email: {email}\n\
         {password_line}\n    source_name: Emerging Threats\n    batch_size: 500\n    concurrency: 2\n    signature_type: auto\n",
        rulesets = w.rulesets.join(", "),
        ins = w.include_non_standard,
        std = w.standard_status,
        nonstd = w.non_standard_status,
        host = w.host,
        client_id = yaml_str(w.client_id),
        email = yaml_str(w.email),
        password_line = w.password_line,
    )
}

/// One `sources:` entry: ruleset, its engine, and for ET Pro the oinkcode line.
pub struct SourceText {
    pub ruleset: String,
    pub engine: Option<String>,
    pub oinkcode_line: Option<String>,
    pub base_url: Option<String>,
}

pub fn fetch_yaml(state: &str, encrypted_key: bool, sources: &[SourceText]) -> String {
    let mut s = String::new();
    for src in sources {
        if src.ruleset == "custom" {
            s.push_str(
                "  # - ruleset: custom\n  #   name: hunting\n  #   url: https://example.org/hunting.rules.tar.gz\n",
            );
            continue;
        }
        s.push_str(&format!("  - ruleset: {}\n", src.ruleset));
        if let Some(e) = &src.engine {
            s.push_str(&format!("    engine: {e}\n"));
        }
        if let Some(o) = &src.oinkcode_line {
            s.push_str(&format!("    {o}\n"));
        }
        if let Some(u) = &src.base_url {
            s.push_str(&format!("    base_url: {}\n", yaml_str(u)));
        }
    }
    let password = if encrypted_key {
        "signing_key_password_file: bundle.key.pass\n"
    } else {
        "# the key is unencrypted (etferry keygen --unencrypted): no password file\n"
    };
    format!(
        "# etferry fetch.yaml, written by `etferry init`. Relative paths resolve against this file.\n\
         spool: {state}/outbox\n\
         state: {state}/fetch-state\n\
         signing_key: bundle.key\n\
         {password}\
         bundle_lifetime: 14d\n\
         keep_bundles: 30\n\
         min_interval: 15m\n\
         heartbeat: true\n\
         sources:\n{s}"
    )
}

/// Quote a scalar for YAML when it could be misread.
pub fn yaml_str(s: &str) -> String {
    serde_yaml::to_string(s)
        .map(|y| y.trim_end().to_string())
        .unwrap_or_else(|_| format!("{s:?}"))
}

/// Create or replace a file with mode 0600 (it may hold or point to secrets).
pub fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its old mode on open; force 0600.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_that_could_be_misread_are_quoted() {
        assert_eq!(yaml_str("a: b"), "'a: b'");
        assert_eq!(yaml_str("plain"), "plain");
    }
}
