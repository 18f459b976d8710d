//! Process identity: (pid, start time, executable, group). A pid alone is
//! not an identity (pids are reused); the start time from `/proc/PID/stat`
//! is fixed for the life of a process and survives `exec`, so pid + start
//! time names one process, and the executable guards against our record
//! being matched by something we did not spawn.

use super::proc;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What we record about a process we own, and check before signalling it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Process id.
    pub pid: i32,
    /// Process group id (we put Temporal in its own group: pgid == pid).
    pub pgid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// Resolved executable (`/proc/PID/exe`), when readable.
    pub exe: Option<PathBuf>,
}

/// Result of checking a recorded identity against the live system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The same process is alive: safe to signal.
    Match,
    /// The same process, exiting: its thread-group leader is already a
    /// zombie while other threads still run (and may still hold its
    /// sockets). Nothing to signal; wait for it to be [`Verdict::Gone`].
    Exiting,
    /// No such process left (nothing, or a zombie with no thread left):
    /// nothing to signal, nothing it holds.
    Gone,
    /// The pid is alive but is another process: never signal it.
    Mismatch(String),
}

impl Identity {
    /// Read the live identity of `pid`.
    pub fn of(pid: i32) -> Option<Identity> {
        let st = proc::stat(pid)?;
        Some(Identity {
            pid,
            pgid: st.pgrp,
            start_time: st.start_time,
            exe: proc::exe(pid),
        })
    }

    /// Check this record against the live process table. Pid and start
    /// time name one process; the executable (unreadable once the leader
    /// is a zombie) also guards against a record we did not write.
    pub fn verify(&self) -> Verdict {
        self.verify_stat(proc::stat(self.pid))
    }

    /// [`Identity::verify`] with the process's stat line read already
    /// (`None`: no such process).
    pub fn verify_stat(&self, st: Option<proc::Stat>) -> Verdict {
        if self.pid <= 1 {
            return Verdict::Mismatch(format!("refusing to act on pid {}", self.pid));
        }
        if self.pid as u32 == std::process::id() {
            return Verdict::Mismatch("recorded pid is this very process".into());
        }
        let Some(st) = st else {
            return Verdict::Gone;
        };
        if st.start_time != self.start_time {
            if st.exited() {
                return Verdict::Gone;
            }
            return Verdict::Mismatch(format!(
                "pid {} was started at tick {}, not {} (pid reused)",
                self.pid, st.start_time, self.start_time
            ));
        }
        if st.exited() {
            return Verdict::Gone;
        }
        if st.leader_exited() {
            return Verdict::Exiting;
        }
        // Read only when recorded: a service's identity has no executable,
        // and this runs at every health check.
        let Some(want) = &self.exe else {
            return Verdict::Match;
        };
        match proc::exe(self.pid) {
            Some(have) if !same_exe(want, &have) => Verdict::Mismatch(format!(
                "pid {} runs {}, not {}",
                self.pid,
                have.display(),
                want.display()
            )),
            _ => Verdict::Match,
        }
    }

    /// Is this the process (alive or still exiting), so that waiting for
    /// it is waiting for the process we meant?
    fn is_this(&self) -> bool {
        matches!(self.verify(), Verdict::Match | Verdict::Exiting)
    }

    /// Block until this process has exited *completely* (every thread, so
    /// nothing it held stays open), or `deadline` passes; true once it is
    /// gone. An event, not a poll: a pidfd (which works for processes that
    /// are not our children) becomes readable only when the whole thread
    /// group has exited, also when its leader was already a zombie. The
    /// identity is re-checked after the pidfd is opened, so a reused pid is
    /// never waited on in place of the process we meant.
    pub fn wait_exit(&self, deadline: Instant) -> bool {
        let fd = match pidfd_open(self.pid) {
            Ok(fd) => fd,
            Err(_) => return !self.is_this(),
        };
        if !self.is_this() {
            return true;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return !self.is_this();
            }
            // Round up: poll's millisecond timeout must not end early.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd that outlives the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                return true;
            }
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return !self.is_this();
            }
        }
    }
}

/// A pidfd for `pid`: readable once the process has exited.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd (close-on-exec by default).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn same_exe(a: &Path, b: &Path) -> bool {
    a == b || std::fs::canonicalize(a).ok().as_deref() == Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_exit_is_bounded_and_sees_the_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let id = Identity::of(child.id() as i32).unwrap();
        let t0 = Instant::now();
        assert!(!id.wait_exit(t0 + std::time::Duration::from_millis(50)));
        assert!(t0.elapsed() >= std::time::Duration::from_millis(50));
        child.kill().unwrap();
        // Not reaped yet: a zombie with no thread left counts as exited.
        assert!(id.wait_exit(Instant::now() + std::time::Duration::from_secs(10)));
        child.wait().unwrap();
        assert!(id.wait_exit(Instant::now()), "gone for good");
    }

    #[test]
    fn own_identity_matches_but_is_never_signallable() {
        let me = Identity::of(std::process::id() as i32).unwrap();
        assert!(matches!(me.verify(), Verdict::Mismatch(_)));
        let other = Identity {
            start_time: me.start_time + 1,
            pid: 1,
            ..me.clone()
        };
        assert!(matches!(other.verify(), Verdict::Mismatch(_)));
    }

    #[test]
    fn reused_pid_is_a_mismatch() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let id = Identity::of(pid).unwrap();
        assert_eq!(id.verify(), Verdict::Match);
        let forged = Identity {
            start_time: id.start_time.wrapping_sub(1),
            ..id.clone()
        };
        assert!(matches!(forged.verify(), Verdict::Mismatch(_)));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(id.verify(), Verdict::Gone);
    }
}
