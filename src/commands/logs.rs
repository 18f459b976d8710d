//! `stigmer local logs [SERVICE] [-f] [-n LINES] [--since WHEN]
//! [--service A,B] [--json] [--daemon]`: every unit's lines interleaved in
//! the order they were read from the processes, each prefixed with its
//! unit's name (colored on a terminal); or one unit's log alone
//! (`logs temporal`, `logs NAME`), or the daemon's. `-f` follows across
//! rotation until its reader goes away (exit 0), Ctrl-C (130) or SIGTERM
//! (143), or the instance stops (3); whatever bytes the log holds, each
//! line is printed (invalid UTF-8 lossily) and flushed as it comes.

use super::{home, running};
use crate::cli::LogsArgs;
use crate::exit::Failure;
use crate::logfile::{self, Followed};
use crate::model::Code;
use crate::paths::StateDir;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often `-f` asks whether the instance still runs.
pub(super) const INSTANCE_CHECK: Duration = Duration::from_secs(1);

/// Run `logs`.
pub fn run(args: &LogsArgs) -> Result<Code, Failure> {
    let home = home(&args.home.home);
    let alone = args.daemon || (args.service.is_some() && !args.json && args.since.is_none());
    if !alone {
        return super::logs_merged::run(args, &home);
    }
    let path = match args.service.as_deref() {
        _ if args.daemon => home.daemon_log(),
        Some(name) => log_of(&home, name)?,
        None => home.temporal_log(),
    };
    crate::paths::refuse_symlink(&path)?;
    // Before anything is printed: a Ctrl-C after the first line ends the
    // follow with its own exit code, not the default action's.
    let signals = args.follow.then(Signals::register).transpose()?;
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
    match signals {
        Some(signals) if out.flush().is_ok() => follow(&home, &path, &mut out, &signals),
        _ => Ok(Code::Ok),
    }
}

/// Unit `name`'s log file (`temporal` or a service).
pub(super) fn log_of(home: &StateDir, name: &str) -> Result<std::path::PathBuf, Failure> {
    match name {
        n if crate::config::services::valid_name(n) => Ok(home.unit_log(n)),
        n => Err(Failure::Relayed(
            Code::Usage,
            format!(
                "{n:?} is not a service name (lowercase letters, digits, '-', '_'; at most {} characters)",
                crate::config::services::MAX_NAME
            ),
        )),
    }
}

/// Ctrl-C and SIGTERM, noted (not acted on) while following.
pub(super) struct Signals {
    pub(super) int: Arc<AtomicBool>,
    pub(super) term: Arc<AtomicBool>,
}

impl Signals {
    pub(super) fn register() -> std::io::Result<Signals> {
        let s = Signals {
            int: Arc::new(AtomicBool::new(false)),
            term: Arc::new(AtomicBool::new(false)),
        };
        signal_hook::flag::register(signal_hook::consts::SIGINT, s.int.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, s.term.clone())?;
        Ok(s)
    }
}

/// Follow `path` until the output goes away, a signal, or the instance
/// stops; the exit code says which.
fn follow(
    home: &StateDir,
    path: &std::path::Path,
    out: &mut impl Write,
    signals: &Signals,
) -> Result<Code, Failure> {
    let (int, term) = (&signals.int, &signals.term);
    let mut gone = false;
    let mut next_check = Instant::now();
    let followed = logfile::follow(path, out, || {
        if int.load(Ordering::Relaxed) || term.load(Ordering::Relaxed) {
            return false;
        }
        if Instant::now() >= next_check {
            next_check = Instant::now() + INSTANCE_CHECK;
            gone = !running(home).unwrap_or(false);
        }
        !gone
    })?;
    Ok(match followed {
        Followed::OutputClosed => Code::Ok,
        Followed::Stopped if int.load(Ordering::Relaxed) => Code::Interrupted,
        Followed::Stopped if term.load(Ordering::Relaxed) => Code::Terminated,
        Followed::Stopped => {
            eprintln!(
                "The instance in {} is not running: nothing more will be logged.",
                home.root().display()
            );
            Code::NotRunning
        }
    })
}
