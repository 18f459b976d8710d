//! Process identity: (pid, start time, executable, group). A pid alone is
//! not an identity (pids are reused); the start time from `/proc/PID/stat`
//! is fixed for the life of a process and survives `exec`, so pid + start
//! time names one process, and the executable guards against our record
//! being matched by something we did not spawn.

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
    /// No such process (or a zombie): nothing to signal.
    Gone,
    /// The pid is alive but is another process: never signal it.
    Mismatch(String),
}

/// Fields we need from `/proc/PID/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Single-letter state (R, S, D, T, Z, ...).
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

/// Parse the text of `/proc/PID/stat`. The command name is in parentheses
/// and may itself contain spaces or parentheses, so split at the last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// Read `/proc/PID/stat`; `None` if the process does not exist.
pub fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The executable of `pid`, without the " (deleted)" suffix the kernel adds
/// when the file was replaced (an upgrade of the binary is not a new process).
pub fn exe(pid: i32) -> Option<PathBuf> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let s = link.to_string_lossy();
    Some(match s.strip_suffix(" (deleted)") {
        Some(stripped) => PathBuf::from(stripped),
        None => link,
    })
}

/// Is `pid` alive (exists and is not a zombie)?
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// The short command name (`/proc/PID/comm`).
pub fn comm(pid: i32) -> Option<String> {
    Some(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()?
            .trim()
            .to_string(),
    )
}

impl Identity {
    /// Read the live identity of `pid`.
    pub fn of(pid: i32) -> Option<Identity> {
        let st = stat(pid)?;
        Some(Identity {
            pid,
            pgid: st.pgrp,
            start_time: st.start_time,
            exe: exe(pid),
        })
    }

    /// Check this record against the live process table.
    pub fn verify(&self) -> Verdict {
        if self.pid <= 1 {
            return Verdict::Mismatch(format!("refusing to act on pid {}", self.pid));
        }
        if self.pid as u32 == std::process::id() {
            return Verdict::Mismatch("recorded pid is this very process".into());
        }
        let Some(st) = stat(self.pid) else {
            return Verdict::Gone;
        };
        if st.state == 'Z' || st.state == 'X' {
            return Verdict::Gone;
        }
        if st.start_time != self.start_time {
            return Verdict::Mismatch(format!(
                "pid {} was started at tick {}, not {} (pid reused)",
                self.pid, st.start_time, self.start_time
            ));
        }
        match (&self.exe, exe(self.pid)) {
            (Some(want), Some(have)) if !same_exe(want, &have) => Verdict::Mismatch(format!(
                "pid {} runs {}, not {}",
                self.pid,
                have.display(),
                want.display()
            )),
            _ => Verdict::Match,
        }
    }

    /// Block until this process has exited, or `deadline` passes; true once
    /// it is gone. An event, not a poll: a pidfd (which works for processes
    /// that are not our children) becomes readable when the process exits.
    /// The identity is re-checked after the pidfd is opened, so a reused pid
    /// is never waited on in place of the process we meant.
    pub fn wait_exit(&self, deadline: Instant) -> bool {
        let fd = match pidfd_open(self.pid) {
            Ok(fd) => fd,
            Err(_) => return self.verify() != Verdict::Match,
        };
        if self.verify() != Verdict::Match {
            return true;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.verify() != Verdict::Match;
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
                return self.verify() != Verdict::Match;
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
    fn parses_stat_with_hostile_comm() {
        let line = "123 (a) b (c) S 1 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.pgrp, 123);
        assert_eq!(st.start_time, 98765);
    }

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
        // Not reaped yet: a zombie counts as exited.
        assert!(id.wait_exit(Instant::now() + std::time::Duration::from_secs(10)));
        child.wait().unwrap();
        assert!(id.wait_exit(Instant::now()), "gone for good");
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
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
