//! Before a daemon starts anything: reclaim what a dead daemon left (a
//! verified orphan, waiting out one that is still exiting), drop a stale
//! or corrupt PID file without signalling anyone, and make sure every port
//! the instance needs is free or name who holds it.

use crate::config::Config;
use crate::exit::Failure;
use crate::pidfile::{self, PidFile};
use crate::process::{self, GroupOwner, Identity, Verdict, group, ports};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Before starting: reclaim what a dead daemon left (a verified orphan
/// Temporal, waiting out one that is still exiting), drop a stale or
/// corrupt PID file without signalling anyone, and make sure every port we
/// need is free. Returns what the user should hear: what it did, and
/// warnings about addresses beyond this machine.
pub async fn run(cfg: &Config) -> Result<Vec<String>, Failure> {
    let (mut notes, ours) = reclaim_orphans(cfg.home.pid_file(), cfg.stop_grace).await?;
    pidfile::remove(&cfg.home.pid_file());
    let mut wanted = cfg.temporal_binds();
    wanted.push((cfg.http_addr, "daemon HTTP", "http-addr"));
    let deadline = Instant::now() + EXIT_WAIT;
    for (addr, what, flag) in wanted {
        if let Err(owner) = ports::wait_free(addr, &ours, deadline) {
            return Err(port_in_use(addr, what, flag, owner));
        }
    }
    if !cfg.http_addr.ip().is_loopback() {
        notes.push(format!(
            "the HTTP server listens on {}, beyond this machine: anyone who can reach it can read status and metrics",
            cfg.http_addr
        ));
    }
    if !cfg.temporal_ip.is_loopback() {
        notes.push(format!(
            "Temporal listens on {}, beyond this machine: the dev server has no authentication, so anyone who can reach it can use it",
            cfg.temporal_ip
        ));
    }
    notes.retain(|n| !n.is_empty());
    Ok(notes)
}

/// How long a process we recorded may take to finish exiting (its leader
/// already a zombie, other threads still closing its sockets).
const EXIT_WAIT: Duration = Duration::from_secs(5);

pub(super) fn port_in_use(
    addr: SocketAddr,
    what: &'static str,
    flag: &'static str,
    owner: String,
) -> Failure {
    Failure::PortInUse {
        port: addr.port(),
        what,
        owner,
        flag,
    }
}

/// Read the PID file left by a previous daemon (we hold the lock, so that
/// daemon is dead) and stop its Temporal only if its identity verifies; a
/// Temporal that is already exiting (killed with its daemon, its leader a
/// zombie while other threads still hold its ports) is waited for, as an
/// exit event. Anything unverifiable is reported, never signalled. Returns
/// the notes and the identities of the processes that were ours.
pub async fn reclaim_orphans(
    pid_file: PathBuf,
    grace: Duration,
) -> Result<(Vec<String>, Vec<Identity>), Failure> {
    let mut notes = Vec::new();
    let mut ours = Vec::new();
    match pidfile::read(&pid_file) {
        PidFile::Absent => {}
        PidFile::BarePid(pid) => notes.push(format!(
            "ignored PID file with a bare pid ({pid}): no identity to verify, nothing signalled"
        )),
        PidFile::Corrupt(why) => notes.push(format!(
            "ignored unusable PID file ({why}); nothing signalled"
        )),
        PidFile::Record(r) if r.from_another_boot() => notes.push(
            "ignored the PID file of an earlier boot: every process it names is gone; nothing signalled"
                .into(),
        ),
        PidFile::Record(r) => {
            if r.daemon.pid as u32 != std::process::id() && r.daemon.verify() == Verdict::Match {
                return Err(Failure::StartFailed(format!(
                    "another stigmer daemon (pid {}) runs for this home but its lock file was replaced; stop it with `kill {}`",
                    r.daemon.pid, r.daemon.pid
                )));
            }
            if let Some(t) = &r.temporal {
                ours.push(t.clone());
                notes.extend(reclaim("Temporal", t, grace).await?);
            }
            for (name, s) in &r.services {
                ours.push(s.clone());
                notes.extend(reclaim(&format!("service {name}"), s, grace).await?);
            }
        }
    }
    Ok((notes, ours))
}

/// Reclaim one process a dead daemon recorded (`what` names it): stop it
/// when it verifies, wait out its exit when it is already exiting, and
/// kill what is left of its process group when its leader is gone and
/// the group is still ours ([`group::owner`]: never on the group id
/// alone). Anything that does not verify is left alone and reported.
async fn reclaim(what: &str, t: &Identity, grace: Duration) -> Result<Option<String>, Failure> {
    let pid = t.pid;
    let owner = group::owner(t);
    if let GroupOwner::Foreign(why) = &owner {
        return Ok(Some(format!(
            "stale PID file entry for {what}: {why}; that group was left alone"
        )));
    }
    let note = match t.verify() {
        Verdict::Match => {
            group::terminate_group(t.pgid, grace).await.map_err(|e| {
                Failure::Internal(format!("cannot stop orphaned {what} pid {pid}: {e}"))
            })?;
            return Ok(Some(format!(
                "stopped orphaned {what} (pid {pid}) left by a dead daemon"
            )));
        }
        Verdict::Mismatch(why) => {
            return Ok(Some(format!(
                "stale PID file: {why}; that process was left alone"
            )));
        }
        // Killed with its daemon, its leader a zombie while other threads
        // still close its sockets: wait for the exit event.
        Verdict::Exiting => None,
        Verdict::Gone if owner == GroupOwner::Ours => Some(format!(
            "stopped what was left of orphaned {what}'s process group ({})",
            t.pgid
        )),
        Verdict::Gone => return Ok(None),
    };
    let _ = process::signal_group(t.pgid, nix::sys::signal::Signal::SIGKILL);
    let deadline = Instant::now() + EXIT_WAIT;
    let leader = t.clone();
    let gone = tokio::task::spawn_blocking(move || leader.wait_exit(deadline))
        .await
        .unwrap_or(false);
    if !gone || !process::wait_group_gone(t.pgid, deadline).await {
        return Err(Failure::StartFailed(format!(
            "the previous {what} (pid {pid}) is still exiting after {} s",
            EXIT_WAIT.as_secs()
        )));
    }
    Ok(note)
}
