//! The catalog: ruleset ids → upstream URLs. Pure data, no network.
//!
//! Every base URL can be overridden per source (internal mirrors, tests). URLs are built with the
//! oinkcode in them only inside a [`SafeUrl`], so their printed form never shows it.

use crate::secret::{SafeUrl, Secret};

/// Default host of ET Open and the block lists.
pub const ET_OPEN_BASE: &str = "https://rules.emergingthreats.net/";
/// Default host of ET Pro.
pub const ET_PRO_BASE: &str = "https://rules.emergingthreatspro.com/";

/// The ruleset ids a source may name.
pub const RULESETS: &[&str] = &[
    "et-open",
    "et-open-nogpl",
    "et-pro",
    "et-blockrules",
    "custom",
];

/// Files of `et-blockrules`, relative to the base URL (DESIGN.md "Rulesets", et-rulesets.md §1.6).
pub const BLOCKRULES_FILES: &[&str] = &[
    "blockrules/emerging-botcc.rules",
    "blockrules/compromised-ips.txt",
    "fwrules/emerging-Block-IPs.txt",
];

/// What one source downloads.
#[derive(Debug, Clone)]
pub enum Plan {
    /// One archive (or plain rules file) with optional `.md5` and `version.txt`.
    Archive {
        url: SafeUrl,
        checksum_url: Option<SafeUrl>,
        version_url: Option<SafeUrl>,
        /// Whether a 404 means "this engine version is not published upstream".
        engine_versioned: bool,
    },
    /// Several plain files fetched into one bundle: (path inside the bundle, URL).
    Files(Vec<(String, SafeUrl)>),
}

/// Is `engine` a flavour string ET publishes under (`suricata-X.Y[.Z]`, `snort-2.9.0`, `snort-edge`)?
pub fn valid_engine(engine: &str) -> bool {
    if engine == "snort-2.9.0" || engine == "snort-edge" {
        return true;
    }
    match engine.strip_prefix("suricata-") {
        Some(v) => {
            let parts: Vec<&str> = v.split('.').collect();
            (2..=3).contains(&parts.len())
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        }
        None => false,
    }
}

fn with_slash(base: &str) -> String {
    if base.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/")
    }
}

/// The download plan of a catalog ruleset. `custom` is built by the caller from its own URLs.
/// `oinkcode` is required for `et-pro` (checked by config validation).
pub fn plan(
    ruleset: &str,
    engine: Option<&str>,
    base_url: Option<&str>,
    oinkcode: Option<&Secret>,
) -> Option<Plan> {
    let secrets: Vec<&Secret> = oinkcode.into_iter().collect();
    let archive = |dir: String, file: &str, default_base: &str| {
        let base = with_slash(base_url.unwrap_or(default_base));
        let url = format!("{base}{dir}/{file}");
        Plan::Archive {
            checksum_url: Some(SafeUrl::new(format!("{url}.md5"), &secrets)),
            version_url: Some(SafeUrl::new(format!("{base}{dir}/version.txt"), &secrets)),
            url: SafeUrl::new(url, &secrets),
            engine_versioned: true,
        }
    };
    match ruleset {
        "et-open" => Some(archive(
            format!("open/{}", engine?),
            "emerging.rules.tar.gz",
            ET_OPEN_BASE,
        )),
        "et-open-nogpl" => Some(archive(
            format!("open-nogpl/{}", engine?),
            "emerging.rules.tar.gz",
            ET_OPEN_BASE,
        )),
        "et-pro" => Some(archive(
            format!("{}/{}", oinkcode?.expose(), engine?),
            "etpro.rules.tar.gz",
            ET_PRO_BASE,
        )),
        "et-blockrules" => {
            let base = with_slash(base_url.unwrap_or(ET_OPEN_BASE));
            Some(Plan::Files(
                BLOCKRULES_FILES
                    .iter()
                    .map(|f| (f.to_string(), SafeUrl::new(format!("{base}{f}"), &secrets)))
                    .collect(),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn et_open_urls_follow_the_published_layout() {
        let Some(Plan::Archive {
            url,
            checksum_url,
            version_url,
            ..
        }) = plan("et-open", Some("suricata-7.0.3"), None, None)
        else {
            panic!("no plan")
        };
        assert_eq!(
            url.shown(),
            "https://rules.emergingthreats.net/open/suricata-7.0.3/emerging.rules.tar.gz"
        );
        assert_eq!(
            checksum_url.unwrap().shown(),
            "https://rules.emergingthreats.net/open/suricata-7.0.3/emerging.rules.tar.gz.md5"
        );
        assert_eq!(
            version_url.unwrap().shown(),
            "https://rules.emergingthreats.net/open/suricata-7.0.3/version.txt"
        );
    }

    #[test]
    fn et_pro_url_carries_the_oinkcode_but_never_shows_it() {
        let code = Secret::new("a1b2c3d4e5f60718");
        let Some(Plan::Archive { url, .. }) =
            plan("et-pro", Some("snort-2.9.0"), None, Some(&code))
        else {
            panic!("no plan")
        };
        assert!(url.expose().contains("a1b2c3d4e5f60718"));
        assert_eq!(
            url.shown(),
            "https://rules.emergingthreatspro.com/***/snort-2.9.0/etpro.rules.tar.gz"
        );
    }

    #[test]
    fn engines_are_checked() {
        for ok in [
            "suricata-7.0.3",
            "suricata-5.0",
            "snort-2.9.0",
            "snort-edge",
        ] {
            assert!(valid_engine(ok), "{ok}");
        }
        for bad in [
            "suricata",
            "suricata-7",
            "suricata-7.x",
            "snort-3.0",
            "../x",
        ] {
            assert!(!valid_engine(bad), "{bad}");
        }
    }
}
