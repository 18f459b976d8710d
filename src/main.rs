//! `stigmer`: parse the command line, set up logging, dispatch, and map
//! failures to exit codes. All logic lives in the library.

use clap::Parser;
use stigmer::cli::{Cli, LocalCommand, Top};
use stigmer::commands;
use stigmer::telemetry::{self, Otlp};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let Top::Local(local) = cli.command;
    let daemon_args = match &local.command {
        None => Some(&local.start),
        Some(LocalCommand::Start(a)) => Some(a),
        _ => None,
    }
    .filter(|a| a.foreground);
    // Only the daemon exports traces; the CLI's short life has none to tell.
    let otlp = daemon_args.and_then(|a| Otlp::from_env(a.otlp_endpoint.as_deref()));
    let _telemetry = telemetry::init(cli.verbose, cli.log_format, daemon_args.is_some(), otlp);
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
    drop(_telemetry); // flush traces before exiting
    std::process::ExitCode::from(code as u8)
}
