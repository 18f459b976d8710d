//! `stigmer local restart`: a new Temporal pid. When a daemon runs, it is
//! sent SIGHUP (identity verified) and gracefully replaces Temporal, keeping
//! its own lock, ports and counters; this command waits until the new pid
//! serves. When nothing runs (or the daemon goes away meanwhile, e.g. a
//! concurrent stop), it starts one.

use super::{Found, daemon_identity, discover, fetch_status};
use crate::cli::RestartArgs;
use crate::config::Config;
use crate::exit::{Code, Failure};
use crate::process::Identity;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Run `restart` with `cfg` (used when it has to start).
pub fn run(args: &RestartArgs, cfg: Config) -> Result<Code, Failure> {
    let t0 = Instant::now();
    let deadline = t0 + cfg.timeout + cfg.stop_grace;
    // (daemon we signalled, Temporal pid it had) once SIGHUP is sent.
    let mut signalled: Option<(Identity, Option<i32>)> = None;
    loop {
        let record = match discover(&cfg.home)? {
            Found::NotRunning => return super::start::run(&args.start, cfg),
            Found::Running(r) => r,
        };
        let daemon = daemon_identity(&cfg.home, record.as_deref());
        match (&signalled, &daemon, record.as_deref()) {
            (None, Some(d), Some(r)) => {
                let old = fetch_status(r).ok().and_then(|doc| doc.temporal.pid);
                kill(Pid::from_raw(d.pid), Signal::SIGHUP).map_err(|e| {
                    Failure::StartFailed(format!("cannot signal daemon pid {}: {e}", d.pid))
                })?;
                signalled = Some((d.clone(), old));
            }
            (Some((sig, old)), Some(d), Some(r)) if sig == d => {
                if let Ok(doc) = fetch_status(r)
                    && doc.is_ready()
                    && doc.temporal.pid.is_some()
                    && doc.temporal.pid != *old
                {
                    println!(
                        "Restarted Temporal in {:.2}s: pid {} -> {}.",
                        t0.elapsed().as_secs_f64(),
                        old.map_or_else(|| "?".into(), |p| p.to_string()),
                        doc.temporal.pid.unwrap_or_default()
                    );
                    return Ok(Code::Ok);
                }
            }
            // A different daemon took over (ours stopped and another
            // started): its Temporal is new by construction.
            (Some(_), Some(_), Some(_)) => return super::start::run(&args.start, cfg),
            // Mid-handoff or PID file being rewritten: look again shortly.
            _ => {}
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
