//! Logging (tracing). By default the CLI prints only its own few lines and
//! warnings; `-v` or `RUST_LOG` turns on debug logs. The daemon logs at
//! info to stderr (its log file when detached), pretty or JSON.

use crate::cli::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `daemon` raises the default level to
/// info (the daemon's log is its record of what happened).
pub fn init(verbose: bool, format: LogFormat, daemon: bool) {
    let default = match (verbose, daemon) {
        (true, _) => "stigmer=debug,info",
        (false, true) => "stigmer=info,warn",
        (false, false) => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
