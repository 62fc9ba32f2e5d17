//! `msgfs completions SHELL`: the shell's completion script, generated from the one clap
//! definition in `cli.rs`, so completions cannot drift from the command line.

use clap::CommandFactory;

use super::CmdResult;
use crate::cli::Cli;

pub fn run(shell: clap_complete::Shell) -> CmdResult {
    clap_complete::generate(shell, &mut Cli::command(), "msgfs", &mut std::io::stdout());
    Ok(0)
}
