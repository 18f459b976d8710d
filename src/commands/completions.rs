//! `stigmer completions SHELL` and `stigmer man --dir DIR`: generated from
//! the same clap definition as the commands themselves (clap_complete,
//! clap_mangen), so they never drift from what the binary accepts.

use crate::cli::Cli;
use crate::exit::Failure;
use crate::model::Code;
use clap::CommandFactory;
use std::path::Path;

/// Print the completion script for `shell`.
pub fn print(shell: clap_complete::Shell) {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "stigmer",
        &mut std::io::stdout(),
    );
}

/// Write `stigmer.1` and a page per subcommand (`stigmer-local.1`,
/// `stigmer-local-start.1`, ...) into `dir`.
pub fn man(dir: &Path) -> Result<Code, Failure> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    println!("Wrote the man pages to {}.", dir.display());
    Ok(Code::Ok)
}
