//! Who owns the files `init` and `keygen` write. Run as root (the usual way to write into
//! /etc/etferry), they would be root's 0600 files that the `etferry` service user cannot read, and
//! the service would fail on its first start. So as root they are handed to the service user
//! (`--owner USER`, default `etferry` when that user exists), or the exact `chown` is printed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::exit::usage;

/// The service user the packages and units create.
pub const SERVICE_USER: &str = "etferry";

/// A user's numeric ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Look `name` up with `getent` (LDAP and other NSS sources too), else in /etc/passwd.
pub fn lookup(name: &str) -> Option<User> {
    let line = std::process::Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .or_else(|| {
            std::fs::read_to_string("/etc/passwd").ok().and_then(|t| {
                t.lines()
                    .find(|l| l.split(':').next() == Some(name))
                    .map(str::to_string)
            })
        })?;
    let f: Vec<&str> = line.trim().split(':').collect();
    match f.as_slice() {
        [n, _, uid, gid, ..] if *n == name => Some(User {
            name: name.to_string(),
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
        }),
        _ => None,
    }
}

/// Hand `files` (just written by this process) to the service user when running as root.
/// `wanted` is `--owner`; without it the `etferry` user is used when it exists. Returns the
/// lines to print: what was done, or the `chown` the operator must run.
pub fn hand_over(files: &[PathBuf], wanted: Option<&str>) -> anyhow::Result<Vec<String>> {
    let Some(first) = files.first() else {
        return Ok(Vec::new());
    };
    // A file this process just created is owned by its effective user: 0 means root.
    let me = std::fs::metadata(first)?.uid();
    let user = match wanted {
        Some(name) => Some(lookup(name).ok_or_else(|| {
            usage(format!(
                "--owner {name}: no such user (create it first: useradd --system {name})"
            ))
        })?),
        None => lookup(SERVICE_USER),
    };
    let list = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    match user {
        Some(u) if u.uid == me => Ok(Vec::new()),
        Some(u) if me == 0 => {
            for f in files {
                std::os::unix::fs::chown(f, Some(u.uid), Some(u.gid)).map_err(|e| {
                    anyhow::anyhow!("cannot hand {} to user {}: {e}", f.display(), u.name)
                })?;
            }
            Ok(vec![format!(
                "owner: {} (the service user; mode stays 0600)",
                u.name
            )])
        }
        Some(_) if wanted.is_none() => Ok(Vec::new()),
        Some(u) => Err(usage(format!(
            "--owner {}: only root can give files to another user; run as root, or as {} itself",
            u.name, u.name
        ))),
        None if me == 0 => Ok(vec![format!(
            "note: these files belong to root and the service cannot read them; once the service \
             user exists, run: chown {SERVICE_USER}: {list}   (or rerun with --owner USER)"
        )]),
        None => Ok(Vec::new()),
    }
}

/// `path` as a list entry for [`hand_over`], when it exists.
pub fn existing(paths: &[&Path]) -> Vec<PathBuf> {
    paths
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.to_path_buf())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_and_unknown_users_are_not() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(lookup("no-such-user-etferry-test").is_none());
    }
}
