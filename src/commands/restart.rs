//! `stigmer local restart [SERVICE]`: a new pid for one unit, Temporal
//! when no name is given. The daemon is asked on its control socket (the
//! same request for every unit) and replaces the process gracefully,
//! keeping its own lock, ports and counters; this command waits until the
//! new pid is ready. When nothing runs (or the daemon goes away meanwhile,
//! e.g. a concurrent stop), it starts everything.

use super::start::Started;
use super::{Check, fetch_status, running};
use crate::cli::RestartArgs;
use crate::config::Config;
use crate::exit::Failure;
use crate::ipc::control::{Reply, Request, ask};
use crate::model::{Code, TEMPORAL, unit_title};
use crate::status::StatusDoc;
use std::time::{Duration, Instant};

/// Run `restart` with `cfg` (used when it has to start).
pub fn run(args: &RestartArgs, cfg: Config) -> Result<Started, Failure> {
    let name = args.service.as_deref().unwrap_or(TEMPORAL);
    let t0 = Instant::now();
    let deadline = t0 + cfg.timeout + cfg.stop_grace;
    // The daemon may be mid-start or mid-stop (another command's): look
    // until it answers, or is gone (then this restart starts everything).
    let doc = loop {
        if !running(&cfg.home)? {
            return super::start::run(&args.start, cfg);
        }
        match fetch_status(&cfg.home, Check::Snapshot) {
            Ok(doc) => break doc,
            Err(e) if Instant::now() >= deadline => {
                return Err(Failure::StartFailed(e.to_string()));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let Some((old, _)) = unit_pid(&doc, name) else {
        return Err(Failure::Relayed(
            Code::Usage,
            format!(
                "no service named {name:?} (declared: temporal{})",
                doc.services()
                    .map(|s| format!(", {}", s.name))
                    .collect::<String>()
            ),
        ));
    };
    let request = Request::Restart {
        unit: Some(name.to_string()),
    };
    loop {
        match ask(&cfg.home.control_socket(), &request, Duration::from_secs(5)) {
            Ok(Reply::Restarting { .. }) => break,
            Ok(Reply::Failed { code, message }) => return Err(Failure::Relayed(code, message)),
            Ok(Reply::Error { message }) => return Err(Failure::StartFailed(message)),
            Ok(other) => {
                return Err(Failure::StartFailed(format!(
                    "unexpected answer {}",
                    other.legacy()
                )));
            }
            // No answer: a daemon on its way out (a concurrent stop)
            // closes its socket before it lets go of the lock. Once it is
            // gone, this restart comes after that stop and starts; if it
            // answers again, it is asked again.
            Err(e) => match settle(&cfg.home, deadline)? {
                Settled::Gone => return super::start::run(&args.start, cfg),
                Settled::Answers => continue,
                Settled::Silent => return Err(Failure::StartFailed(e.to_string())),
            },
        }
    }
    loop {
        if let Ok(doc) = fetch_status(&cfg.home, Check::Snapshot)
            && let Some((Some(pid), true)) = unit_pid(&doc, name)
            && Some(pid) != old
        {
            println!(
                "Restarted {} in {:.2}s: pid {} -> {pid}.",
                unit_title(name),
                t0.elapsed().as_secs_f64(),
                old.map_or_else(|| "-".into(), |p| p.to_string()),
            );
            return Ok(Started::Done(Code::Ok));
        }
        if !running(&cfg.home)? {
            return super::start::run(&args.start, cfg);
        }
        if Instant::now() >= deadline {
            return Err(Failure::StartTimeout {
                secs: (cfg.timeout + cfg.stop_grace).as_secs_f64(),
                reason: format!("the restarted {} did not become ready", unit_title(name)),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What became of a daemon that did not answer.
enum Settled {
    /// It has let go of the lock: nothing runs.
    Gone,
    /// It answers again.
    Answers,
    /// Neither, by the deadline.
    Silent,
}

/// Wait until the home's daemon answers again or is gone.
fn settle(home: &crate::paths::StateDir, deadline: Instant) -> Result<Settled, Failure> {
    loop {
        if !running(home)? {
            return Ok(Settled::Gone);
        }
        if fetch_status(home, Check::Snapshot).is_ok() {
            return Ok(Settled::Answers);
        }
        if Instant::now() >= deadline {
            return Ok(Settled::Silent);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid and readiness of unit `name` in `doc` (for Temporal, the
/// stack's: its dependents reconnect to the new one).
fn unit_pid(doc: &StatusDoc, name: &str) -> Option<(Option<i32>, bool)> {
    let u = doc.units.iter().find(|u| u.name == name)?;
    let ready = if u.kind.is_temporal() {
        doc.is_ready()
    } else {
        u.status.ready
    };
    Some((u.status.pid, ready))
}
