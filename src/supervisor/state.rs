//! The supervisor's decision core: a pure `step(life, event, now)` that
//! returns the next state and the actions to execute. No processes, no
//! clocks, no I/O: the actor around it does those, and tests walk it from
//! tables with made-up instants.
//!
//! `step` is total: every (state, event) pair has an outcome, written
//! down in `docs/transitions.md` and checked against `step` by a test
//! that reads that file. An event that no longer applies — a backoff
//! timer of an earlier backoff, the exit or probe result of a process
//! that is not the current one, a verdict on a process already condemned
//! — carries the generation or pid it belongs to and comes out
//! [`Outcome::Stale`]: nothing changes, and the actor counts it. Nothing
//! an event does can stop more than its own unit.

pub use crate::model::Rules;
use crate::model::{ExitStatus, Layer, RestartReason, StateName};
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
        /// It has run for `min_uptime`: an exit from here on is not a
        /// failed start.
        #[serde(default = "yes")]
        proven: bool,
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
        /// It has run for `min_uptime`.
        #[serde(default = "yes")]
        proven: bool,
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
        /// It has run for `min_uptime`.
        #[serde(default = "yes")]
        proven: bool,
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
        /// Whether this run counts as one that served: ready, and up for
        /// `min_uptime`.
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

fn yes() -> bool {
    true
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

/// A unit's state and the generation of its backoff timer: a wake-up is
/// for the backoff it was armed in, and a later backoff has a later
/// generation, so an earlier one's timer can never end it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Life {
    /// The state.
    pub state: State,
    /// Incremented each time a backoff is entered.
    #[serde(default)]
    pub generation: u64,
}

impl Life {
    /// A unit in `state`, generation 0.
    pub fn new(state: State) -> Life {
        Life {
            state,
            generation: 0,
        }
    }
}

/// What happened. Events about a process carry its pid, and a wake-up
/// the generation of the backoff it was armed for: the machine ignores
/// (and counts) those that are not about the present.
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
    /// A child exited (reaped).
    Exited {
        /// Which.
        pid: i32,
        /// How.
        status: ExitStatus,
    },
    /// The process has run for `min_uptime`.
    Uptime {
        /// Which.
        pid: i32,
    },
    /// The process is ready: a health round passed every layer (or its
    /// readiness line was logged).
    ProbeOk {
        /// The process the round checked.
        pid: i32,
    },
    /// A health round failed at a layer that counts (process onwards).
    ProbeFailed {
        /// The process the round checked.
        pid: i32,
        /// First failing layer.
        layer: Layer,
    },
    /// A check run on its own schedule (Temporal's write check) failed
    /// `failure_threshold` times in a row, and its policy is to restart.
    Condemned {
        /// The process it checked.
        pid: i32,
        /// Its layer.
        layer: Layer,
    },
    /// The lock or PID file was found deleted, replaced or wrong.
    Tampered {
        /// Which of the two.
        layer: Layer,
    },
    /// The backoff timer fired.
    Wake {
        /// The backoff it was armed in.
        generation: u64,
    },
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
        /// The process it replaced.
        old: i32,
        /// The new process.
        pid: i32,
        /// When the new one was spawned.
        spawned: Instant,
        /// What triggered it.
        trigger: String,
    },
    /// Stop everything.
    Shutdown,
}

impl Event {
    /// The event's kind, as the transition table and the stale-event
    /// counter name it.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Spawned { .. } => "spawned",
            Event::SpawnFailed { .. } => "spawn_failed",
            Event::Exited { .. } => "exited",
            Event::Uptime { .. } => "uptime",
            Event::ProbeOk { .. } => "probe_ok",
            Event::ProbeFailed { .. } => "probe_failed",
            Event::Condemned { .. } => "condemned",
            Event::Tampered { .. } => "tampered",
            Event::Wake { .. } => "wake",
            Event::RestartRequested => "restart_requested",
            Event::Reload { .. } => "reload",
            Event::Replaced { .. } => "replaced",
            Event::Shutdown => "shutdown",
        }
    }

    /// Every event kind, in the transition table's order.
    pub const NAMES: [&'static str; 14] = [
        "start",
        "spawned",
        "spawn_failed",
        "exited",
        "uptime",
        "probe_ok",
        "probe_failed",
        "condemned",
        "tampered",
        "wake",
        "restart_requested",
        "reload",
        "replaced",
        "shutdown",
    ];

    /// The process this event is about, if it is about one.
    fn pid(&self) -> Option<i32> {
        match *self {
            Event::Exited { pid, .. }
            | Event::Uptime { pid }
            | Event::ProbeOk { pid }
            | Event::ProbeFailed { pid, .. }
            | Event::Condemned { pid, .. } => Some(pid),
            Event::Replaced { old, .. } => Some(old),
            _ => None,
        }
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
    /// Arm the wake timer for backoff generation `generation`.
    WakeAt {
        /// When.
        at: Instant,
        /// The backoff's generation, carried back by its `Wake`.
        generation: u64,
    },
    /// Disarm the wake timer (the backoff ended another way).
    CancelWake,
    /// Tell the machine when process `pid` has run for `min_uptime`.
    UptimeAt {
        /// When.
        at: Instant,
        /// Which process.
        pid: i32,
    },
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

/// How an event was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It applied (the state may be the same).
    Applied,
    /// It asks for nothing in this state (a start of a running unit, a
    /// restart while stopping): nothing changes.
    Ignored,
    /// It is about a past process or an earlier backoff: nothing changes,
    /// and it is counted.
    Stale,
}

/// One transition's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The next state.
    pub life: Life,
    /// What to do.
    pub actions: Vec<Action>,
    /// How the event was taken.
    pub outcome: Outcome,
}

/// What a source state makes of an event: a transition, or nothing.
enum Decision {
    /// To this state, with these actions.
    To(State, Vec<Action>),
    /// Nothing changes; how the event was taken.
    Same(Outcome),
}

use Decision::{Same, To};

/// One transition. Total: every (state, event) has an outcome; events
/// about another process or an earlier backoff are [`Outcome::Stale`].
pub fn step(life: &Life, event: Event, now: Instant, rules: &Rules) -> Step {
    // About a process that is not the current one, or a timer of an
    // earlier backoff: nothing to decide.
    let current = match &event {
        Event::Wake { generation } => *generation == life.generation,
        e => e.pid().is_none_or(|pid| life.state.pid() == Some(pid)),
    };
    let decision = if current {
        decide(&life.state, event, now, rules)
    } else {
        Same(Outcome::Stale)
    };
    match decision {
        Same(outcome) => Step {
            life: life.clone(),
            actions: vec![],
            outcome,
        },
        To(state, mut actions) => {
            let was_backoff = matches!(life.state, State::Backoff { .. } | State::CrashLoop { .. });
            let is_backoff = matches!(state, State::Backoff { .. } | State::CrashLoop { .. });
            // A backoff entered anew gets the next generation, and so does
            // its timer.
            let generation = if is_backoff && !was_backoff {
                life.generation + 1
            } else {
                life.generation
            };
            for a in &mut actions {
                if let Action::WakeAt { generation: g, .. } = a {
                    *g = generation;
                }
            }
            Step {
                life: Life { state, generation },
                actions,
                outcome: Outcome::Applied,
            }
        }
    }
}

/// The source state decides.
fn decide(state: &State, event: Event, now: Instant, rules: &Rules) -> Decision {
    match (state, event) {
        // Lock and PID file are repaired whatever runs, until shutdown.
        (State::Stopping { .. } | State::Stopped, Event::Tampered { .. }) => Same(Outcome::Ignored),
        (s, Event::Tampered { layer }) => To(s.clone(), vec![Action::Repair(layer)]),
        (State::Stopping { .. }, e) => from_stopping(e),
        (s, Event::Shutdown) => match s.pid() {
            Some(pid) => To(State::Stopping { pid }, vec![Action::Terminate]),
            None if matches!(s, State::Backoff { .. } | State::CrashLoop { .. }) => {
                To(State::Stopped, vec![Action::CancelWake, Action::Finish])
            }
            None => To(State::Stopped, vec![Action::Finish]),
        },
        (State::Stopped | State::Waiting, Event::Start) => {
            To(State::Spawning { attempt: 0 }, vec![Action::Spawn])
        }
        (State::Spawning { attempt }, e) => from_spawning(*attempt, e, now, rules),
        (State::Starting { .. }, e) => from_starting(state, e, now, rules),
        (State::Running { .. } | State::Unhealthy { .. }, e) => from_ready(state, e, now, rules),
        (State::Killing { .. }, e) => from_killing(state, e, now, rules),
        (State::Backoff { attempt, .. } | State::CrashLoop { attempt, .. }, e) => {
            from_backoff(*attempt, e)
        }
        (State::Exited, Event::RestartRequested | Event::Reload { .. }) => {
            To(State::Spawning { attempt: 0 }, vec![Action::Spawn])
        }
        // No process, nothing pending (waiting, stopped, exited): commands
        // that ask for nothing here are ignored, process events are stale.
        (
            State::Stopped | State::Waiting | State::Exited,
            Event::Start | Event::RestartRequested | Event::Reload { .. },
        ) => Same(Outcome::Ignored),
        (State::Stopped | State::Waiting | State::Exited, _) => Same(Outcome::Stale),
    }
}

fn from_stopping(event: Event) -> Decision {
    match event {
        // The pid was checked: it is the process being stopped.
        Event::Exited { .. } => To(State::Stopped, vec![Action::ReapGroup, Action::Finish]),
        Event::Start | Event::RestartRequested | Event::Reload { .. } | Event::Shutdown => {
            Same(Outcome::Ignored)
        }
        _ => Same(Outcome::Stale),
    }
}

fn from_spawning(attempt: u32, event: Event, now: Instant, rules: &Rules) -> Decision {
    match event {
        Event::Spawned { pid } => {
            let proven = rules.min_uptime.is_zero();
            if proven && rules.ready_on_uptime {
                let state = State::Running {
                    pid,
                    since: now,
                    attempt: attempt.min(1),
                    proven,
                };
                return To(state, vec![Action::Ready]);
            }
            let actions = if proven {
                vec![]
            } else {
                vec![Action::UptimeAt {
                    at: now + rules.min_uptime,
                    pid,
                }]
            };
            let state = State::Starting {
                pid,
                since: now,
                attempt,
                proven,
            };
            To(state, actions)
        }
        // A spawn that fails (port held, binary gone, an env file refused)
        // is not retried in a storm: go straight to crash-loop pacing.
        Event::SpawnFailed { error } => {
            let attempt = (attempt + 1).max(rules.policy.crash_loop_after);
            let reason = RestartReason::SpawnFailed { error };
            let (s, a) = after_failure(attempt, false, reason, now, now, rules, vec![]);
            To(s, a)
        }
        Event::Start | Event::RestartRequested | Event::Reload { .. } => Same(Outcome::Ignored),
        _ => Same(Outcome::Stale),
    }
}

fn from_starting(state: &State, event: Event, now: Instant, rules: &Rules) -> Decision {
    let State::Starting {
        pid,
        since,
        attempt,
        proven,
    } = *state
    else {
        unreachable!("from_starting is called in starting")
    };
    let ready = |proven: bool| {
        // Serving proves the command works, once it has also run for
        // `min_uptime`: then a failure is at most a second attempt (short
        // delay), never a crash-loop step. A process that serves and dies
        // sooner keeps its streak growing.
        let attempt = if proven { attempt.min(1) } else { attempt };
        let state = State::Running {
            pid,
            since: now,
            attempt,
            proven,
        };
        To(state, vec![Action::Ready])
    };
    let (s, a) = match event {
        // With no readiness check, a round says only that it is alive:
        // ready means up for `min_uptime`.
        Event::ProbeOk { .. } if rules.ready_on_uptime => (state.clone(), vec![]),
        Event::ProbeOk { .. } => return ready(proven),
        Event::Uptime { .. } if rules.ready_on_uptime => return ready(true),
        Event::Uptime { .. } => {
            let state = State::Starting {
                pid,
                since,
                attempt,
                proven: true,
            };
            (state, vec![])
        }
        Event::ProbeFailed { .. } if now.duration_since(since) >= rules.start_timeout => {
            kill(pid, RestartReason::StartTimeout, now, attempt, false)
        }
        Event::ProbeFailed { .. } | Event::Condemned { .. } => (state.clone(), vec![]),
        Event::Exited { status, .. } => exited(attempt, false, status, now, rules),
        Event::RestartRequested => stop_then_start(pid, RestartReason::Manual, now, attempt, false),
        Event::Reload { trigger } => {
            stop_then_start(pid, RestartReason::Reload { trigger }, now, attempt, false)
        }
        Event::Start => return Same(Outcome::Ignored),
        // A replacement is started only beside a serving process.
        _ => return Same(Outcome::Stale),
    };
    To(s, a)
}

fn from_ready(state: &State, event: Event, now: Instant, rules: &Rules) -> Decision {
    let (pid, since, attempt, failures, proven) = match *state {
        State::Running {
            pid,
            since,
            attempt,
            proven,
        } => (pid, since, attempt, 0, proven),
        State::Unhealthy {
            pid,
            since,
            attempt,
            failures,
            proven,
            ..
        } => (pid, since, attempt, failures, proven),
        _ => unreachable!("from_ready is called in running or unhealthy"),
    };
    let (s, a) = match event {
        // Serving stably (`stable_after`, and up for `min_uptime`) resets
        // the count to zero.
        Event::ProbeOk { .. } => {
            let stable = proven && now.duration_since(since) >= rules.policy.stable_after;
            let attempt = if stable { 0 } else { attempt };
            let state = State::Running {
                pid,
                since,
                attempt,
                proven,
            };
            (state, vec![])
        }
        Event::Uptime { .. } => {
            let mut s = state.clone();
            if let State::Running { proven, .. } | State::Unhealthy { proven, .. } = &mut s {
                *proven = true;
            }
            (s, vec![])
        }
        Event::ProbeFailed { layer, .. } if failures + 1 >= rules.failure_threshold => kill(
            pid,
            RestartReason::Unhealthy { layer },
            now,
            attempt,
            proven,
        ),
        // Its own threshold is already passed.
        Event::Condemned { layer, .. } => kill(
            pid,
            RestartReason::Unhealthy { layer },
            now,
            attempt,
            proven,
        ),
        Event::ProbeFailed { layer, .. } => {
            let state = State::Unhealthy {
                pid,
                since,
                attempt,
                failures: failures + 1,
                layer,
                proven,
            };
            (state, vec![])
        }
        Event::Exited { status, .. } => exited(attempt, proven, status, now, rules),
        Event::RestartRequested => {
            stop_then_start(pid, RestartReason::Manual, now, attempt, proven)
        }
        Event::Reload { trigger } => {
            stop_then_start(pid, RestartReason::Reload { trigger }, now, attempt, proven)
        }
        // The new process serves already: a fresh run, not a failure.
        Event::Replaced {
            pid,
            spawned,
            trigger,
            ..
        } => replaced(pid, spawned, trigger, now, rules),
        Event::Start => return Same(Outcome::Ignored),
        _ => return Same(Outcome::Stale),
    };
    To(s, a)
}

/// An overlap's new process took over, ready: running from now, up for
/// `min_uptime` once it has been since its own spawn.
fn replaced(
    pid: i32,
    spawned: Instant,
    trigger: String,
    now: Instant,
    rules: &Rules,
) -> (State, Vec<Action>) {
    let proven = now.saturating_duration_since(spawned) >= rules.min_uptime;
    let mut actions = vec![
        Action::RecordRestart {
            reason: RestartReason::Reload { trigger },
            detected_at: now,
        },
        Action::Ready,
    ];
    if !proven {
        actions.push(Action::UptimeAt {
            at: spawned + rules.min_uptime,
            pid,
        });
    }
    let state = State::Running {
        pid,
        since: now,
        attempt: 0,
        proven,
    };
    (state, actions)
}

fn from_killing(state: &State, event: Event, now: Instant, rules: &Rules) -> Decision {
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
        (RestartReason::Manual, Event::Exited { .. }) => To(
            State::Spawning { attempt: *attempt },
            vec![Action::ReapGroup, Action::Spawn],
        ),
        // Nor is a replacement, whatever the restart policy says of exits.
        (RestartReason::Reload { .. }, Event::Exited { .. }) => To(
            State::Spawning { attempt: *attempt },
            vec![
                Action::ReapGroup,
                Action::RecordRestart {
                    reason: reason.clone(),
                    detected_at: *detected_at,
                },
                Action::Spawn,
            ],
        ),
        (_, Event::Exited { .. }) => {
            let (s, a) = after_failure(
                failures(*attempt, *served),
                *served,
                reason.clone(),
                *detected_at,
                now,
                rules,
                vec![Action::ReapGroup],
            );
            To(s, a)
        }
        (_, Event::Start | Event::RestartRequested | Event::Reload { .. }) => {
            Same(Outcome::Ignored)
        }
        // Verdicts on a process already condemned no longer apply.
        _ => Same(Outcome::Stale),
    }
}

fn from_backoff(attempt: u32, event: Event) -> Decision {
    let spawning = State::Spawning { attempt };
    match event {
        // Its generation was checked: this backoff's own timer.
        Event::Wake { .. } => To(spawning, vec![Action::Spawn]),
        // Asked for now (a fix saved, a restart typed): spawn at once;
        // this backoff's timer no longer applies.
        Event::RestartRequested | Event::Reload { .. } => {
            To(spawning, vec![Action::CancelWake, Action::Spawn])
        }
        Event::Start => Same(Outcome::Ignored),
        _ => Same(Outcome::Stale),
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

/// A graceful stop, then a spawn, because of `reason` (a manual restart
/// or a reload).
fn stop_then_start(
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
        vec![Action::Terminate],
    )
}

/// The failure count after a run ends: a run that served (ready, and up
/// for `min_uptime`) proved the command works and counts as the first
/// failure of a new streak; one that did not adds to the streak.
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
/// served, else after the policy's delay for `attempt`), or, when the
/// restart policy says not to, stay `exited`.
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
    // The generation is set when the step is renumbered.
    actions.push(Action::WakeAt {
        at: until,
        generation: 0,
    });
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
