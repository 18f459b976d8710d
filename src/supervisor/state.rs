//! The supervisor's decision core: a pure `step(state, event, now)` that
//! returns the next state and the actions to execute. No processes, no
//! clocks, no I/O: the actor around it does those, and tests walk it from
//! tables with made-up instants.

use super::policy::Policy;
use crate::model::{ExitStatus, Layer, RestartPolicy, RestartReason, StateName};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Every state the supervisor can be in. Variants carry only what is valid
/// there; `attempt` counts consecutive failures (0 after a stable run).
/// Serializable for an upgrade's handover (instants as CLOCK_MONOTONIC
/// readings, which an exec keeps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Declared, waiting for its dependencies to be ready.
    Waiting,
    /// Not started, or shut down. Final after a shutdown.
    Stopped,
    /// A spawn is being executed (the actor answers with Spawned/SpawnFailed
    /// before handling any other event).
    Spawning {
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Spawned, not yet ready.
    Starting {
        /// The process's pid.
        pid: i32,
        /// When it was spawned.
        #[serde(with = "crate::model::clock::mono")]
        since: Instant,
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Ready: the last health check passed.
    Running {
        /// The process's pid.
        pid: i32,
        /// Ready since.
        #[serde(with = "crate::model::clock::mono")]
        since: Instant,
        /// Consecutive failures so far (reset once stable).
        attempt: u32,
    },
    /// Was ready; recent health checks failed, below the threshold.
    Unhealthy {
        /// The process's pid.
        pid: i32,
        /// Ready since (kept, so recovery does not reset uptime).
        #[serde(with = "crate::model::clock::mono")]
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
        /// The process's pid.
        pid: i32,
        /// Why.
        reason: RestartReason,
        /// When the failure was detected (for recovery time).
        #[serde(with = "crate::model::clock::mono")]
        detected_at: Instant,
        /// Consecutive failures so far.
        attempt: u32,
        /// Whether this run was ever ready.
        served: bool,
    },
    /// Waiting before the next spawn.
    Backoff {
        /// Spawn at.
        #[serde(with = "crate::model::clock::mono")]
        until: Instant,
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Like Backoff, but failures repeat: shown loudly, still retried at
    /// growing (capped) delays, never in a tight loop.
    CrashLoop {
        /// Spawn at.
        #[serde(with = "crate::model::clock::mono")]
        until: Instant,
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Ended, and its restart policy says not to start it again; a manual
    /// restart does.
    Exited,
    /// Shutting down: the process was told to stop; nothing restarts.
    Stopping {
        /// The process's pid.
        pid: i32,
    },
}

impl State {
    /// This state's name.
    pub fn name(&self) -> StateName {
        match self {
            State::Waiting => StateName::Waiting,
            State::Stopped => StateName::Stopped,
            State::Spawning { .. } => StateName::Spawning,
            State::Starting { .. } => StateName::Starting,
            State::Running { .. } => StateName::Running,
            State::Unhealthy { .. } => StateName::Unhealthy,
            State::Killing { .. } => StateName::Killing,
            State::Backoff { .. } => StateName::Backoff,
            State::CrashLoop { .. } => StateName::CrashLoop,
            State::Exited => StateName::Exited,
            State::Stopping { .. } => StateName::Stopping,
        }
    }

    /// The live pid in this state, if any.
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

    /// Is the process ready (readiness): did its last health check pass?
    pub fn is_serving(&self) -> bool {
        matches!(self, State::Running { .. })
    }

    /// Has it served, and not been condemned yet (running or unhealthy)?
    pub fn is_serving_or_unhealthy(&self) -> bool {
        matches!(self, State::Running { .. } | State::Unhealthy { .. })
    }

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
            State::Waiting | State::Stopped | State::Exited | State::Stopping { .. } => 0,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Begin supervising (dependencies, if any, are ready).
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
    /// The process is ready: a health round passed every layer (or its
    /// readiness line was logged).
    ProbeOk,
    /// A health round failed at a layer that counts (process onwards).
    ProbeFailed {
        /// First failing layer.
        layer: Layer,
    },
    /// A check run on its own schedule (Temporal's write check) failed
    /// `failure_threshold` times in a row, and its policy is to restart.
    Condemned {
        /// Its layer.
        layer: Layer,
    },
    /// The lock or PID file was found deleted, replaced or wrong.
    Tampered {
        /// Which of the two.
        layer: Layer,
    },
    /// The backoff timer fired.
    Wake,
    /// Manual restart request.
    RestartRequested,
    /// Replace it (stop, then start), because of `trigger` (a changed
    /// file, a configuration reload, a dependency's restart).
    Reload {
        /// What triggered it.
        trigger: String,
    },
    /// A new process, started beside the old one and ready, replaced it
    /// (an overlap reload); the old one is being stopped apart.
    Replaced {
        /// The new process.
        pid: i32,
        /// What triggered it.
        trigger: String,
    },
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
        Event::Condemned { .. } => "condemned",
        Event::Tampered { .. } => "tampered",
        Event::Wake => "wake",
        Event::RestartRequested => "restart_requested",
        Event::Reload { .. } => "reload",
        Event::Replaced { .. } => "replaced",
        Event::Shutdown => "shutdown",
    }
}

/// What the actor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn the process; answer with Spawned or SpawnFailed at once.
    Spawn,
    /// SIGKILL the group now (hangs: a stopped process ignores SIGTERM).
    Kill,
    /// The stop signal (SIGCONT too) to the group; SIGKILL after the grace.
    Terminate,
    /// After the leader's exit, kill and wait out anything left in its group.
    ReapGroup,
    /// Arm the wake timer.
    WakeAt(Instant),
    /// The process became ready (first time after a spawn).
    Ready,
    /// A restart was decided: record it (metrics, status, trace).
    RecordRestart {
        /// Why.
        reason: RestartReason,
        /// When the failure was detected.
        detected_at: Instant,
    },
    /// Put the lock or PID file right again (done by their one writer).
    Repair(Layer),
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
    /// Longest wait from spawn to ready.
    pub start_timeout: Duration,
    /// Whether an ended process starts again.
    pub restart: RestartPolicy,
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
    let live = state.is_live();
    match event {
        "start" => matches!(state, Stopped | Waiting),
        "spawned" | "spawn_failed" => state == Spawning,
        "exited" | "probe_ok" | "probe_failed" | "condemned" | "replaced" => {
            live || state == Stopping
        }
        "wake" => matches!(state, Backoff | CrashLoop),
        "tampered" | "restart_requested" | "reload" | "shutdown" => state != Spawning,
        _ => false,
    }
}

/// One transition: the table is checked, then the source state decides.
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
    let same = (state.clone(), vec![]);
    Ok(match (state, event) {
        // A tampered lock or PID file is repaired, whatever the state.
        (s, Event::Tampered { layer }) => (s.clone(), vec![Action::Repair(layer)]),
        // Nothing restarts during a shutdown; shutdown wins over the rest.
        (State::Stopping { .. }, Event::Exited { .. }) => {
            (State::Stopped, vec![Action::ReapGroup, Action::Finish])
        }
        (State::Stopping { .. }, _) => same,
        (s, Event::Shutdown) => match s.pid() {
            Some(pid) => (State::Stopping { pid }, vec![Action::Terminate]),
            None => (State::Stopped, vec![Action::Finish]),
        },
        (State::Stopped | State::Waiting, Event::Start) => {
            (State::Spawning { attempt: 0 }, vec![Action::Spawn])
        }
        (State::Stopped | State::Waiting, _) => same,
        (State::Spawning { attempt }, e) => from_spawning(*attempt, e, now, rules),
        (State::Starting { .. }, e) => from_starting(state, e, now, rules),
        (State::Running { .. } | State::Unhealthy { .. }, e) => from_ready(state, e, now, rules),
        (State::Killing { .. }, e) => from_killing(state, e, now, rules),
        (State::Backoff { attempt, .. } | State::CrashLoop { attempt, .. }, _) => {
            // Wake or a manual restart: spawn now.
            (State::Spawning { attempt: *attempt }, vec![Action::Spawn])
        }
        (State::Exited, Event::RestartRequested | Event::Reload { .. }) => {
            (State::Spawning { attempt: 0 }, vec![Action::Spawn])
        }
        (State::Exited, _) => same,
    })
}

fn from_spawning(attempt: u32, event: Event, now: Instant, rules: &Rules) -> (State, Vec<Action>) {
    match event {
        Event::Spawned { pid } => (
            State::Starting {
                pid,
                since: now,
                attempt,
            },
            vec![],
        ),
        // A spawn that fails (port held, binary gone) is not retried in a
        // storm: go straight to crash-loop pacing.
        Event::SpawnFailed { error } => {
            let attempt = (attempt + 1).max(rules.policy.crash_loop_after);
            after_failure(
                attempt,
                false,
                RestartReason::SpawnFailed { error },
                now,
                now,
                rules,
                vec![],
            )
        }
        _ => unreachable!("the table allows only spawned/spawn_failed in spawning"),
    }
}

fn from_starting(state: &State, event: Event, now: Instant, rules: &Rules) -> (State, Vec<Action>) {
    let State::Starting {
        pid,
        since,
        attempt,
    } = *state
    else {
        unreachable!("from_starting is called in starting")
    };
    match event {
        // Serving proves the command works: a failure from here on is at
        // most a second attempt (short delay), never a crash-loop step.
        Event::ProbeOk => (
            State::Running {
                pid,
                since: now,
                attempt: attempt.min(1),
            },
            vec![Action::Ready],
        ),
        Event::ProbeFailed { .. } if now.duration_since(since) >= rules.start_timeout => {
            kill(pid, RestartReason::StartTimeout, now, attempt, false)
        }
        Event::Exited { status } => exited(attempt, false, status, now, rules),
        Event::RestartRequested => manual_restart(pid, now, attempt, false),
        Event::Reload { trigger } => reload(pid, trigger, now, attempt, false),
        _ => (state.clone(), vec![]),
    }
}

fn from_ready(state: &State, event: Event, now: Instant, rules: &Rules) -> (State, Vec<Action>) {
    let (pid, since, attempt, failures) = match *state {
        State::Running {
            pid,
            since,
            attempt,
        } => (pid, since, attempt, 0),
        State::Unhealthy {
            pid,
            since,
            attempt,
            failures,
            ..
        } => (pid, since, attempt, failures),
        _ => unreachable!("from_ready is called in running or unhealthy"),
    };
    match event {
        // Serving stably (`stable_after`) resets the count to zero.
        Event::ProbeOk => {
            let stable = now.duration_since(since) >= rules.policy.stable_after;
            let attempt = if stable { 0 } else { attempt };
            (
                State::Running {
                    pid,
                    since,
                    attempt,
                },
                vec![],
            )
        }
        Event::ProbeFailed { layer } if failures + 1 >= rules.failure_threshold => {
            kill(pid, RestartReason::Unhealthy { layer }, now, attempt, true)
        }
        // Its own threshold is already passed.
        Event::Condemned { layer } => {
            kill(pid, RestartReason::Unhealthy { layer }, now, attempt, true)
        }
        Event::ProbeFailed { layer } => (
            State::Unhealthy {
                pid,
                since,
                attempt,
                failures: failures + 1,
                layer,
            },
            vec![],
        ),
        Event::Exited { status } => exited(attempt, true, status, now, rules),
        Event::RestartRequested => manual_restart(pid, now, attempt, true),
        Event::Reload { trigger } => reload(pid, trigger, now, attempt, true),
        // The new process serves already: a fresh run, not a failure.
        Event::Replaced { pid, trigger } => (
            State::Running {
                pid,
                since: now,
                attempt: 0,
            },
            vec![
                Action::RecordRestart {
                    reason: RestartReason::Reload { trigger },
                    detected_at: now,
                },
                Action::Ready,
            ],
        ),
        _ => (state.clone(), vec![]),
    }
}

fn from_killing(state: &State, event: Event, now: Instant, rules: &Rules) -> (State, Vec<Action>) {
    let State::Killing {
        reason,
        detected_at,
        attempt,
        served,
        ..
    } = state
    else {
        unreachable!("from_killing is called in killing")
    };
    match (reason, event) {
        // A manual restart is not a failure: the attempt count stays.
        (RestartReason::Manual, Event::Exited { .. }) => (
            State::Spawning { attempt: *attempt },
            vec![Action::ReapGroup, Action::Spawn],
        ),
        (_, Event::Exited { .. }) => after_failure(
            failures(*attempt, *served),
            *served,
            reason.clone(),
            *detected_at,
            now,
            rules,
            vec![Action::ReapGroup],
        ),
        _ => (state.clone(), vec![]),
    }
}

/// SIGKILL the group for `reason` (a hang or a start timeout).
fn kill(
    pid: i32,
    reason: RestartReason,
    now: Instant,
    attempt: u32,
    served: bool,
) -> (State, Vec<Action>) {
    (
        State::Killing {
            pid,
            reason,
            detected_at: now,
            attempt,
            served,
        },
        vec![Action::Kill],
    )
}

/// A graceful stop, then a spawn.
fn manual_restart(pid: i32, now: Instant, attempt: u32, served: bool) -> (State, Vec<Action>) {
    (
        State::Killing {
            pid,
            reason: RestartReason::Manual,
            detected_at: now,
            attempt,
            served,
        },
        vec![Action::Terminate],
    )
}

/// A graceful stop, then a spawn, because of `trigger`.
fn reload(
    pid: i32,
    trigger: String,
    now: Instant,
    attempt: u32,
    served: bool,
) -> (State, Vec<Action>) {
    (
        State::Killing {
            pid,
            reason: RestartReason::Reload { trigger },
            detected_at: now,
            attempt,
            served,
        },
        vec![Action::Terminate],
    )
}

/// The failure count after a run ends: a run that was ready proved the
/// command works and counts as the first failure of a new streak; one
/// that never was adds to the streak.
fn failures(attempt: u32, served: bool) -> u32 {
    if served { 1 } else { attempt + 1 }
}

/// The process exited on its own.
fn exited(
    attempt: u32,
    served: bool,
    status: ExitStatus,
    now: Instant,
    rules: &Rules,
) -> (State, Vec<Action>) {
    after_failure(
        failures(attempt, served),
        served,
        RestartReason::from_exit(status),
        now,
        now,
        rules,
        vec![Action::ReapGroup],
    )
}

/// After a process ended for `reason`: start again (at once when the run
/// was ever ready, else after the policy's delay for `attempt`), or, when
/// the restart policy says not to, stay `exited`.
fn after_failure(
    attempt: u32,
    served: bool,
    reason: RestartReason,
    detected_at: Instant,
    now: Instant,
    rules: &Rules,
    mut actions: Vec<Action>,
) -> (State, Vec<Action>) {
    if !rules.restart.restarts(&reason) {
        return (State::Exited, actions);
    }
    let delay = if served {
        Duration::ZERO
    } else {
        rules.policy.delay(attempt)
    };
    let until = now + delay;
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
