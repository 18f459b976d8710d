//! What a unit's supervisor hands to the next daemon on an upgrade: its
//! state, published snapshot, live child (pid, identity, output pipes) and
//! timers. The receiving daemon is the same process after an `execve`, so
//! the child is still its child; instants travel as CLOCK_MONOTONIC
//! readings, which an exec keeps.

use super::Snapshot;
use super::external::Watched;
use super::state::State;
use crate::process::Identity;
use serde::{Deserialize, Serialize};
use std::os::fd::RawFd;
use std::time::Instant;

/// A unit's supervisor, stopped for a handover.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FrozenUnit {
    /// A process of ours.
    Managed(Box<FrozenActor>),
    /// An external Temporal, only watched.
    Attached {
        /// Its last known state.
        state: Watched,
        /// What it published.
        snapshot: Box<Snapshot>,
    },
}

/// An actor's state (see [`Actor`](super::Actor)).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrozenActor {
    /// The state machine's state.
    pub state: State,
    /// Its backoff generation (0 from a daemon that had none).
    #[serde(default)]
    pub generation: u64,
    /// What it published (restart history and counters included).
    pub snapshot: Snapshot,
    /// The process that runs, if any.
    pub child: Option<FrozenChild>,
    /// Its timers and the moments they measure from.
    #[serde(flatten)]
    pub timers: Timers,
    /// The pid whose readiness line was seen (log readiness).
    pub ready_line_seen: i32,
}

/// An actor's pending timers, and the moments its latency figures are
/// measured from: one struct, kept by the actor and handed over as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timers {
    /// Pending backoff wake-up.
    #[serde(with = "crate::model::clock::mono_opt")]
    pub wake: Option<Instant>,
    /// The generation of the backoff it was armed for.
    #[serde(default)]
    pub wake_generation: u64,
    /// When the process has run for `min_uptime`.
    #[serde(default, with = "crate::model::clock::mono_opt")]
    pub uptime: Option<Instant>,
    /// The process that `uptime` is about.
    #[serde(default)]
    pub uptime_pid: i32,
    /// Pending SIGKILL after the stop grace.
    #[serde(with = "crate::model::clock::mono_opt")]
    pub kill_at: Option<Instant>,
    /// When the last exit was seen (for detection latency).
    #[serde(with = "crate::model::clock::mono_opt")]
    pub exit_seen_at: Option<Instant>,
    /// When the failure being recovered from was detected.
    #[serde(with = "crate::model::clock::mono_opt")]
    pub failure_seen_at: Option<Instant>,
    /// The first failed check of the current streak.
    #[serde(with = "crate::model::clock::mono_opt")]
    pub first_failed_probe: Option<Instant>,
    /// The pid that exited last (for the restart history).
    pub exited_pid: Option<i32>,
}

impl Timers {
    /// The pending wake-up and the backoff generation it is for.
    pub fn wake_at(&self) -> Option<(Instant, u64)> {
        self.wake.map(|t| (t, self.wake_generation))
    }
}

/// The running child of a frozen actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrozenChild {
    /// Who it is.
    pub identity: Identity,
    /// When it was spawned.
    #[serde(with = "crate::model::clock::mono")]
    pub spawned_at: Instant,
    /// Its stdout and stderr pipes (read ends), kept open across the exec.
    pub pipes: Vec<RawFd>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_state_travels_as_json() {
        let s = State::Backoff {
            until: Instant::now() + Duration::from_secs(2),
            attempt: 3,
        };
        let back: State = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        let State::Backoff { until, attempt } = back else {
            panic!("{back:?}")
        };
        assert_eq!(attempt, 3);
        let left = until.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_millis(1900) && left <= Duration::from_secs(2));
    }
}
