//! `stigmer local restart [SERVICE]`: a new pid. For Temporal, the daemon
//! is sent SIGHUP (identity verified) and gracefully replaces Temporal,
//! keeping its own lock, ports and counters; for a service, the daemon is
//! asked on its control socket. Either way this command waits until the
//! new pid is ready. When nothing runs (or the daemon goes away meanwhile,
//! e.g. a concurrent stop), it starts everything.

use super::{Check, Found, daemon_identity, discover, fetch_status, running};
use crate::cli::RestartArgs;
use crate::config::Config;
use crate::daemon::control;
use crate::exit::Failure;
use crate::model::Code;
use crate::model::TEMPORAL;
use crate::process::Identity;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Run `restart` with `cfg` (used when it has to start).
pub fn run(args: &RestartArgs, cfg: Config) -> Result<Code, Failure> {
    match args.service.as_deref() {
        None | Some(TEMPORAL) => restart_temporal(args, cfg),
        Some(name) => restart_service(args, cfg, name),
    }
}

/// Ask the daemon to restart service `name`, and wait for the new pid.
fn restart_service(args: &RestartArgs, cfg: Config, name: &str) -> Result<Code, Failure> {
    let t0 = Instant::now();
    let deadline = t0 + cfg.timeout + cfg.stop_grace;
    if !running(&cfg.home)? {
        return super::start::run(&args.start, cfg);
    }
    let service_pid =
        |doc: &crate::status::StatusDoc| doc.services.get(name).map(|s| (s.pid, s.ready));
    let doc = fetch_status(&cfg.home, Check::Snapshot).map_err(Failure::StartFailed)?;
    let Some((old, _)) = service_pid(&doc) else {
        return Err(Failure::Relayed(
            Code::Usage,
            format!(
                "no service named {name:?} (declared: temporal{})",
                doc.services
                    .keys()
                    .map(|k| format!(", {k}"))
                    .collect::<String>()
            ),
        ));
    };
    control::request(&cfg.home.control_socket(), &format!("restart {name}"))
        .map_err(Failure::StartFailed)?;
    loop {
        if let Ok(doc) = fetch_status(&cfg.home, Check::Snapshot)
            && let Some((Some(pid), true)) = service_pid(&doc)
            && Some(pid) != old
        {
            println!(
                "Restarted service {name} in {:.2}s: pid {} -> {pid}.",
                t0.elapsed().as_secs_f64(),
                old.map_or_else(|| "-".into(), |p| p.to_string()),
            );
            return Ok(Code::Ok);
        }
        if Instant::now() >= deadline {
            return Err(Failure::StartTimeout {
                secs: (cfg.timeout + cfg.stop_grace).as_secs_f64(),
                reason: format!("the restarted service {name} did not become ready"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGHUP the daemon, which replaces Temporal; wait for the new pid.
fn restart_temporal(args: &RestartArgs, cfg: Config) -> Result<Code, Failure> {
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
            (None, Some(d), Some(_)) => {
                let old = fetch_status(&cfg.home, Check::Snapshot)
                    .ok()
                    .and_then(|doc| doc.temporal.pid);
                kill(Pid::from_raw(d.pid), Signal::SIGHUP).map_err(|e| {
                    Failure::StartFailed(format!("cannot signal daemon pid {}: {e}", d.pid))
                })?;
                signalled = Some((d.clone(), old));
            }
            (Some((sig, old)), Some(d), Some(_)) if sig == d => {
                if let Ok(doc) = fetch_status(&cfg.home, Check::Snapshot)
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
