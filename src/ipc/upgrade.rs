//! What a daemon hands the binary that replaces it ([`Handover`], in a
//! memory file that survives the exec), and what that binary answers to
//! the check run before the exec ([`CheckReply`]). The handover carries
//! its protocol version in its own `protocol` field, as 0.1.0's did (its
//! version 1 is still taken over); [`crate::daemon::upgrade`] says how
//! an upgrade goes.

use crate::config::Config;
use crate::metrics::Carried;
use crate::model::Policy;
use crate::model::clock::mono;
use crate::pidfile::PidRecord;
use crate::supervisor::frozen::FrozenUnit;
use crate::telemetry::LogFormat;
use serde::{Deserialize, Serialize};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Instant;

/// A program: its version and executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binary {
    /// `stigmer` version.
    pub version: String,
    /// Its executable (`/proc/self/exe`).
    pub exe: String,
}

impl Binary {
    /// This program.
    pub fn this() -> Binary {
        Binary {
            version: env!("CARGO_PKG_VERSION").into(),
            exe: std::fs::read_link("/proc/self/exe")
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }
}

/// The fds a handover carries across the exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fds {
    /// The instance lock (held).
    pub lock: RawFd,
    /// The HTTP listening socket.
    pub http: RawFd,
    /// The control listening socket, when the daemon had one.
    pub control: Option<RawFd>,
    /// The `upgrade` client's connection.
    pub client: RawFd,
    /// The previous daemon's executable, to go back to.
    pub previous_exe: RawFd,
}

/// Everything the next daemon continues from.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// [`PROTOCOL`] (1 from 0.1.0).
    pub protocol: u32,
    /// The daemon that wrote it.
    pub from: Binary,
    /// The checked configuration.
    pub config: Config,
    /// The Temporal binary in use.
    pub temporal_bin: PathBuf,
    /// When the instance's daemon started (Unix ms).
    pub started_at_unix_ms: u64,
    /// The restart policy (its jitter seed included).
    pub policy: Policy,
    /// What the PID file says.
    pub record: PidRecord,
    /// `(verbose, format)` of the daemon's log.
    pub log: (bool, LogFormat),
    /// The fds carried across.
    pub fds: Fds,
    /// Every unit's frozen supervisor, in the stack's order.
    pub units: Vec<(String, FrozenUnit)>,
    /// Counter and histogram values.
    pub metrics: Carried,
    /// When the upgrade was asked for.
    #[serde(with = "mono")]
    pub requested_at: Instant,
    /// A random value the check must echo: only a program that parsed
    /// this handover knows it. (Absent in protocol 1.)
    #[serde(default)]
    pub nonce: String,
    /// The client asked in 0.1.0's text protocol, and is answered in it
    /// (always so for a handover of protocol 1).
    #[serde(default)]
    pub legacy_client: bool,
    /// Set when the handover comes back after a failed takeover: why.
    pub rollback: Option<String>,
    /// The supervised processes' pids before the upgrade (for the answer).
    pub temporal_pid: Option<i32>,
    /// The plan the units run, installed as the running one by the next
    /// daemon (nothing applied: differences its own defaults would make
    /// show in `reload --dry-run`). Absent from older daemons: made from
    /// `config` then.
    #[serde(default)]
    pub plan: Option<crate::plan::Plan>,
}

impl Handover {
    /// Every fd the handover carries: [`Fds`] and each child's pipes.
    pub fn fds(&self) -> Vec<RawFd> {
        let f = &self.fds;
        let mut v = vec![f.lock, f.http, f.client, f.previous_exe];
        v.extend(f.control);
        for (_, unit) in &self.units {
            if let FrozenUnit::Managed(a) = unit
                && let Some(c) = &a.child
            {
                v.extend(&c.pipes);
            }
        }
        v
    }

    /// The check's answer to this handover.
    pub fn check_reply(&self) -> CheckReply {
        CheckReply {
            version: env!("CARGO_PKG_VERSION").into(),
            nonce: self.nonce.clone(),
            units: self.units.iter().map(|(n, _)| n.clone()).collect(),
            signals_blocked: true,
        }
    }
}

/// What `daemon takeover --check` answers (one message on stdout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReply {
    /// Its version.
    pub version: String,
    /// The handover's nonce, as it read it.
    pub nonce: String,
    /// The units it read, in order.
    pub units: Vec<String>,
    /// It takes over with the daemon's signals blocked, and reads them
    /// once it supervises (see [`crate::process::signals`]); an older
    /// binary does not say so, and is exec'd with them unblocked.
    #[serde(default)]
    pub signals_blocked: bool,
}

/// The answer to a successful upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upgraded {
    /// The daemon's pid (unchanged).
    pub pid: u32,
    /// The binary before.
    pub from: Binary,
    /// The binary now.
    pub to: Binary,
    /// Request → the new daemon supervising and serving (ms).
    pub handover_ms: f64,
    /// Temporal's pid (unchanged), when one runs.
    pub temporal_pid: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handover_of_0_1_0_is_read() {
        let old = include_str!("../../tests/fixtures/compat-0.1.0/upgrade-handover-v1.json");
        let h: Handover = serde_json::from_str(old).expect("0.1.0's handover");
        assert_eq!(h.protocol, 1);
        let names: Vec<&str> = h.units.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["temporal", "sleeper"]);
        assert!(h.nonce.is_empty());
        assert_eq!(
            h.fds().len(),
            5 + 4,
            "four fds, the control socket, two pipes per child"
        );
    }

    #[test]
    fn a_handover_round_trips_and_its_check_echoes_the_nonce() {
        let old = include_str!("../../tests/fixtures/compat-0.1.0/upgrade-handover-v1.json");
        let mut h: Handover = serde_json::from_str(old).unwrap();
        h.protocol = crate::ipc::PROTOCOL;
        h.nonce = "0123456789abcdef".into();
        let json = serde_json::to_vec(&h).unwrap();
        let back: Handover = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.check_reply(), h.check_reply());
        assert_eq!(back.check_reply().nonce, "0123456789abcdef");
        let reply = super::super::encode(&h.check_reply());
        assert_eq!(
            super::super::decode::<CheckReply>(&reply).unwrap(),
            h.check_reply()
        );
    }
}
