//! Progress bars for downloads, parsing and uploads: the only module that uses indicatif.
//!
//! Bars are drawn to stderr, never to stdout (stdout carries reports and JSON), and only when a
//! person is watching: stderr is a terminal, `CI` is not set and logs are text. Everywhere else
//! (services, cron, pipes, tests, `--log-format json`) every handle is a hidden bar whose updates
//! cost an atomic add. Callers update per chunk or batch, never per rule.
//!
//! Log lines written while a bar is on screen go through [`StderrWriter`], which lifts the bars,
//! writes the line and redraws them, so the two do not garble each other.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Off until the CLI decides otherwise: library users and tests never draw.
static ENABLED: AtomicBool = AtomicBool::new(false);
static MULTI: OnceLock<MultiProgress> = OnceLock::new();

/// Whether bars should be drawn, from the facts `cli` knows: is stderr a terminal, the value of
/// the `CI` variable, and whether logs are JSON (machine readers do not want control codes).
pub fn wanted(stderr_is_terminal: bool, ci: Option<&str>, json_logs: bool) -> bool {
    let ci = ci.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    stderr_is_terminal && !ci && !json_logs
}

/// Called once by `cli::main` with the decision of [`wanted`] for this process.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

/// Decide from the process's own stderr and environment (for `cli::main`).
pub fn enable_for_this_process(json_logs: bool) {
    let ci = std::env::var("CI").ok();
    enable(wanted(io::stderr().is_terminal(), ci.as_deref(), json_logs));
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn multi() -> &'static MultiProgress {
    // A steady 10 Hz at most: redrawing is never the bottleneck, however often `inc` is called.
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)))
}

/// One progress bar. Hidden (a no-op) unless bars are enabled; cleared from the screen when dropped.
pub struct Progress(ProgressBar);

impl Progress {
    /// Advance by `n` (bytes or items).
    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    /// Whether nothing will ever be drawn (not a terminal, CI, JSON logs).
    pub fn is_hidden(&self) -> bool {
        self.0.is_hidden()
    }

    /// Position so far.
    pub fn position(&self) -> u64 {
        self.0.position()
    }

    /// Remove the bar from the screen (also done on drop).
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.0.is_finished() {
            self.0.finish_and_clear();
        }
    }
}

/// A bar that draws nothing.
pub fn hidden() -> Progress {
    Progress(ProgressBar::hidden())
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants; a bad one would only lose the styling, never the run.
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn shown(len: Option<u64>, label: Cow<'static, str>, bar: &str, spinner: &str) -> Progress {
    if !enabled() {
        return hidden();
    }
    let (template, spin) = match len {
        Some(_) => (bar, false),
        None => (spinner, true),
    };
    let pb = ProgressBar::with_draw_target(len, ProgressDrawTarget::hidden())
        .with_style(style(template))
        .with_message(label);
    let pb = multi().add(pb);
    if spin {
        pb.enable_steady_tick(Duration::from_millis(200));
    }
    Progress(pb)
}

/// Bytes of a download or a parse; `len` unknown gives a spinner with the bytes so far.
pub fn bytes(len: Option<u64>, label: impl Into<Cow<'static, str>>) -> Progress {
    shown(
        len,
        label.into(),
        "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        "{spinner} {msg:24!} {bytes} {bytes_per_sec}",
    )
}

/// Items (files, signatures) out of `total`.
pub fn count(total: u64, label: impl Into<Cow<'static, str>>) -> Progress {
    shown(
        Some(total),
        label.into(),
        "{msg:24!} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        "{spinner} {msg:24!} {pos}",
    )
}

/// The stderr writer for log lines: lifts any bars on screen while the line is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match MULTI.get() {
            Some(m) if enabled() => m.suspend(|| io::stderr().write(buf)),
            _ => io::stderr().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // One suspend per log line (tracing writes a formatted line in one call).
        match MULTI.get() {
            Some(m) if enabled() => m.suspend(|| io::stderr().write_all(buf)),
            _ => io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrWriter {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> Self::Writer {
        StderrWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_on_a_terminal_without_ci_or_json_logs() {
        assert!(wanted(true, None, false));
        assert!(wanted(true, Some(""), false));
        assert!(wanted(true, Some("false"), false));
        assert!(!wanted(false, None, false), "a pipe or file gets no bar");
        assert!(!wanted(true, Some("true"), false), "CI gets no bar");
        assert!(!wanted(true, Some("1"), false));
        assert!(!wanted(true, None, true), "JSON logs get no bar");
    }

    #[test]
    fn a_process_whose_stderr_is_not_a_terminal_gets_hidden_bars_that_still_count() {
        // Decide as the CLI does, for a stderr that is not a terminal.
        enable(wanted(false, None, false));
        let b = bytes(Some(1 << 20), "emerging.rules.tar.gz");
        let c = count(500, "sending to ThreatQ");
        let s = bytes(None, "unknown length");
        assert!(b.is_hidden() && c.is_hidden() && s.is_hidden());
        b.inc(65536);
        b.inc(65536);
        c.inc(100);
        assert_eq!((b.position(), c.position()), (131072, 100));
        b.finish();
        assert!(MULTI.get().is_none(), "nothing was set up for drawing");
    }
}
