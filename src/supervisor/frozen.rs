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
    /// What it published (restart history and counters included).
    pub snapshot: Snapshot,
    /// The process that runs, if any.
    pub child: Option<FrozenChild>,
    /// Pending backoff wake-up.
    #[serde(with = "mono_opt")]
    pub wake: Option<Instant>,
    /// Pending SIGKILL after the stop grace.
    #[serde(with = "mono_opt")]
    pub kill_at: Option<Instant>,
    /// When the last exit was seen (for detection latency).
    #[serde(with = "mono_opt")]
    pub exit_seen_at: Option<Instant>,
    /// When the failure being recovered from was detected.
    #[serde(with = "mono_opt")]
    pub failure_seen_at: Option<Instant>,
    /// The first failed check of the current streak.
    #[serde(with = "mono_opt")]
    pub first_failed_probe: Option<Instant>,
    /// The pid that exited last (for the restart history).
    pub exited_pid: Option<i32>,
    /// The pid whose readiness line was seen (log readiness).
    pub ready_line_seen: i32,
}

/// The running child of a frozen actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrozenChild {
    /// Who it is.
    pub identity: Identity,
    /// When it was spawned.
    #[serde(with = "mono")]
    pub spawned_at: Instant,
    /// Its stdout and stderr pipes (read ends), kept open across the exec.
    pub pipes: Vec<RawFd>,
}

/// The CLOCK_MONOTONIC reading (ns) at `Instant::now()`, taken together.
fn now_pair() -> (Instant, u128) {
    let i = Instant::now();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (i, ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128)
}

/// `t` as a CLOCK_MONOTONIC reading in nanoseconds.
pub fn to_mono(t: Instant) -> u128 {
    let (now, mono) = now_pair();
    if t <= now {
        mono.saturating_sub((now - t).as_nanos())
    } else {
        mono + (t - now).as_nanos()
    }
}

/// The instant of a CLOCK_MONOTONIC reading (ns) taken in this boot.
pub fn from_mono(ns: u128) -> Instant {
    let (now, mono) = now_pair();
    let d = |n: u128| std::time::Duration::from_nanos(n.min(u64::MAX as u128) as u64);
    if ns <= mono {
        now.checked_sub(d(mono - ns)).unwrap_or(now)
    } else {
        now + d(ns - mono)
    }
}

/// Serde for an `Instant` as a CLOCK_MONOTONIC reading.
pub mod mono {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Instant;

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::to_mono(*t).min(u64::MAX as u128) as u64)
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        Ok(super::from_mono(u64::deserialize(d)?.into()))
    }
}

/// Serde for an `Option<Instant>` as a CLOCK_MONOTONIC reading.
pub mod mono_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Instant;

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&(super::to_mono(*t).min(u64::MAX as u128) as u64)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(|n| super::from_mono(n.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn instants_survive_the_round_trip_to_within_a_millisecond() {
        let now = Instant::now();
        for t in [
            now,
            now - Duration::from_secs(3),
            now + Duration::from_secs(5),
        ] {
            let back = from_mono(to_mono(t));
            let diff = if back > t { back - t } else { t - back };
            assert!(diff < Duration::from_millis(1), "{diff:?}");
        }
    }

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
