//! Which redirects the fetch client follows. reqwest follows redirects on its own (to any origin,
//! and from https down to http); the fetch client turns that off and asks [`check`] about each
//! hop instead, so a mirror cannot move a download (and an oinkcode in its path) to plain http or
//! to a host nobody configured.

use reqwest::Url;

use crate::secret::{redact, Secret};

/// Hops followed per request; a longer chain is a loop or a trap.
pub const MAX_HOPS: usize = 10;

/// The redirect policy of one source.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Hosts (exact, case-insensitive) a redirect may lead to besides the configured URL's own
    /// origin: a mirror's CDN (`allow_redirect_hosts`).
    pub allow_hosts: Vec<String>,
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// May the client go from `from` to `to`, for a request that started at `start`? The error
/// names the Location with every secret masked.
pub fn check(
    start: &Url,
    from: &Url,
    to: &Url,
    policy: &Policy,
    secrets: &[&Secret],
) -> Result<(), String> {
    let shown = redact(to.as_str(), secrets);
    if to.scheme() != "http" && to.scheme() != "https" {
        return Err(format!(
            "redirect to {shown} refused: only http and https are followed"
        ));
    }
    if from.scheme() == "https" && to.scheme() == "http" {
        return Err(format!(
            "redirect from https to plain http ({shown}) refused: the download and its .md5 could be changed on the way"
        ));
    }
    // The oinkcode travels in the path: it may only ever go to the host it was configured for.
    let carries_secret = secrets
        .iter()
        .any(|s| !s.expose().is_empty() && to.as_str().contains(s.expose()));
    let same_host = to.host_str() == start.host_str()
        && (to.port_or_known_default() == start.port_or_known_default()
            || (to.scheme() == "https" && to.port().is_none()));
    if carries_secret && !same_host {
        return Err(format!(
            "redirect to {shown} refused: it would send the oinkcode to a host other than the configured one"
        ));
    }
    // http://host → https://host (default port) is the same site moving up, not away.
    let upgrade = from.scheme() == "http"
        && to.scheme() == "https"
        && to.host_str() == from.host_str()
        && to.port().is_none();
    if same_origin(to, start) || same_origin(to, from) || upgrade {
        return Ok(());
    }
    let allowed = to
        .host_str()
        .is_some_and(|h| policy.allow_hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
    if allowed {
        return Ok(());
    }
    Err(format!(
        "redirect to another origin ({shown}) refused; if that host is the mirror's CDN, add it to allow_redirect_hosts of this source"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn redirect_policy_table() {
        let code = Secret::new("0123456789abcdef");
        let cdn = Policy {
            allow_hosts: vec!["CDN.example".into()],
        };
        let none = Policy::default();
        let start = u("https://rules.example/0123456789abcdef/x.tar.gz");
        // (from, to, policy, allowed)
        let table = [
            (
                "https://rules.example/a",
                "https://rules.example/b",
                &none,
                true,
            ),
            (
                "https://rules.example/a",
                "http://rules.example/b",
                &none,
                false,
            ),
            (
                "https://rules.example/a",
                "https://other.example/b",
                &none,
                false,
            ),
            (
                "https://rules.example/a",
                "https://rules.example:8443/b",
                &none,
                false,
            ),
            (
                "https://rules.example/a",
                "https://cdn.example/b",
                &cdn,
                true,
            ),
            (
                "https://rules.example/a",
                "http://cdn.example/b",
                &cdn,
                false,
            ),
            (
                "https://cdn.example/b",
                "https://cdn.example/c",
                &none,
                true,
            ),
            (
                "http://rules.example/a",
                "https://rules.example/a",
                &none,
                true,
            ),
            (
                "https://rules.example/a",
                "ftp://rules.example/a",
                &cdn,
                false,
            ),
            ("https://rules.example/a", "file:///etc/passwd", &cdn, false),
            // The oinkcode never leaves the configured host (and port), not even for a CDN.
            (
                "https://rules.example/a",
                "https://rules.example:8443/0123456789abcdef/x.tar.gz",
                &Policy {
                    allow_hosts: vec!["rules.example".into()],
                },
                false,
            ),
            (
                "https://rules.example/a",
                "https://cdn.example/0123456789abcdef/x.tar.gz",
                &cdn,
                false,
            ),
        ];
        for (from, to, policy, want) in table {
            let got = check(&start, &u(from), &u(to), policy, &[&code]);
            assert_eq!(got.is_ok(), want, "{from} -> {to}: {got:?}");
            if let Err(msg) = got {
                assert!(!msg.contains("0123456789abcdef"), "{msg}");
            }
        }
    }
}
