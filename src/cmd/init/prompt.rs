//! Where `init`'s answers come from (a flag, the terminal, or piped lines) and the checks each
//! answer passes. On a terminal an empty or invalid answer asks again; a script gets a clear
//! error at once (re-reading the next line would shift every later answer).

use std::io::{BufRead, IsTerminal, Write};

use crate::exit::usage;
use crate::ingest::config::{RULESETS, STATUSES};

/// Where answers come from when a flag did not give one.
pub enum Answers {
    Terminal,
    Lines(Box<dyn BufRead>),
    Defaults,
}

impl Answers {
    /// Terminal when stdin is one, piped lines otherwise, defaults with `--non-interactive`.
    pub fn for_this_process(non_interactive: bool) -> Answers {
        if non_interactive {
            Answers::Defaults
        } else if std::io::stdin().is_terminal() {
            Answers::Terminal
        } else {
            Answers::Lines(Box::new(std::io::BufReader::new(std::io::stdin())))
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Answers::Terminal)
    }

    /// One raw answer, trimmed; an empty answer takes `default`. `secret` answers are not echoed.
    fn ask_once(
        &mut self,
        question: &str,
        default: Option<&str>,
        secret: bool,
    ) -> anyhow::Result<String> {
        let shown = match default {
            Some(d) if !secret => format!("{question} [{d}]: "),
            _ => format!("{question}: "),
        };
        let answer = match self {
            Answers::Defaults => String::new(),
            Answers::Terminal if secret => rpassword::prompt_password(&shown)?,
            Answers::Terminal => {
                eprint!("{shown}");
                std::io::stderr().flush()?;
                let mut s = String::new();
                if std::io::stdin().lock().read_line(&mut s)? == 0 {
                    return Err(usage(format!("{question}: no answer (end of input)")));
                }
                s
            }
            Answers::Lines(r) => {
                // Echo the prompt so a scripted run's log still shows what was asked.
                eprintln!("{shown}");
                let mut s = String::new();
                r.read_line(&mut s)?;
                s
            }
        };
        let answer = answer.trim_end_matches(['\r', '\n']).trim().to_string();
        Ok(match (answer.is_empty(), default) {
            (true, Some(d)) => d.to_string(),
            _ => answer,
        })
    }

    /// Ask until `check` accepts the answer on a terminal; fail at once otherwise.
    pub fn ask(
        &mut self,
        question: &str,
        default: Option<&str>,
        check: impl Fn(&str) -> Result<String, String>,
    ) -> anyhow::Result<String> {
        self.ask_checked(question, default, false, check)
    }

    /// A secret: not echoed, never empty. On a terminal it is asked twice when `confirm`.
    pub fn ask_secret(&mut self, question: &str, confirm: bool) -> anyhow::Result<String> {
        loop {
            let a = self.ask_checked(question, None, true, check_nonempty)?;
            if !(confirm && self.is_terminal()) {
                return Ok(a);
            }
            let again = self.ask_once(&format!("{question} (again)"), None, true)?;
            if again == a {
                return Ok(a);
            }
            eprintln!("  the two answers differ; once more");
        }
    }

    pub fn ask_checked(
        &mut self,
        question: &str,
        default: Option<&str>,
        secret: bool,
        check: impl Fn(&str) -> Result<String, String>,
    ) -> anyhow::Result<String> {
        loop {
            let a = self.ask_once(question, default, secret)?;
            match check(&a) {
                Ok(v) => return Ok(v),
                Err(msg) if self.is_terminal() => eprintln!("  {msg}"),
                Err(msg) => return Err(usage(format!("{question}: {msg}"))),
            }
        }
    }
}

/// A flag's value through the same check as a typed answer.
pub fn flag(
    v: Option<&str>,
    check: fn(&str) -> Result<String, String>,
    name: &str,
) -> anyhow::Result<Option<String>> {
    v.map(|x| check(x).map_err(|m| usage(format!("--{name}: {m}"))))
        .transpose()
}

pub fn check_host(h: &str) -> Result<String, String> {
    let h = h.trim_end_matches('/');
    let local = |rest: &str| {
        let host = rest.split(['/', ':']).next().unwrap_or("");
        host == "127.0.0.1" || host == "localhost"
    };
    if let Some(rest) = h.strip_prefix("https://") {
        if rest.is_empty() {
            return Err("the host name is missing".into());
        }
        Ok(h.to_string())
    } else if let Some(rest) = h.strip_prefix("http://") {
        if local(rest) {
            Ok(h.to_string())
        } else {
            Err(
                "ThreatQ must be reached over https:// (http is accepted only for localhost)"
                    .into(),
            )
        }
    } else if !h.is_empty() && !h.contains("://") {
        Ok(format!("https://{h}"))
    } else if h.is_empty() {
        Err("an answer is required, e.g. threatq.example.org".into())
    } else {
        Err(format!("{h:?} is not an https:// URL"))
    }
}

pub fn check_status(s: &str) -> Result<String, String> {
    STATUSES
        .iter()
        .find(|x| x.eq_ignore_ascii_case(s))
        .map(|x| x.to_string())
        .ok_or_else(|| {
            format!(
                "{s:?} is not a status; choose one of {}",
                STATUSES.join(", ")
            )
        })
}

pub fn check_rulesets(s: &str) -> Result<String, String> {
    let ids: Vec<String> = s
        .split(',')
        .map(|x| x.trim().to_ascii_lowercase())
        .filter(|x| !x.is_empty())
        .collect();
    if ids.is_empty() {
        return Err("name at least one ruleset".into());
    }
    for id in &ids {
        if !RULESETS.contains(&id.as_str()) {
            return Err(format!(
                "{id:?} is not a ruleset; choose from {}",
                RULESETS.join(", ")
            ));
        }
    }
    Ok(ids.join(","))
}

pub fn check_engine(s: &str) -> Result<String, String> {
    let e = s.trim().to_ascii_lowercase();
    if crate::catalog::valid_engine(&e) {
        Ok(e)
    } else {
        Err(format!(
            "{s:?} is not an ET flavour; write e.g. suricata-7.0.3, suricata-5.0, snort-2.9.0 or snort-edge"
        ))
    }
}

pub fn check_bool(s: &str) -> Result<String, String> {
    match s.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "on" | "1" => Ok("true".into()),
        "n" | "no" | "false" | "off" | "0" => Ok("false".into()),
        _ => Err(format!("{s:?}: answer yes or no")),
    }
}

pub fn check_nonempty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("an answer is required".into())
    } else {
        Ok(s.trim().to_string())
    }
}

/// An oinkcode becomes a URL path segment: letters and digits only.
pub fn check_oinkcode(s: &str) -> Result<String, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(s.to_string())
    } else {
        Err("an oinkcode is letters and digits (ET Pro account page)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_validated() {
        assert_eq!(
            check_host("tq.example.org").unwrap(),
            "https://tq.example.org"
        );
        assert!(check_host("http://tq.example.org").is_err());
        assert!(check_host("http://127.0.0.1:8080").is_ok());
        assert!(check_host("").is_err());
        assert_eq!(check_status("non-malicious").unwrap(), "Non-Malicious");
        assert!(check_status("Indirect").is_err());
        assert_eq!(check_rulesets("ET-Open, et-pro").unwrap(), "et-open,et-pro");
        assert!(check_rulesets("et-closed").is_err());
        assert_eq!(check_engine("Suricata-7.0.3").unwrap(), "suricata-7.0.3");
        assert!(check_engine("suricata").is_err());
        assert!(check_oinkcode("abc123").is_ok());
        assert!(check_oinkcode("abc/../x").is_err());
    }

    #[test]
    fn piped_answers_fail_at_once_on_an_invalid_answer() {
        let mut a = Answers::Lines(Box::new(std::io::Cursor::new(b"\nclient\n".to_vec())));
        let e = a.ask("Client ID", None, check_nonempty).unwrap_err();
        assert!(
            e.to_string().contains("Client ID: an answer is required"),
            "{e}"
        );
    }
}
