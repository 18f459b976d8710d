//! `stigmer local stop`: idempotent. Asks the daemon (identity verified)
//! to shut down with SIGTERM; the daemon stops Temporal's whole group and
//! releases the lock on its way out. Returns only once the daemon has
//! exited (a pidfd event), Temporal is gone and its port is free (or taken
//! by an instance a later start launched). With no daemon, it
//! still stops a verified orphan Temporal left by a dead one.

use super::{Found, daemon_identity, discover, home};
use crate::cli::StopArgs;
use crate::exit::Failure;
use crate::lock::{InstanceLock, TryLock};
use crate::model::Code;
use crate::paths::StateDir;
use crate::pidfile::{self, PidRecord};
use crate::process::{self, Identity, Verdict, ports};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Grace given to an orphan Temporal (no daemon to ask).
const ORPHAN_GRACE: Duration = Duration::from_secs(10);
/// How long a SIGKILLed process, or a port it held, may take to go.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Run `stop`.
pub fn run(args: &StopArgs) -> Result<Code, Failure> {
    let home = home(&args.home.home);
    let t0 = Instant::now();
    if args.timeout.is_nan() || args.timeout <= 0.0 {
        return Err(Failure::Config(crate::config::ConfigError(
            vec![format!("--timeout must be positive, got {}", args.timeout)],
            false,
        )));
    }
    let timeout = Duration::from_secs_f64(args.timeout.min(86_400.0));
    match discover(&home)? {
        Found::NotRunning => stop_without_daemon(&home),
        Found::Running(_) => {
            stop_daemon(&home, t0 + timeout)?;
            // A daemon that stopped its units removed its record; one
            // that died on its own (killed, crashed, mid-exit when we
            // looked) left it, and left its services' grandchildren,
            // which have no parent-death signal: reclaim them as a stop
            // without a daemon does. A start that took the lock at once
            // is a new instance, not ours to clean.
            let left = home.pid_file().exists();
            let notes = match left.then(|| InstanceLock::try_acquire(&home.lock_file())) {
                Some(Ok(TryLock::Acquired(_lock))) => reclaim_left(&home)?,
                Some(Err(e)) => return Err(e.into()),
                _ => vec![],
            };
            println!("Stopped in {:.2}s.", t0.elapsed().as_secs_f64());
            for n in notes {
                println!("{n}");
            }
            Ok(Code::Ok)
        }
    }
}

fn stop_without_daemon(home: &StateDir) -> Result<Code, Failure> {
    if !home.exists() {
        println!("Not running.");
        return Ok(Code::Ok);
    }
    // Hold the lock while cleaning, so no start races us.
    let TryLock::Acquired(_lock) = InstanceLock::try_acquire(&home.lock_file())? else {
        return Err(Failure::StopFailed(
            "an instance started while stopping; run stop again".into(),
        ));
    };
    let notes = reclaim_left(home)?;
    if notes.is_empty() {
        println!("Not running.");
    }
    for n in notes {
        println!("{n}");
    }
    Ok(Code::Ok)
}

/// Stop what a dead daemon's PID record names and remove the record; the
/// caller holds the lock. The notes say what was found.
fn reclaim_left(home: &StateDir) -> Result<Vec<String>, Failure> {
    let (notes, _) =
        super::runtime()?.block_on(crate::reclaim::orphans(home.pid_file(), ORPHAN_GRACE))?;
    pidfile::remove(&home.pid_file());
    Ok(notes)
}

fn stop_daemon(home: &StateDir, deadline: Instant) -> Result<(), Failure> {
    let Some((daemon, record)) = verified_daemon(home, deadline)? else {
        return Ok(());
    };
    terminate_daemon(&daemon, record.as_deref(), deadline)?;
    // The daemon waited for every group; check anyway, and the port.
    if let Some(r) = record.as_deref() {
        for (what, id) in recorded(r) {
            if !id.wait_exit(Instant::now() + AFTER_KILL) {
                return Err(Failure::StopFailed(format!(
                    "{what} (pid {}) is still running",
                    id.pid
                )));
            }
        }
        if r.units
            .keys()
            .any(|n| crate::model::Kind::of_name(n).is_temporal())
            && let Ok(frontend) = r.at.frontend.parse()
        {
            wait_port_released(home, frontend)?;
        }
    }
    Ok(())
}

/// A daemon that verified, and its PID record when readable.
type Verified = (Identity, Option<Box<PidRecord>>);

/// The daemon holding the lock, verified, with its PID record; `None` when
/// nothing runs any more. The lock may be mid-handoff from a launching CLI
/// to its daemon: look again until the daemon verifies or the lock is free.
fn verified_daemon(home: &StateDir, deadline: Instant) -> Result<Option<Verified>, Failure> {
    loop {
        let record = match discover(home)? {
            Found::NotRunning => return Ok(None),
            Found::Running(r) => r,
        };
        if let Some(d) = daemon_identity(home, record.as_deref()) {
            return Ok(Some((d, record)));
        }
        if Instant::now() >= deadline {
            return Err(Failure::StopFailed(format!(
                "the lock {} is held by a process that cannot be verified as this instance's daemon; nothing was signalled",
                home.lock_file().display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM the daemon and wait for its own exit (a pidfd), not for the
/// lock: in a storm a concurrent start may take the lock the instant the
/// daemon lets go, and that new instance is not ours to wait for. A stuck
/// daemon is killed (its Temporal dies with it: parent-death signal).
fn terminate_daemon(
    daemon: &Identity,
    record: Option<&PidRecord>,
    deadline: Instant,
) -> Result<(), Failure> {
    let pid = daemon.pid;
    tracing::debug!(pid, "sending SIGTERM to the daemon");
    kill(Pid::from_raw(pid), Signal::SIGTERM)
        .map_err(|e| Failure::StopFailed(format!("cannot signal daemon pid {pid}: {e}")))?;
    if daemon.wait_exit(deadline) {
        return Ok(());
    }
    if daemon.verify() == Verdict::Match {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    for (_, id) in record.map(recorded).unwrap_or_default() {
        if process::group::owner(id) == process::GroupOwner::Ours {
            let _ = process::signal_group(id.pgid, Signal::SIGKILL);
        }
    }
    if daemon.wait_exit(Instant::now() + AFTER_KILL) {
        Ok(())
    } else {
        Err(Failure::StopFailed(format!(
            "daemon pid {pid} did not exit"
        )))
    }
}

/// Every process the record names: Temporal and each service.
fn recorded(r: &PidRecord) -> Vec<(String, &Identity)> {
    r.units
        .iter()
        .map(|(n, id)| (crate::model::unit_title(n), id))
        .collect()
}

/// Wait until Temporal's port is free, or taken by an instance a start
/// that came after this stop launched (it holds the lock again).
fn wait_port_released(home: &StateDir, frontend: std::net::SocketAddr) -> Result<(), Failure> {
    let deadline = Instant::now() + AFTER_KILL;
    while !ports::is_free(frontend) {
        if matches!(InstanceLock::is_held(&home.lock_file()), Ok(true)) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Failure::StopFailed(format!(
                "stopped, but port {} is still held by {}",
                frontend.port(),
                ports::describe_owner(frontend.port())
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
