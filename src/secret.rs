//! Secrets (oinkcode, ThreatQ password, tokens) and URLs that may contain them.
//!
//! A [`Secret`] never prints its value: `Debug` and `Display` show `***`. A [`SafeUrl`] prints with
//! user info and any registered secret path segment replaced, so a URL can be logged, put in a
//! manifest or an error message without leaking the oinkcode.

use std::fmt;

/// A secret string. Read it with [`Secret::expose`] only where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL whose display form hides credentials and secret path segments.
#[derive(Clone)]
pub struct SafeUrl {
    real: String,
    shown: String,
}

impl SafeUrl {
    /// `secrets` are substrings (e.g. the oinkcode) to mask wherever they occur in the URL.
    pub fn new(real: impl Into<String>, secrets: &[&Secret]) -> Self {
        let real = real.into();
        let shown = redact(&real, secrets);
        SafeUrl { real, shown }
    }

    /// The URL to send the request to. Never log this.
    pub fn expose(&self) -> &str {
        &self.real
    }

    /// The URL for logs, reports and manifests.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeUrl({})", self.shown)
    }
}

/// Mask `user:password@` in a URL and every occurrence of each secret.
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = redact_userinfo(text);
    for s in secrets {
        if !s.expose().is_empty() {
            out = out.replace(s.expose(), "***");
        }
    }
    out
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn oinkcode_and_proxy_credentials_are_masked() {
        let code = Secret::new("0123456789abcdef");
        let u = SafeUrl::new(
            "https://rules.emergingthreatspro.com/0123456789abcdef/suricata-7.0.3/etpro.rules.tar.gz",
            &[&code],
        );
        assert_eq!(
            u.to_string(),
            "https://rules.emergingthreatspro.com/***/suricata-7.0.3/etpro.rules.tar.gz"
        );
        assert!(u.expose().contains("0123456789abcdef"));
        assert_eq!(
            redact("http://user:secret@proxy.example:3128/x@y", &[]),
            "http://***@proxy.example:3128/x@y"
        );
    }
}
