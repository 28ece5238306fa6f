//! `etferry` binary: parse the command line, run one subcommand, map the outcome to an exit code.

fn main() -> std::process::ExitCode {
    etferry::cli::main()
}
