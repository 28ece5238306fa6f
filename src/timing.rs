//! Where one process spends its time and memory, for the benchmarks (`scripts/bench-ingest.sh`).
//!
//! With `ETFERRY_TIMINGS=1` in the environment, the process prints to stderr at exit the
//! wall-clock time of each stage mark since `main` started, the peak RSS reached by then, and
//! the CPU time of the activities that run in parallel (decompress, parse) and so have no stage
//! of their own. Without it every call is a relaxed atomic load: nothing is recorded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Environment variable that turns the report on.
pub const ENV: &str = "ETFERRY_TIMINGS";

static ON: AtomicBool = AtomicBool::new(false);
static START: OnceLock<Instant> = OnceLock::new();
static MARKS: Mutex<Vec<(&'static str, Duration, u64)>> = Mutex::new(Vec::new());

/// Work that overlaps other work, timed as CPU time summed over threads.
#[derive(Debug, Clone, Copy)]
pub enum Activity {
    /// Inflating and untarring the payload archives (one thread).
    Decompress,
    /// Parsing rules files and hashing rule texts (every parser thread).
    Parse,
    /// Serialising and gzipping the change report (its own thread, beside the row writes).
    Report,
    /// Writing rule rows (the store's thread, while later files are parsed).
    Rows,
    /// The store's thread waiting for the next parsed rules file.
    WaitParsed,
}

const ACTIVITIES: [(Activity, &str); 5] = [
    (Activity::Decompress, "decompress"),
    (Activity::Parse, "parse + hash"),
    (Activity::Report, "report json.gz"),
    (Activity::Rows, "rule rows"),
    (Activity::WaitParsed, "waiting for parsers"),
];

static CPU_NS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Start the clock; reads [`ENV`]. Called first thing in `main`.
pub fn start() {
    START.get_or_init(Instant::now);
    if std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        ON.store(true, Ordering::Relaxed);
    }
}

fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Record that `label` was reached now.
pub fn mark(label: &'static str) {
    if !on() {
        return;
    }
    let at = START.get_or_init(Instant::now).elapsed();
    let rss = peak_rss_kib();
    if let Ok(mut m) = MARKS.lock() {
        m.push((label, at, rss));
    }
}

/// Add `d` to an activity's total.
pub fn add(a: Activity, d: Duration) {
    if on() {
        CPU_NS[a as usize].fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Run `f`, adding the time it took to `a`.
pub fn timed<T>(a: Activity, f: impl FnOnce() -> T) -> T {
    if !on() {
        return f();
    }
    let t = Instant::now();
    let out = f();
    add(a, t.elapsed());
    out
}

/// Adds the time from its creation to its drop to an activity.
pub struct Span(Activity, Option<Instant>);

impl Span {
    pub fn new(a: Activity) -> Span {
        Span(a, on().then(Instant::now))
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(t) = self.1 {
            add(self.0, t.elapsed());
        }
    }
}

/// Print the report (when on).
pub fn print() {
    if !on() {
        return;
    }
    mark("exit");
    let Ok(marks) = MARKS.lock() else { return };
    let mut out = String::from("timings: stage reached at ms (+ms since the previous), peak RSS MiB\n");
    let mut prev = Duration::ZERO;
    for (label, at, rss) in marks.iter() {
        out.push_str(&format!(
            "  {label:<24} {:>8.1} (+{:>6.1}) {:>7.1}\n",
            ms(*at),
            ms(at.saturating_sub(prev)),
            *rss as f64 / 1024.0
        ));
        prev = *at;
    }
    out.push_str("timings: ms of overlapping work (wall time inside each, summed over threads)\n");
    for (a, name) in ACTIVITIES {
        let ns = CPU_NS[a as usize].load(Ordering::Relaxed);
        out.push_str(&format!("  {name:<24} {:>8.1}\n", ns as f64 / 1e6));
    }
    eprint!("{out}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Peak resident set size of this process so far, in KiB (0 where unknown).
fn peak_rss_kib() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes into the struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
            return ru.ru_maxrss.max(0) as u64;
        }
    }
    0
}
