//! What a dead daemon left behind: read its PID file (the caller holds the
//! lock, so that daemon is gone) and stop the processes it recorded, only
//! those whose identity verifies and whose process group is still ours;
//! wait out one that is already exiting. Anything unverifiable is
//! reported, never signalled. Used by a starting daemon and by `stop`
//! when no daemon runs.

use crate::model::unit_title;
use crate::pidfile::{self, PidFile};
use crate::process::{self, GroupOwner, Identity, Verdict, group};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a process we recorded may take to finish exiting (its leader
/// already a zombie, other threads still closing its sockets).
pub const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Why what a dead daemon left could not be reclaimed.
#[derive(Debug, thiserror::Error)]
pub enum ReclaimError {
    /// The recorded daemon still runs: its lock file was replaced.
    #[error(
        "another stigmer daemon (pid {0}) runs for this home but its lock file was replaced; stop it with `kill {0}`"
    )]
    DaemonRuns(i32),
    /// A recorded process that verified could not be signalled.
    #[error("cannot stop orphaned {what} pid {pid}: {source}")]
    Signal {
        /// Which unit's.
        what: String,
        /// Its pid.
        pid: i32,
        /// Why.
        source: nix::Error,
    },
    /// A recorded process did not finish exiting in time.
    #[error("the previous {what} (pid {pid}) is still exiting after {} s", EXIT_WAIT.as_secs())]
    StillExiting {
        /// Which unit's.
        what: String,
        /// Its pid.
        pid: i32,
    },
}

/// Read the PID file left by a previous daemon (we hold the lock, so that
/// daemon is dead) and stop its Temporal only if its identity verifies; a
/// Temporal that is already exiting (killed with its daemon, its leader a
/// zombie while other threads still hold its ports) is waited for, as an
/// exit event. Anything unverifiable is reported, never signalled. Returns
/// the notes and the identities of the processes that were ours.
pub async fn orphans(
    pid_file: PathBuf,
    grace: Duration,
) -> Result<(Vec<String>, Vec<Identity>), ReclaimError> {
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
                return Err(ReclaimError::DaemonRuns(r.daemon.pid));
            }
            for (name, id) in &r.units {
                ours.push(id.clone());
                notes.extend(reclaim(&unit_title(name), id, grace).await?);
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
async fn reclaim(
    what: &str,
    t: &Identity,
    grace: Duration,
) -> Result<Option<String>, ReclaimError> {
    let pid = t.pid;
    let owner = group::owner(t);
    if let GroupOwner::Foreign(why) = &owner {
        return Ok(Some(format!(
            "stale PID file entry for {what}: {why}; that group was left alone"
        )));
    }
    let note = match t.verify() {
        Verdict::Match => {
            group::terminate_group(t.pgid, grace)
                .await
                .map_err(|source| ReclaimError::Signal {
                    what: what.to_string(),
                    pid,
                    source,
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
        return Err(ReclaimError::StillExiting {
            what: what.to_string(),
            pid,
        });
    }
    Ok(note)
}
