//! `stigmer`: parse the command line, set up logging, dispatch, and map
//! failures to exit codes. All logic lives in the library.

use clap::Parser;
use stigmer::cli::{Cli, LocalCommand, Top};
use stigmer::commands;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let Top::Local(local) = cli.command;
    let daemon = match &local.command {
        None => local.start.foreground,
        Some(LocalCommand::Start(a)) => a.foreground,
        _ => false,
    };
    stigmer::telemetry::init(cli.verbose, cli.log_format, daemon);
    let result = match &local.command {
        None => commands::start::run(&local.start),
        Some(LocalCommand::Start(a)) => commands::start::run(a),
        Some(LocalCommand::Stop(a)) => commands::stop::run(a),
        Some(LocalCommand::Status(a)) => commands::status::run(a),
        Some(LocalCommand::Restart(a)) => commands::restart::run(a),
        Some(LocalCommand::Logs(a)) => commands::logs::run(a),
    };
    let code = match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.code()
        }
    };
    std::process::ExitCode::from(code as u8)
}
