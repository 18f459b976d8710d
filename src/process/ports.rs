//! Ports: is one free for us to use, and if not, which process holds it
//! (the TCP tables give the socket inode; every thread's open files map it
//! to a pid, also when that process's leader is already a zombie).

use super::identity::Identity;
use super::proc;
use std::net::{SocketAddr, TcpListener};
use std::time::Instant;

/// Can we bind `addr` right now? (Temporal and std both use SO_REUSEADDR,
/// so TIME_WAIT leftovers do not count as taken.)
pub fn is_free(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

/// A process found listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its pid.
    pub pid: i32,
    /// Its command name.
    pub comm: String,
    /// Its start time (clock ticks since boot), to match a recorded identity.
    pub start_time: u64,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.comm)
    }
}

/// The process listening on `port` (IPv4 or IPv6), if visible to us.
pub fn owner(port: u16) -> Option<Owner> {
    let inodes = proc::listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let pid = proc::pids()
        .into_iter()
        .find(|&pid| inodes.iter().any(|i| proc::socket_inodes(pid).contains(i)))?;
    Some(Owner {
        pid,
        comm: proc::comm(pid).unwrap_or_else(|| "?".into()),
        start_time: proc::stat(pid).map_or(0, |s| s.start_time),
    })
}

/// "pid 123 (nc)", or "another process" when the owner is not visible.
pub fn describe_owner(port: u16) -> String {
    owner(port).map_or_else(|| "another process".into(), |o| o.to_string())
}

/// A port held by someone else: who ("pid 123 (nc)", or "another
/// process" when the holder cannot be seen).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Taken(pub String);

/// Wait until `addr` is free, for as long as what holds it is one of
/// `ours` (processes we recorded, typically still exiting after a kill):
/// their exit is awaited as an event, then the port is looked at again.
/// A port held by anything else is an error naming the holder.
pub fn wait_free(addr: SocketAddr, ours: &[Identity], deadline: Instant) -> Result<(), Taken> {
    loop {
        if is_free(addr) {
            return Ok(());
        }
        let Some(holder) = owner(addr.port()) else {
            // Released between the two looks, or held where we cannot see.
            if is_free(addr) {
                return Ok(());
            }
            return Err(Taken("another process".into()));
        };
        let mine = ours
            .iter()
            .find(|id| id.pid == holder.pid && id.start_time == holder.start_time);
        match mine {
            Some(id) if id.wait_exit(deadline) => continue,
            _ => return Err(Taken(holder.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(!is_free(addr));
        let o = owner(addr.port()).expect("owner found");
        assert_eq!(o.pid as u32, std::process::id());
        let err = wait_free(addr, &[], Instant::now()).unwrap_err();
        assert!(
            err.0.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(l);
        assert_eq!(wait_free(addr, &[], Instant::now()), Ok(()));
    }
}
