//! `stigmer local restart`: a new Temporal pid. When a daemon runs, it is
//! sent SIGHUP (identity verified) and gracefully replaces Temporal, keeping
//! its own lock, ports and counters; this command waits until the new pid
//! serves. When nothing runs, it starts one.

use super::{Found, daemon_identity, discover, fetch_status};
use crate::cli::RestartArgs;
use crate::config::Config;
use crate::exit::{Code, Failure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Run `restart`.
pub fn run(args: &RestartArgs) -> Result<Code, Failure> {
    let cfg = Config::from_args(&args.start)?;
    let record = match discover(&cfg.home)? {
        Found::NotRunning => return super::start::run(&args.start),
        Found::Running(r) => r,
    };
    let t0 = Instant::now();
    let Some(pid) = daemon_identity(&cfg.home, record.as_deref()).map(|d| d.pid) else {
        return Err(Failure::StartFailed(
            "the running daemon cannot be verified (PID file missing or stale); run `stigmer local stop` first".into(),
        ));
    };
    let record = record.ok_or_else(|| Failure::StartFailed("the PID file is unreadable".into()))?;
    let old = fetch_status(&record).ok().and_then(|d| d.temporal.pid);
    kill(Pid::from_raw(pid), Signal::SIGHUP)
        .map_err(|e| Failure::StartFailed(format!("cannot signal daemon pid {pid}: {e}")))?;
    let deadline = Instant::now() + cfg.timeout + cfg.stop_grace;
    loop {
        if let Ok(doc) = fetch_status(&record)
            && doc.is_ready()
            && doc.temporal.pid.is_some()
            && doc.temporal.pid != old
        {
            println!(
                "Restarted Temporal in {:.2}s: pid {} -> {}.",
                t0.elapsed().as_secs_f64(),
                old.map_or_else(|| "?".into(), |p| p.to_string()),
                doc.temporal.pid.unwrap_or_default()
            );
            return Ok(Code::Ok);
        }
        if Instant::now() >= deadline {
            return Err(Failure::StartTimeout {
                secs: (cfg.timeout + cfg.stop_grace).as_secs_f64(),
                reason: "the restarted Temporal did not become ready".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
