//! The connector's row in ThreatQ (Settings → Incoming Feeds, threatq-api.md §1.9): its enable
//! toggle is honoured before anything is sent, and a successful run is reported to it. The
//! report is an untested assumption of the reference: it never fails a run.

use reqwest::Method;
use serde_json::{json, Value};

use super::connect::id_of;
use super::related::query_value;
use super::sink::ThreatQSink;
use crate::sinks::ExportOutcome;

/// What `export` began and `export_indicators` finishes.
#[derive(Debug, Default)]
pub(crate) struct Run {
    /// The connector row's id, when configured and found.
    pub id: Option<u64>,
    /// Set when the toggle is off: nothing is sent this run.
    pub paused: Option<String>,
    /// Items ThreatQ confirmed this run (signatures and indicators).
    pub confirmed: usize,
    /// Some item failed: the run is not reported as an import.
    pub failed: bool,
}

impl Run {
    pub(super) fn note(&mut self, out: &ExportOutcome) {
        self.confirmed += out.confirmed.len();
        self.failed |= !out.failed.is_empty();
    }
}

/// The words logged and stored when the toggle is off.
pub const DISABLED: &str = "disabled in ThreatQ (Settings → Incoming Feeds)";

/// ThreatQ's `is_active` in the forms it has been seen in: the SDK treats `false`, `"False"` and
/// `""` as off; `0`, `"0"` and `null` are taken as off too. A row without the field is on.
pub fn is_off(v: Option<&Value>) -> bool {
    match v {
        None => false,
        Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => {
            let s = s.trim();
            s.is_empty() || s == "0" || s.eq_ignore_ascii_case("false")
        }
        Some(_) => false,
    }
}

impl ThreatQSink {
    /// Look the connector row up (when configured) and decide whether this run sends.
    pub(super) fn begin_run(&mut self) -> Run {
        let mut run = Run::default();
        let Some(c) = self.cfg.connector.clone() else {
            return run;
        };
        let path = format!("/api/connectors?name={}", query_value(&c.name));
        let row = match self.api.call(Method::GET, &path, None) {
            Ok(v) => v
                .get("data")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .cloned(),
            Err(e) => {
                // The toggle cannot be read: export as usual (the row is a convenience, the
                // export state in the store is what keeps changes safe).
                tracing::warn!(
                    "ThreatQ connector {:?}: cannot read it: {}",
                    c.name,
                    e.message()
                );
                return run;
            }
        };
        let Some(row) = row else {
            if !self.warned_missing {
                tracing::warn!(
                    "ThreatQ has no connector named {:?} (Settings → Incoming Feeds); exporting as usual",
                    c.name
                );
                self.warned_missing = true;
            }
            return run;
        };
        run.id = row.get("id").and_then(id_of);
        if c.honor_toggle && is_off(row.get("is_active")) {
            tracing::warn!(
                "ThreatQ connector {:?} is {DISABLED}: nothing sent, changes stay pending",
                c.name
            );
            run.paused = Some(format!("connector {:?} {DISABLED}", c.name));
        }
        run
    }

    /// After a run that sent something and failed nothing: `PUT /api/connectors/{id}` with the
    /// time and count. Refused or ignored: logged at debug, never an error.
    pub(super) fn finish_run(&mut self, run: Run) {
        let report = self.cfg.connector.as_ref().is_some_and(|c| c.report_runs);
        let (Some(id), true) = (run.id, report) else {
            return;
        };
        if run.paused.is_some() || run.failed || run.confirmed == 0 {
            return;
        }
        let body = json!({
            "last_import_at": chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
            "last_import_count": run.confirmed,
        });
        match self
            .api
            .call(Method::PUT, &format!("/api/connectors/{id}"), Some(&body))
        {
            Ok(_) => tracing::debug!(
                "ThreatQ connector {id}: run reported ({} items)",
                run.confirmed
            ),
            Err(e) => tracing::debug!(
                "ThreatQ connector {id}: run report refused: {}",
                e.message()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggle_forms_table() {
        let table: Vec<(Option<Value>, bool)> = vec![
            (Some(json!(true)), false),
            (Some(json!(false)), true),
            (Some(json!("True")), false),
            (Some(json!("False")), true),
            (Some(json!("false")), true),
            (Some(json!("")), true),
            (Some(json!(0)), true),
            (Some(json!("0")), true),
            (Some(json!(1)), false),
            (Some(json!("1")), false),
            (Some(Value::Null), true),
            (None, false),
        ];
        for (v, off) in table {
            assert_eq!(is_off(v.as_ref()), off, "{v:?}");
        }
    }
}
