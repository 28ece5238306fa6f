//! `etferry completions SHELL` and `etferry man`: generated from the clap definition, so they never
//! drift from the real options.

use clap::CommandFactory;

use crate::cli::{Cli, Global};
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {}

/// Print completions for `shell` on stdout.
pub fn run(args: Args, _g: &Global) -> anyhow::Result<Exit> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "etferry", &mut std::io::stdout());
    Ok(Exit::Ok)
}

/// Print the man page (roff) on stdout.
pub fn run_man(_args: ManArgs, _g: &Global) -> anyhow::Result<Exit> {
    let man = clap_mangen::Man::new(Cli::command());
    man.render(&mut std::io::stdout())?;
    Ok(Exit::Ok)
}
