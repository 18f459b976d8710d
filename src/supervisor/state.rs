//! The supervisor's decision core: a pure `step(state, event, now)` that
//! returns the next state and the actions to execute. No processes, no
//! clocks, no I/O: the actor around it does those, and tests walk it from
//! tables with made-up instants.

use super::policy::Policy;
use crate::health::Layer;
use crate::process::ExitStatus;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Why Temporal is being (or was) restarted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestartReason {
    /// It exited on its own with a code.
    Exited {
        /// Exit code.
        code: i32,
    },
    /// It was killed by a signal we did not send.
    Signaled {
        /// Signal number.
        signal: i32,
    },
    /// A health layer failed `failure_threshold` times in a row.
    Unhealthy {
        /// The layer that failed.
        layer: Layer,
    },
    /// It did not become ready within the start timeout.
    StartTimeout,
    /// Someone asked for a restart (`stigmer local restart`).
    Manual,
    /// It could not be spawned at all.
    SpawnFailed {
        /// What went wrong.
        error: String,
    },
}

impl RestartReason {
    /// Label value for metrics: exited, signaled, unhealthy, ...
    pub fn label(&self) -> &'static str {
        match self {
            RestartReason::Exited { .. } => "exited",
            RestartReason::Signaled { .. } => "signaled",
            RestartReason::Unhealthy { .. } => "unhealthy",
            RestartReason::StartTimeout => "start_timeout",
            RestartReason::Manual => "manual",
            RestartReason::SpawnFailed { .. } => "spawn_failed",
        }
    }

    fn from_exit(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Code(code) => RestartReason::Exited { code },
            ExitStatus::Signal(signal) => RestartReason::Signaled { signal },
        }
    }
}

/// Every state the supervisor can be in. Variants carry only what is valid
/// there; `attempt` counts consecutive failures (0 after a stable run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not started, or shut down. Initial and final.
    Stopped,
    /// A spawn is being executed (the actor answers with Spawned/SpawnFailed
    /// before handling any other event).
    Spawning {
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Spawned, not yet answering its gRPC health check.
    Starting {
        /// Temporal's pid.
        pid: i32,
        /// When it was spawned.
        since: Instant,
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Serving: the last health check passed.
    Running {
        /// Temporal's pid.
        pid: i32,
        /// Serving since.
        since: Instant,
        /// Consecutive failures so far (reset once stable).
        attempt: u32,
    },
    /// Was serving; recent health checks failed, below the threshold.
    Unhealthy {
        /// Temporal's pid.
        pid: i32,
        /// Serving since (kept, so recovery does not reset uptime).
        since: Instant,
        /// Consecutive failures so far.
        attempt: u32,
        /// Consecutive failed health checks.
        failures: u32,
        /// The layer that failed last.
        layer: Layer,
    },
    /// We asked the process to die and await its exit.
    Killing {
        /// Temporal's pid.
        pid: i32,
        /// Why.
        reason: RestartReason,
        /// When the failure was detected (for recovery time).
        detected_at: Instant,
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Waiting before the next spawn.
    Backoff {
        /// Spawn at.
        until: Instant,
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Like Backoff, but failures repeat: shown loudly, still retried at
    /// growing (capped) delays, never in a tight loop.
    CrashLoop {
        /// Spawn at.
        until: Instant,
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Shutting down: Temporal was told to stop; nothing restarts.
    Stopping {
        /// Temporal's pid.
        pid: i32,
    },
}

/// The state's name, for status output, metrics labels and the
/// allowed-transitions table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    #[allow(missing_docs)]
    Stopped,
    #[allow(missing_docs)]
    Spawning,
    #[allow(missing_docs)]
    Starting,
    #[allow(missing_docs)]
    Running,
    #[allow(missing_docs)]
    Unhealthy,
    #[allow(missing_docs)]
    Killing,
    #[allow(missing_docs)]
    Backoff,
    #[allow(missing_docs)]
    CrashLoop,
    #[allow(missing_docs)]
    Stopping,
}

impl StateName {
    /// Every state, for exporting one gauge per state.
    pub const ALL: [StateName; 9] = [
        StateName::Stopped,
        StateName::Spawning,
        StateName::Starting,
        StateName::Running,
        StateName::Unhealthy,
        StateName::Killing,
        StateName::Backoff,
        StateName::CrashLoop,
        StateName::Stopping,
    ];

    /// snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            StateName::Stopped => "stopped",
            StateName::Spawning => "spawning",
            StateName::Starting => "starting",
            StateName::Running => "running",
            StateName::Unhealthy => "unhealthy",
            StateName::Killing => "killing",
            StateName::Backoff => "backoff",
            StateName::CrashLoop => "crash_loop",
            StateName::Stopping => "stopping",
        }
    }
}

impl State {
    /// This state's name.
    pub fn name(&self) -> StateName {
        match self {
            State::Stopped => StateName::Stopped,
            State::Spawning { .. } => StateName::Spawning,
            State::Starting { .. } => StateName::Starting,
            State::Running { .. } => StateName::Running,
            State::Unhealthy { .. } => StateName::Unhealthy,
            State::Killing { .. } => StateName::Killing,
            State::Backoff { .. } => StateName::Backoff,
            State::CrashLoop { .. } => StateName::CrashLoop,
            State::Stopping { .. } => StateName::Stopping,
        }
    }

    /// The live Temporal pid in this state, if any.
    pub fn pid(&self) -> Option<i32> {
        match *self {
            State::Starting { pid, .. }
            | State::Running { pid, .. }
            | State::Unhealthy { pid, .. }
            | State::Killing { pid, .. }
            | State::Stopping { pid } => Some(pid),
            _ => None,
        }
    }

    /// Is Temporal serving (readiness): did its last health check pass?
    pub fn is_serving(&self) -> bool {
        matches!(self, State::Running { .. })
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Begin supervising.
    Start,
    /// The spawn action succeeded.
    Spawned {
        /// New pid.
        pid: i32,
    },
    /// The spawn action failed.
    SpawnFailed {
        /// Why (e.g. the port is held by another process).
        error: String,
    },
    /// The child exited (reaped).
    Exited {
        /// How.
        status: ExitStatus,
    },
    /// A health round passed every layer.
    ProbeOk,
    /// A health round failed at a layer that counts (process..gRPC).
    ProbeFailed {
        /// First failing layer.
        layer: Layer,
    },
    /// The backoff timer fired.
    Wake,
    /// Manual restart request.
    RestartRequested,
    /// Stop everything.
    Shutdown,
}

/// Event kind names for the transition table and errors.
fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Start => "start",
        Event::Spawned { .. } => "spawned",
        Event::SpawnFailed { .. } => "spawn_failed",
        Event::Exited { .. } => "exited",
        Event::ProbeOk => "probe_ok",
        Event::ProbeFailed { .. } => "probe_failed",
        Event::Wake => "wake",
        Event::RestartRequested => "restart_requested",
        Event::Shutdown => "shutdown",
    }
}

/// What the actor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn Temporal; answer with Spawned or SpawnFailed at once.
    Spawn,
    /// SIGKILL the group now (hangs: a stopped process ignores SIGTERM).
    Kill,
    /// SIGCONT + SIGTERM the group; SIGKILL after the grace period.
    Terminate,
    /// After the leader's exit, kill and wait out anything left in its group.
    ReapGroup,
    /// Arm the wake timer.
    WakeAt(Instant),
    /// Temporal answered its health check (first time after a spawn).
    Ready,
    /// A restart was decided: record it (metrics, status, trace).
    RecordRestart {
        /// Why.
        reason: RestartReason,
        /// When the failure was detected.
        detected_at: Instant,
    },
    /// Supervision is over; the actor returns.
    Finish,
}

/// Static configuration of the machine.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Backoff policy.
    pub policy: Policy,
    /// Consecutive failed health rounds before a restart.
    pub failure_threshold: u32,
    /// Longest wait from spawn to first healthy answer.
    pub start_timeout: Duration,
}

/// An event that the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: event {event} in state {state:?}")]
pub struct Illegal {
    /// The state.
    pub state: StateName,
    /// The event name.
    pub event: &'static str,
}

/// Allowed (state, event) pairs. Anything else is a bug in the actor.
pub fn allowed(state: StateName, event: &'static str) -> bool {
    use StateName::*;
    let live = matches!(state, Starting | Running | Unhealthy | Killing);
    match event {
        "start" => state == Stopped,
        "spawned" | "spawn_failed" => state == Spawning,
        "exited" => live || state == Stopping,
        "probe_ok" | "probe_failed" => live || state == Stopping,
        "wake" => matches!(state, Backoff | CrashLoop),
        "restart_requested" | "shutdown" => state != Spawning,
        _ => false,
    }
}

/// One transition.
pub fn step(
    state: &State,
    event: Event,
    now: Instant,
    rules: &Rules,
) -> Result<(State, Vec<Action>), Illegal> {
    let name = event_name(&event);
    if !allowed(state.name(), name) {
        return Err(Illegal {
            state: state.name(),
            event: name,
        });
    }
    let same = || Ok((state.clone(), vec![]));
    Ok(match (state, event) {
        (State::Stopped, Event::Start) => (State::Spawning { attempt: 0 }, vec![Action::Spawn]),
        (State::Stopped, _) => return same(),

        (State::Spawning { attempt }, Event::Spawned { pid }) => (
            State::Starting {
                pid,
                since: now,
                attempt: *attempt,
            },
            vec![],
        ),
        (State::Spawning { attempt }, Event::SpawnFailed { error }) => {
            // A spawn that fails (port held, binary gone) is not retried in a
            // storm: go straight to crash-loop pacing.
            let attempt = (*attempt + 1).max(rules.policy.crash_loop_after);
            backoff(
                attempt,
                RestartReason::SpawnFailed { error },
                now,
                now,
                rules,
                vec![],
            )
        }

        // Shutdown wins over everything.
        (State::Stopping { .. }, Event::Exited { .. }) => {
            (State::Stopped, vec![Action::ReapGroup, Action::Finish])
        }
        (State::Stopping { .. }, _) => return same(),
        (s, Event::Shutdown) => match s.pid() {
            Some(pid) => (State::Stopping { pid }, vec![Action::Terminate]),
            None => (State::Stopped, vec![Action::Finish]),
        },

        // A manual restart is not a failure: the attempt count stays.
        (
            State::Killing {
                reason: RestartReason::Manual,
                attempt,
                ..
            },
            Event::Exited { .. },
        ) => (
            State::Spawning { attempt: *attempt },
            vec![Action::ReapGroup, Action::Spawn],
        ),
        (
            State::Killing {
                reason,
                detected_at,
                attempt,
                ..
            },
            Event::Exited { .. },
        ) => backoff(
            *attempt + 1,
            reason.clone(),
            *detected_at,
            now,
            rules,
            vec![Action::ReapGroup],
        ),
        (State::Killing { .. }, _) => return same(),

        (
            State::Starting { attempt, .. }
            | State::Running { attempt, .. }
            | State::Unhealthy { attempt, .. },
            Event::Exited { status },
        ) => backoff(
            *attempt + 1,
            RestartReason::from_exit(status),
            now,
            now,
            rules,
            vec![Action::ReapGroup],
        ),

        (
            s @ (State::Starting { .. } | State::Running { .. } | State::Unhealthy { .. }),
            Event::RestartRequested,
        ) => (
            State::Killing {
                pid: s.pid().expect("live state has a pid"),
                reason: RestartReason::Manual,
                detected_at: now,
                attempt: attempt_of(s),
            },
            vec![Action::Terminate],
        ),
        (
            State::Backoff { attempt, .. } | State::CrashLoop { attempt, .. },
            Event::RestartRequested | Event::Wake,
        ) => (State::Spawning { attempt: *attempt }, vec![Action::Spawn]),

        // Serving proves the command works: a failure from here on is at
        // most a second attempt (short delay), never a crash-loop step.
        // Serving stably (`stable_after`) resets the count to zero.
        (State::Starting { pid, attempt, .. }, Event::ProbeOk) => (
            State::Running {
                pid: *pid,
                since: now,
                attempt: (*attempt).min(1),
            },
            vec![Action::Ready],
        ),
        (
            State::Starting {
                pid,
                since,
                attempt,
            },
            Event::ProbeFailed { .. },
        ) => {
            if now.duration_since(*since) >= rules.start_timeout {
                (
                    State::Killing {
                        pid: *pid,
                        reason: RestartReason::StartTimeout,
                        detected_at: now,
                        attempt: *attempt,
                    },
                    vec![Action::Kill],
                )
            } else {
                return same();
            }
        }

        (
            State::Running {
                pid,
                since,
                attempt,
            }
            | State::Unhealthy {
                pid,
                since,
                attempt,
                ..
            },
            Event::ProbeOk,
        ) => {
            let stable = now.duration_since(*since) >= rules.policy.stable_after;
            (
                State::Running {
                    pid: *pid,
                    since: *since,
                    attempt: if stable { 0 } else { *attempt },
                },
                vec![],
            )
        }
        (
            State::Running {
                pid,
                since,
                attempt,
            },
            Event::ProbeFailed { layer },
        ) => unhealthy(*pid, *since, *attempt, 1, layer, now, rules),
        (
            State::Unhealthy {
                pid,
                since,
                attempt,
                failures,
                ..
            },
            Event::ProbeFailed { layer },
        ) => unhealthy(*pid, *since, *attempt, failures + 1, layer, now, rules),

        (s, e) => {
            return Err(Illegal {
                state: s.name(),
                event: event_name(&e),
            });
        }
    })
}

fn attempt_of(s: &State) -> u32 {
    s.attempt()
}

impl State {
    /// Consecutive failures counted in this state (0 after a stable run).
    pub fn attempt(&self) -> u32 {
        match *self {
            State::Spawning { attempt }
            | State::Starting { attempt, .. }
            | State::Running { attempt, .. }
            | State::Unhealthy { attempt, .. }
            | State::Killing { attempt, .. }
            | State::Backoff { attempt, .. }
            | State::CrashLoop { attempt, .. } => attempt,
            State::Stopped | State::Stopping { .. } => 0,
        }
    }
}

fn unhealthy(
    pid: i32,
    since: Instant,
    attempt: u32,
    failures: u32,
    layer: Layer,
    now: Instant,
    rules: &Rules,
) -> (State, Vec<Action>) {
    if failures >= rules.failure_threshold {
        (
            State::Killing {
                pid,
                reason: RestartReason::Unhealthy { layer },
                detected_at: now,
                attempt,
            },
            vec![Action::Kill],
        )
    } else {
        (
            State::Unhealthy {
                pid,
                since,
                attempt,
                failures,
                layer,
            },
            vec![],
        )
    }
}

fn backoff(
    attempt: u32,
    reason: RestartReason,
    detected_at: Instant,
    now: Instant,
    rules: &Rules,
    mut actions: Vec<Action>,
) -> (State, Vec<Action>) {
    let until = now + rules.policy.delay(attempt);
    actions.push(Action::WakeAt(until));
    actions.push(Action::RecordRestart {
        reason,
        detected_at,
    });
    let state = if rules.policy.is_crash_loop(attempt) {
        State::CrashLoop { until, attempt }
    } else {
        State::Backoff { until, attempt }
    };
    (state, actions)
}

#[cfg(test)]
mod tests;
