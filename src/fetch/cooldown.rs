//! Cool-downs: a `429`/`403` with `Retry-After` keeps later runs away from a source, within
//! bounds: at most `http.max_cool_down`, ended by `--now` (which says so) and by a change of the
//! source's URL, and reported as a failure (exit 1) with its end time while it lasts.

use chrono::{DateTime, Utc};

use super::config::Source;
use super::http::HttpError;
use super::state::SourceState;
use super::{Ctx, Fail};
use crate::catalog::Plan;

/// Why a source is not contacted this run.
pub(super) enum CoolDown {
    Active {
        until: DateTime<Utc>,
        reason: String,
    },
    /// The state could not be updated.
    Unsaved(String),
}

/// `d` after `t`; saturates instead of overflowing (a hostile Retry-After must not panic).
fn after(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The URL a cool-down belongs to (as shown: without secrets).
fn source_url(src: &Source) -> String {
    match &src.plan {
        Plan::Archive { url, .. } => url.shown().to_string(),
        Plan::Files(files) => files
            .first()
            .map(|(_, u)| u.shown().to_string())
            .unwrap_or_default(),
    }
}

impl Ctx<'_> {
    /// Is `src` cooling down? A cool-down ends early when `--now` overrides it or the source's
    /// URL changed since it was set, and never reaches past `max_cool_down` from now (a state
    /// written before the cap, or with a clock far off, is clamped once). The state returned has
    /// the cool-down cleared when it no longer holds.
    pub(super) fn cool_down(
        &self,
        src: &Source,
        mut st: SourceState,
    ) -> Result<SourceState, CoolDown> {
        let Some(until) = st.cool_down_until else {
            return Ok(st);
        };
        let cap = after(self.now, self.cfg.http.max_cool_down.get());
        let url = source_url(src);
        let moved = st.cool_down_url.as_deref().is_some_and(|u| u != url);
        let clamp = until > cap;
        let end = if until <= self.now {
            None
        } else if moved {
            tracing::info!(
                "{}: the source URL changed since upstream asked us to wait; the cool-down does not apply to {url}",
                src.name
            );
            None
        } else if self.opts.now {
            tracing::warn!(
                "{}: --now overrides the cool-down until {}",
                src.name,
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            None
        } else if clamp {
            Some(cap)
        } else {
            return Err(CoolDown::Active {
                until,
                reason: st
                    .cool_down_reason
                    .clone()
                    .unwrap_or_else(|| "Retry-After".into()),
            });
        };
        st.cool_down_until = end;
        if end.is_none() {
            st.cool_down_reason = None;
            st.cool_down_url = None;
        }
        self.state
            .save(&src.name, &st)
            .map_err(|e| CoolDown::Unsaved(format!("{e:#}")))?;
        match end {
            Some(until) => Err(CoolDown::Active {
                until,
                reason: format!(
                    "{}; clamped to max_cool_down {}",
                    st.cool_down_reason.as_deref().unwrap_or("Retry-After"),
                    humantime::format_duration(self.cfg.http.max_cool_down.get())
                ),
            }),
            None => Ok(st),
        }
    }

    /// Record a cool-down asked for by upstream (at most `max_cool_down`), then return the
    /// failure.
    pub(super) fn http_fail(&self, src: &Source, e: HttpError) -> Fail {
        if let Some(asked) = e.cool_down {
            let max = self.cfg.http.max_cool_down.get();
            let d = asked.min(max);
            let until = after(self.now, d);
            let capped = if asked > max {
                format!(
                    " (capped at max_cool_down {})",
                    humantime::format_duration(max)
                )
            } else {
                String::new()
            };
            // Never replace an unreadable state with a default one: that would lose the sequence.
            let saved = self.state.load(&src.name).and_then(|mut st| {
                st.cool_down_until = Some(until);
                st.cool_down_reason = Some(e.message.clone());
                st.cool_down_url = Some(source_url(src));
                self.state.save(&src.name, &st)
            });
            if let Err(se) = saved {
                return Fail(format!(
                    "{}; and the cool-down could not be saved: {se:#}",
                    e.message
                ));
            }
            return Fail(format!(
                "{}; upstream asked us to wait {}{capped}: cooling down until {} (later runs skip this source until then, unless run with --now)",
                e.message,
                humantime::format_duration(d),
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        Fail(e.message)
    }
}
