//! Before a daemon starts anything: reclaim what a dead daemon left (a
//! verified orphan, waiting out one that is still exiting), drop a stale
//! or corrupt PID file without signalling anyone, and make sure every port
//! the instance needs is free or name who holds it.

use crate::config::Config;
use crate::exit::Failure;
use crate::pidfile;
use crate::process::ports;
use crate::reclaim::{self, EXIT_WAIT};
use std::net::SocketAddr;
use std::time::Instant;

/// Before starting: reclaim what a dead daemon left (a verified orphan
/// Temporal, waiting out one that is still exiting), drop a stale or
/// corrupt PID file without signalling anyone, and make sure every port we
/// need is free. Returns what the user should hear: what it did, and
/// warnings about addresses beyond this machine.
pub async fn run(cfg: &Config) -> Result<Vec<String>, Failure> {
    let (mut notes, ours) = reclaim::orphans(cfg.home.pid_file(), cfg.stop_grace).await?;
    pidfile::remove(&cfg.home.pid_file());
    let mut wanted = cfg.temporal_binds();
    wanted.push((cfg.http_addr, "daemon HTTP", "http-addr"));
    let deadline = Instant::now() + EXIT_WAIT;
    for (addr, what, flag) in wanted {
        if let Err(owner) = ports::wait_free(addr, &ours, deadline) {
            return Err(port_in_use(addr, what, flag, owner.0));
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
