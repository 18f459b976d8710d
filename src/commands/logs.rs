//! `stigmer local logs [SERVICE] [-f] [-n LINES] [--daemon]`: Temporal's
//! log, a service's, or the daemon's, following across rotation.

use super::home;
use crate::cli::LogsArgs;
use crate::exit::{Code, Failure};
use crate::logfile;
use std::io::Write;

/// Run `logs`.
pub fn run(args: &LogsArgs) -> Result<Code, Failure> {
    let home = home(&args.home.home);
    let path = match args.service.as_deref() {
        _ if args.daemon => home.daemon_log(),
        None | Some(crate::config::services::TEMPORAL) => home.temporal_log(),
        Some(name) if crate::config::services::valid_name(name) => home.service_log(name),
        Some(name) => {
            return Err(Failure::Relayed(
                Code::Usage,
                format!("{name:?} is not a service name (lowercase letters, digits, '-', '_')"),
            ));
        }
    };
    crate::paths::refuse_symlink(&path)?;
    let mut out = std::io::stdout().lock();
    let lines = logfile::tail(&path, args.lines)?;
    if lines.is_empty() && !args.follow && !path.exists() {
        eprintln!("No log yet at {}.", path.display());
        return Ok(Code::Ok);
    }
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            return Ok(Code::Ok);
        }
    }
    if args.follow {
        // Ends when stdout closes (e.g. piped into `head`).
        let _ = logfile::follow(&path, &mut out);
    }
    Ok(Code::Ok)
}
