//! Ports: is one free for us to use, and if not, which process holds it
//! (`/proc/net/tcp{,6}` gives the socket inode; `/proc/*/fd` maps it to a pid).

use std::net::{SocketAddr, TcpListener};

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
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.comm)
    }
}

/// Socket inodes listening on `port`, from the text of `/proc/net/tcp`.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(hex_port, 16).ok()?;
            // st 0A = LISTEN
            (p == port && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// The process listening on `port` (IPv4 or IPv6), if visible to us.
pub fn owner(port: u16) -> Option<Owner> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| target.as_os_str() == w.as_str())
            {
                let comm = super::identity::comm(pid).unwrap_or_else(|| "?".into());
                return Some(Owner { pid, comm });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1C41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n   1: 0100007F:1C41 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0\n";
        assert_eq!(listening_inodes(table, 7233), vec![4242]);
        assert!(listening_inodes(table, 7234).is_empty());
    }

    #[test]
    fn finds_our_own_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(!is_free(l.local_addr().unwrap()));
        let o = owner(port).expect("owner found");
        assert_eq!(o.pid as u32, std::process::id());
    }
}
