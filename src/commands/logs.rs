//! `stigmer local logs [-f] [-n LINES] [--daemon]`: Temporal's log (or the
//! daemon's), following across rotation.

use super::home;
use crate::cli::LogsArgs;
use crate::exit::{Code, Failure};
use crate::logfile;
use std::io::Write;

/// Run `logs`.
pub fn run(args: &LogsArgs) -> Result<Code, Failure> {
    let home = home(&args.home.home);
    let path = if args.daemon {
        home.daemon_log()
    } else {
        home.temporal_log()
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
