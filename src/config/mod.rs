//! Shared configuration plumbing: strict YAML loading with errors that name the file, the key path
//! and what is allowed; duration and size values; paths relative to the config file.
//!
//! Each role's config struct (`fetch.yaml`, `watch.yaml`) lives next to its code and uses
//! `#[serde(deny_unknown_fields)]` plus the value types here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::exit::usage;

/// Read and parse a YAML config file. Every problem is a usage error (exit 2) naming the file and,
/// where serde knows it, the key path and line.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read config {}: {e}", path.display())))?;
    parse_yaml(path, &text)
}

/// Parse YAML text that came from `path` (used in messages only).
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> anyhow::Result<T> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let loc = inner
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        let key = if key == "." {
            String::new()
        } else {
            format!(", key `{key}`")
        };
        let inner = clip_quoted(&clip_quoted(&inner.to_string(), '"'), '`');
        usage(format!("config {}{key}{loc}: {inner}", path.display()))
    })
}

/// Clip every run quoted with `q` longer than 200 characters in a parser's message (serde_yaml
/// quotes the offending value or key, whatever its length).
fn clip_quoted(msg: &str, q: char) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(start) = rest.find(q) {
        let Some(len) = rest[start + 1..].find(q) else {
            break;
        };
        out.push_str(&rest[..=start]);
        out.push_str(&clip(&rest[start + 1..start + 1 + len]));
        out.push(q);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Check a value against its allowed range; the error names the file, the key and the range.
pub fn check_range<T: PartialOrd + fmt::Display>(
    file: &Path,
    key: &str,
    value: T,
    min: T,
    max: T,
) -> anyhow::Result<()> {
    if value < min || value > max {
        return Err(usage(format!(
            "config {}, key `{key}`: {value} is not between {min} and {max}",
            file.display()
        )));
    }
    Ok(())
}

/// The directory that relative paths in `config` resolve against.
pub fn base_dir(config: &Path) -> PathBuf {
    match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Resolve `p` against `base` unless it is absolute.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Find a role's config: `-c FILE` as given, `-c DIR` → `DIR/<file_name>`, else `config/<file_name>`.
pub fn locate(arg: Option<&Path>, file_name: &str) -> anyhow::Result<PathBuf> {
    let p = match arg {
        Some(p) if p.is_dir() => p.join(file_name),
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("config").join(file_name),
    };
    if !p.exists() {
        return Err(usage(format!(
            "config file {} not found (give one with -c FILE|DIR)",
            p.display()
        )));
    }
    Ok(p)
}

/// Read a secret from a file: exactly one line (one trailing newline is fine). Warns when others
/// can read the file. No message ever shows the content.
pub fn read_secret_file(path: &Path) -> anyhow::Result<crate::secret::Secret> {
    warn_if_world_readable(path);
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read secret file {}", path.display()))?;
    let s = s
        .strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(&s);
    if s.is_empty() {
        return Err(usage(format!("secret file {} is empty", path.display())));
    }
    if s.contains(['\r', '\n']) {
        return Err(usage(format!(
            "secret file {} holds more than one line; it must hold exactly the secret on one line \
             (a trailing newline is fine)",
            path.display()
        )));
    }
    Ok(crate::secret::Secret::new(s))
}

/// A value for an error message: at most 200 characters of it, so a config error cannot echo
/// (or flood the terminal with) a huge value.
pub fn clip(value: &str) -> String {
    const MAX: usize = 200;
    match value.char_indices().nth(MAX) {
        None => value.to_string(),
        Some((cut, _)) => format!(
            "{}… ({} more characters)",
            &value[..cut],
            value[cut..].chars().count()
        ),
    }
}

/// Read a secret from an environment variable.
pub fn read_secret_env(var: &str) -> anyhow::Result<crate::secret::Secret> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(crate::secret::Secret::new(v)),
        _ => Err(usage(format!(
            "environment variable {var} is not set or empty"
        ))),
    }
}

/// Config files and secret files must not be readable by others: say so loudly.
pub fn warn_if_world_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o004 != 0 {
                tracing::warn!(
                    "{} is readable by every user; run `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
        }
    }
}

/// A duration written as `30s`, `15m`, `4h`, `14d` (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {:?} ({e}); write e.g. 30s, 15m, 4h or 14d",
                clip(&s)
            ))
        })
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A byte size written as a number of bytes or with a unit: `64MiB`, `512 MiB`, `10kB`, `1G`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .replace('_', "")
            .parse()
            .map_err(|_| format!("invalid size {s:?}; write e.g. 65536, 64KiB, 64MiB or 1GiB"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {s:?}; allowed: B, KB, KiB, MB, MiB, GB, GiB"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        #[allow(dead_code)]
        every: Dur,
        #[allow(dead_code)]
        limits: Limits,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        #[allow(dead_code)]
        max: ByteSize,
    }

    #[test]
    fn unknown_key_names_file_and_key_path() {
        let err = parse_yaml::<Demo>(
            Path::new("config/watch.yaml"),
            "every: 5s\nlimits:\n  max: 1MiB\n  maxx: 2\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("config/watch.yaml"), "{msg}");
        assert!(msg.contains("limits"), "{msg}");
        assert!(msg.contains("maxx"), "{msg}");
        assert!(msg.contains("max"), "{msg}");
        assert_eq!(crate::exit::exit_for(&err), crate::exit::Exit::Usage);
    }

    #[test]
    fn bad_duration_says_what_is_allowed() {
        let err = parse_yaml::<Demo>(Path::new("f.yaml"), "every: soon\nlimits: {max: 1}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("every") && err.contains("15m"), "{err}");
    }

    #[test]
    fn secret_file_holds_exactly_one_line_and_errors_never_show_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tq.pass");
        for ok in ["hunter2", "hunter2\n", "hunter2\r\n"] {
            std::fs::write(&p, ok).unwrap();
            assert_eq!(read_secret_file(&p).unwrap().expose(), "hunter2");
        }
        for bad in ["hunter2\nsecond", "hunter2\n\n", "a\rb"] {
            std::fs::write(&p, bad).unwrap();
            let e = read_secret_file(&p).unwrap_err().to_string();
            assert!(
                e.contains("more than one line") && !e.contains("hunter2"),
                "{e}"
            );
        }
    }

    #[test]
    fn clipped_values_show_at_most_200_characters() {
        let long = "y".repeat(5000);
        let c = clip(&long);
        assert!(
            c.starts_with(&"y".repeat(200)) && c.contains("4800 more"),
            "{c}"
        );
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("64MiB"), Ok(ByteSize(64 << 20)));
        assert_eq!(ByteSize::parse("512 MiB"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("10kB"), Ok(ByteSize(10_000)));
        assert_eq!(ByteSize::parse("123"), Ok(ByteSize(123)));
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert!(ByteSize::parse("99999999999999999999GiB").is_err());
    }
}
