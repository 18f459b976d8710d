//! Signalling and waiting on whole process groups. Temporal runs as the
//! leader of its own group; anything it forks stays in that group, so a
//! stop that signals the group leaves no grandchild behind.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Send `sig` to every process in group `pgid`. `Ok(false)` when the group
/// is already empty. Refuses groups 0 and 1 and our own group.
pub fn signal_group(pgid: i32, sig: Signal) -> nix::Result<bool> {
    if pgid <= 1 || pgid == nix::unistd::getpgrp().as_raw() {
        return Err(Errno::EPERM);
    }
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Members of group `pgid` that have not completely exited, from a
/// `/proc` scan. A zombie with no thread left holds nothing and cannot be
/// signalled away, so it does not count; a zombie leader whose other
/// threads still run (and hold its sockets) does.
pub fn group_members(pgid: i32) -> Vec<i32> {
    super::proc::pids()
        .into_iter()
        .filter(|&pid| super::proc::stat(pid).is_some_and(|s| s.pgrp == pgid && !s.exited()))
        .collect()
}

/// Is any live process left in group `pgid`? Cheap kernel check first.
pub fn group_alive(pgid: i32) -> bool {
    match killpg(Pid::from_raw(pgid), None) {
        Err(Errno::ESRCH) => false,
        _ => !group_members(pgid).is_empty(),
    }
}

/// Whose a recorded process group is: a record names a process we
/// spawned as the leader of its own group (pgid = pid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOwner {
    /// Nothing alive in it: nothing to signal.
    Empty,
    /// Ours: its leader matches the record, or (the leader gone) every
    /// member started after it, as our grandchildren did.
    Ours,
    /// Not ours, whatever the number says: never signal it.
    Foreign(String),
}

/// Is the group that `record` (pid, start time, executable of the
/// leader we spawned) names ours to signal? Never judged on the group id
/// alone: a live leader must match the record, and once the leader is
/// gone, a member that started before it cannot be its descendant.
pub fn owner(record: &super::Identity) -> GroupOwner {
    use super::Verdict;
    let pgid = record.pgid;
    if pgid != record.pid {
        return GroupOwner::Foreign(format!(
            "the record names group {pgid}, not its process's own ({})",
            record.pid
        ));
    }
    if pgid <= 1 {
        return GroupOwner::Foreign(format!("refusing to act on group {pgid}"));
    }
    let members = group_members(pgid);
    if members.is_empty() {
        return GroupOwner::Empty;
    }
    match record.verify() {
        Verdict::Match | Verdict::Exiting => GroupOwner::Ours,
        Verdict::Mismatch(why) => GroupOwner::Foreign(why),
        Verdict::Gone => {
            // A member gone since the listing (the zombie leader, reaped
            // by its new parent in between) says nothing either way.
            let older = members.iter().find(|&&pid| {
                super::proc::stat(pid).is_some_and(|s| s.start_time < record.start_time)
            });
            match older {
                Some(pid) => GroupOwner::Foreign(format!(
                    "pid {pid} in group {pgid} started before the recorded leader"
                )),
                None => GroupOwner::Ours,
            }
        }
    }
}

/// Wait until group `pgid` is empty or `deadline` passes. There is no
/// kernel event for "group empty" (only for our direct child), so this
/// polls briefly; callers use it after the leader's exit event.
pub async fn wait_group_gone(pgid: i32, deadline: Instant) -> bool {
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGCONT + SIGTERM to the group, wait up to `grace`, then SIGKILL; returns
/// once the group is empty (or after a final bounded wait). Returns whether
/// SIGKILL was needed. The leader must be verified by the caller.
pub async fn terminate_group(pgid: i32, grace: Duration) -> nix::Result<bool> {
    // A stopped process only acts on SIGTERM once continued.
    if !signal_group(pgid, Signal::SIGTERM)? {
        return Ok(false);
    }
    let _ = signal_group(pgid, Signal::SIGCONT);
    if wait_group_gone(pgid, Instant::now() + grace).await {
        return Ok(false);
    }
    signal_group(pgid, Signal::SIGKILL)?;
    wait_group_gone(pgid, Instant::now() + Duration::from_secs(5)).await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[tokio::test]
    async fn terminate_group_takes_grandchildren() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        // Wait for the grandchildren to exist.
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_members(pgid).len() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(group_members(pgid).len(), 3);
        let reaper = std::thread::spawn(move || child.wait());
        terminate_group(pgid, Duration::from_secs(5)).await.unwrap();
        reaper.join().unwrap().unwrap();
        assert!(!group_alive(pgid));
    }

    #[test]
    fn a_group_is_ours_only_by_its_leader_or_younger_members() {
        use crate::process::Identity;
        // A stranger's group: its own leader, not the one recorded.
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let spid = stranger.id() as i32;
        let me = Identity::of(std::process::id() as i32).unwrap();
        let forged = Identity {
            pid: 999_999,
            pgid: spid,
            start_time: me.start_time,
            exe: None,
        };
        assert!(
            matches!(owner(&forged), GroupOwner::Foreign(_)),
            "pgid alone"
        );
        let live = Identity::of(spid).unwrap();
        assert_eq!(owner(&live), GroupOwner::Ours, "the leader matches");
        let other_leader = Identity {
            start_time: live.start_time + 1,
            ..live.clone()
        };
        assert!(matches!(owner(&other_leader), GroupOwner::Foreign(_)));
        stranger.kill().unwrap();
        stranger.wait().unwrap();
        assert_eq!(owner(&live), GroupOwner::Empty);
    }

    #[test]
    fn refuses_dangerous_groups() {
        assert_eq!(signal_group(1, Signal::SIGTERM), Err(Errno::EPERM));
        assert_eq!(signal_group(0, Signal::SIGTERM), Err(Errno::EPERM));
        let own = nix::unistd::getpgrp().as_raw();
        assert_eq!(signal_group(own, Signal::SIGTERM), Err(Errno::EPERM));
    }
}
