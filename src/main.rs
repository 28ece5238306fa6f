//! `etferry` binary: parse the command line, run one subcommand, map the outcome to an exit code.

fn main() -> std::process::ExitCode {
    etferry::timing::start();
    tune_malloc();
    let code = etferry::cli::main();
    etferry::timing::print();
    code
}

/// glibc raises its mmap threshold each time a large block is freed, so later large blocks (the
/// decompressed archive members, megabytes each, parsed and dropped one by one) come from the
/// heap and stay resident after they are freed. A fixed threshold keeps them in their own
/// mappings, returned to the system on free: a full ruleset's ingest peaks about 6 MiB lower.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    // A refusal (return 0) leaves glibc's default, which is only less frugal.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
