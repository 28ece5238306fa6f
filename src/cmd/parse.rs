//! `etferry parse`: parse rule files, directories or archives and print a summary (or one JSON
//! object). Rule errors are data (exit 0); only input that cannot be read ends with exit 1.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use serde::Serialize;

use crate::archive::{self, Kind, Limits};
use crate::cli::Global;
use crate::exit::{self, Exit};
use rayon::prelude::*;

use crate::rules::{self, Dialect, FileSummary, ParseOptions};

/// How many errors the summary and `error_samples` show without `--errors`.
const SAMPLE_ERRORS: usize = 10;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rule dialect (auto-detected by default): auto, suricata, snort2 or snort3
    #[arg(long, default_value = "auto")]
    pub dialect: String,
    /// Print one JSON object on stdout
    #[arg(long)]
    pub json: bool,
    /// List every rule error (in the summary, or in `error_samples` with --json)
    #[arg(long)]
    pub errors: bool,
    /// .rules files, directories, .tar.gz or .zip archives
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,
}

/// Parse every input and print the summary.
pub fn run(args: Args, _g: &Global) -> anyhow::Result<Exit> {
    let dialect: Dialect = args.dialect.parse().map_err(|_| {
        exit::usage(format!(
            "--dialect {:?}: expected auto, suricata, snort2 or snort3",
            args.dialect
        ))
    })?;
    let opts = ParseOptions {
        dialect,
        ..ParseOptions::default()
    };
    let files = collect_inputs(&args.paths)?;
    if files.is_empty() {
        eprintln!("etferry: warning: no .rules files found in the given paths");
    }
    // Count-only parsing: the command needs counts, identities and errors, not the rules, so
    // memory stays bounded by the parser's chunk size instead of growing with the ruleset; the
    // pages of a mapped file leave memory once their chunk is parsed.
    // Files in parallel (and each large file in chunks); results keep the input order.
    let parsed: Vec<(String, FileSummary)> = files
        .par_iter()
        .map(|(name, data)| {
            let release = |r: std::ops::Range<usize>| data.release(r);
            let summary = rules::summarize_releasing(name, data, &opts, &release);
            (name.clone(), summary)
        })
        .collect();
    drop(files);
    let summary = summarise(&parsed, args.errors);

    let mut out = std::io::stdout().lock();
    if args.json {
        // Serialise first, then write: an io::Error (a closed pipe) then reaches `cli::main` as
        // itself, which treats a broken pipe as a normal end.
        let json = serde_json::to_string(&summary)?;
        writeln(&mut out, &json)?;
    } else {
        print_text(&mut out, &summary, &parsed, args.errors)?;
    }
    Ok(Exit::Ok)
}

fn writeln(out: &mut impl std::io::Write, s: &str) -> std::io::Result<()> {
    out.write_all(s.as_bytes())?;
    out.write_all(b"\n")
}

/// Read every PATH into memory as `(display name, bytes)`, in a deterministic order: the PATHs
/// in the order given, directory entries sorted by name, archive members in archive order.
///
/// A directory contributes its `*.rules` files, an archive its `*.rules` members (named
/// `<archive>/<member>`); a file given explicitly is parsed whatever its name.
pub fn collect_inputs(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<(String, Input)>> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |name: String, data: Input, files: &mut Vec<(String, Input)>| {
        // The same file named twice (e.g. `dir dir/x.rules`) is parsed once.
        if seen.insert(name.clone()) {
            files.push((name, data));
        }
    };
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
                let entry = entry.with_context(|| format!("walking {}", path.display()))?;
                if entry.file_type().is_file()
                    && is_rules_name(&entry.file_name().to_string_lossy())
                {
                    let p = entry.path();
                    let data = Input::open(p)?;
                    push(p.display().to_string(), data, &mut files);
                }
            }
            continue;
        }
        let data = Input::open(path)?;
        let name = path.display().to_string();
        match archive::detect(&name, &data) {
            Kind::Plain => push(name, data, &mut files),
            Kind::TarGz | Kind::Zip => {
                let members = archive::read_archive(&name, &data, &Limits::default())?;
                for m in members {
                    let base = m.path.rsplit('/').next().unwrap_or(&m.path);
                    if is_rules_name(base) {
                        push(
                            format!("{name}/{}", m.path),
                            Input::Owned(m.data),
                            &mut files,
                        );
                    }
                }
            }
        }
    }
    Ok(files)
}

/// The bytes of one input: read into memory, or mapped for large plain files.
pub enum Input {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Input {
    /// Files above this size are mapped: copying hundreds of MB into a fresh buffer costs more in
    /// page faults than parsing them.
    const MAP_ABOVE: u64 = 4 << 20;

    /// No input is larger than this (the whole ET corpus ten times over is about 400 MB); a
    /// device like `/dev/zero` is refused before it is read.
    pub const CAP: u64 = 1 << 30;

    fn open(path: &std::path::Path) -> anyhow::Result<Input> {
        let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("{}", path.display()))?;
        if !meta.is_file() {
            return Err(exit::usage(format!(
                "{}: not a regular file (a device, FIFO or socket is not parsed)",
                crate::safe_name::path(path)
            )));
        }
        let len = meta.len();
        if len > Self::CAP {
            return Err(exit::usage(format!(
                "{}: {len} bytes is over the input cap of {} bytes (1 GiB)",
                crate::safe_name::path(path),
                Self::CAP
            )));
        }
        if len > Self::MAP_ABOVE {
            // SAFETY: the map is read-only and private to this short-lived process; if another
            // process truncates the file meanwhile we may read garbage or get SIGBUS, which is the
            // accepted trade-off of grep-like tools (ripgrep maps files the same way).
            if let Ok(m) = unsafe { memmap2::Mmap::map(&file) } {
                return Ok(Input::Mapped(m));
            }
        }
        let mut data = Vec::with_capacity(len as usize);
        // A file that grows while it is read still stops at the cap.
        std::io::Read::read_to_end(&mut std::io::Read::take(&file, Self::CAP + 1), &mut data)
            .with_context(|| format!("{}", path.display()))?;
        if data.len() as u64 > Self::CAP {
            return Err(exit::usage(format!(
                "{}: larger than the input cap of {} bytes (1 GiB)",
                crate::safe_name::path(path),
                Self::CAP
            )));
        }
        Ok(Input::Owned(data))
    }
}

impl Input {
    /// Let the pages wholly inside `range` of a mapped input leave this process's memory (its
    /// resident set): they are parsed and not needed again. Owned inputs keep their bytes.
    fn release(&self, range: std::ops::Range<usize>) {
        let Input::Mapped(m) = self else { return };
        let page = page_size();
        let start = range.start.div_ceil(page) * page;
        let end = range.end.min(m.len()) / page * page;
        if end > start {
            // SAFETY: the map is private and read-only, so no page holds data of its own:
            // MADV_DONTNEED only drops the process's reference, and a page touched again (by a
            // neighbouring chunk's parser, or a slice still alive) is read back from the page cache
            // with the same bytes. A failure only means the pages stay resident.
            let _ = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
}

/// The system's page size (4 KiB if it cannot be read).
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

impl std::ops::Deref for Input {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Input::Owned(v) => v,
            Input::Mapped(m) => m,
        }
    }
}

fn is_rules_name(name: &str) -> bool {
    rules::is_rules_file(name) && !name.starts_with('.')
}

/// Rule and error counts of one file.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub rules: usize,
    pub enabled: usize,
    pub disabled: usize,
    pub errors: usize,
}

/// One rule error as shown in `error_samples`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorSample {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// The `--json` object; field order is the documented shape.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub files: usize,
    pub rules: usize,
    pub enabled: usize,
    pub disabled: usize,
    pub errors: usize,
    /// Distinct (gid, sid) identities carried by more than one rule (enabled or disabled).
    pub duplicates: usize,
    #[serde(serialize_with = "ordered_map")]
    pub by_file: Vec<(String, Counts)>,
    pub error_samples: Vec<ErrorSample>,
}

/// `by_file` as a JSON object whose keys keep the input order (serde_json's own map would sort).
fn ordered_map<S: serde::Serializer>(v: &[(String, Counts)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, c)| (k, c)))
}

/// Count rules, errors and duplicate identities; keep every error when `all_errors`, else the
/// first few.
pub fn summarise(parsed: &[(String, FileSummary)], all_errors: bool) -> Summary {
    let mut by_file = Vec::with_capacity(parsed.len());
    let mut ids: HashMap<(u32, u32), u32> = HashMap::new();
    let mut samples = Vec::new();
    let (mut enabled, mut disabled, mut errors) = (0, 0, 0);
    for (file, fs) in parsed {
        for &key in &fs.keys {
            *ids.entry(key).or_default() += 1;
        }
        let c = Counts {
            rules: fs.enabled + fs.disabled,
            enabled: fs.enabled,
            disabled: fs.disabled,
            errors: fs.errors.len(),
        };
        for e in &fs.errors {
            if all_errors || samples.len() < SAMPLE_ERRORS {
                samples.push(ErrorSample {
                    file: e.file.clone(),
                    line: e.line,
                    reason: e.reason.clone(),
                });
            }
        }
        enabled += c.enabled;
        disabled += c.disabled;
        errors += c.errors;
        by_file.push((file.clone(), c));
    }
    Summary {
        files: parsed.len(),
        rules: enabled + disabled,
        enabled,
        disabled,
        errors,
        duplicates: ids.values().filter(|&&n| n > 1).count(),
        by_file,
        error_samples: samples,
    }
}

fn print_text(
    out: &mut impl std::io::Write,
    s: &Summary,
    parsed: &[(String, FileSummary)],
    all_errors: bool,
) -> std::io::Result<()> {
    let width = s.by_file.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
    for ((file, c), (_, fs)) in s.by_file.iter().zip(parsed) {
        writeln(
            out,
            &format!(
                "{file:<width$}  {:>6} rules ({:>6} enabled, {:>6} disabled)  {:>4} errors  [{}]",
                c.rules, c.enabled, c.disabled, c.errors, fs.dialect
            ),
        )?;
    }
    writeln(
        out,
        &format!(
            "total: {}, {} rules ({} enabled, {} disabled), {} errors, {} duplicate (gid, sid)",
            crate::human::count(s.files as u64, "file"),
            s.rules,
            s.enabled,
            s.disabled,
            s.errors,
            s.duplicates
        ),
    )?;
    if s.errors > 0 {
        writeln(out, "")?;
        for e in &s.error_samples {
            writeln(out, &format!("{}:{}: {}", e.file, e.line, e.reason))?;
        }
        if !all_errors && s.errors > s.error_samples.len() {
            writeln(
                out,
                &format!(
                    "... and {} more (--errors lists every one)",
                    s.errors - s.error_samples.len()
                ),
            )?;
        }
    }
    Ok(())
}
