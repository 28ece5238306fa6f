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

/// Mask `user:password@` in a URL and every occurrence of each secret, in every form a server
/// may echo it back: raw, JSON-escaped (also PHP's `\/` and `\uXXXX` style) and URL-encoded
/// (percent-encoding with `%20` or `+`, upper- or lowercase hex).
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = redact_userinfo(text);
    for s in secrets {
        for form in forms(s.expose()) {
            out = out.replace(&form, "***");
        }
    }
    out
}

/// The raw secret and its escaped and encoded forms, longest first (so a longer form is not
/// left half-masked by a shorter one it contains), without duplicates or empty strings.
fn forms(raw: &str) -> Vec<String> {
    if raw.is_empty() {
        return Vec::new();
    }
    let json = serde_json::to_string(raw)
        .map(|q| q[1..q.len() - 1].to_string())
        .unwrap_or_default();
    let mut php = String::new();
    for c in json.chars() {
        match c {
            '/' => php.push_str("\\/"),
            c if !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    php.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => php.push(c),
        }
    }
    let mut v = vec![raw.to_string(), json, php];
    for upper in [true, false] {
        v.push(percent(raw, upper, false));
        v.push(percent(raw, upper, true));
    }
    v.retain(|f| !f.is_empty());
    v.sort_by_key(|f| std::cmp::Reverse(f.len()));
    v.dedup();
    v
}

/// Percent-encode every byte outside the unreserved set; `form` writes a space as `+`
/// (application/x-www-form-urlencoded).
fn percent(raw: &str, upper: bool, form: bool) -> String {
    let mut out = String::new();
    for b in raw.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'*' if form => out.push('*'),
            b' ' if form => out.push('+'),
            b if upper => out.push_str(&format!("%{b:02X}")),
            b => out.push_str(&format!("%{b:02x}")),
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
    fn every_echoed_form_of_a_secret_is_masked() {
        let pw = Secret::new(r#"p"a\ss w/rd+é&"#);
        for echoed in [
            r#"p"a\ss w/rd+é&"#,
            r#"p\"a\\ss w/rd+é&"#,
            r#"p\"a\\ss w\/rd+\u00e9&"#,
            "p%22a%5Css%20w%2Frd%2B%C3%A9%26",
            "p%22a%5Css+w%2Frd%2B%C3%A9%26",
            "p%22a%5css+w%2frd%2b%c3%a9%26",
        ] {
            let body = format!(r#"{{"error":"bad login","echo":"password={echoed}"}}"#);
            let shown = redact(&body, &[&pw]);
            assert!(!shown.contains(echoed), "{echoed} survived: {shown}");
            assert!(shown.contains("password=***"), "{shown}");
        }
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
