//! Why a unit restarts, and when an ended one starts again: values the
//! state machine decides with, and the status, metrics and traces show.

use super::{ExitStatus, Layer};
use serde::{Deserialize, Serialize};

/// Why a unit is being (or was) restarted.
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
    /// A new process replaced it: a watched file changed, the
    /// configuration was reloaded, or a dependency restarted.
    Reload {
        /// What triggered it (e.g. the file that changed).
        trigger: String,
    },
}

impl RestartReason {
    /// Its kind: the label of metrics and the status.
    pub fn kind(&self) -> RestartKind {
        match self {
            RestartReason::Exited { .. } => RestartKind::Exited,
            RestartReason::Signaled { .. } => RestartKind::Signaled,
            RestartReason::Unhealthy { .. } => RestartKind::Unhealthy,
            RestartReason::StartTimeout => RestartKind::StartTimeout,
            RestartReason::Manual => RestartKind::Manual,
            RestartReason::SpawnFailed { .. } => RestartKind::SpawnFailed,
            RestartReason::Reload { .. } => RestartKind::Reload,
        }
    }

    /// Label value for metrics: exited, signaled, unhealthy, ...
    pub fn label(&self) -> &'static str {
        self.kind().as_str()
    }

    /// A hang (failed health checks), as opposed to an exit.
    pub fn is_hang(&self) -> bool {
        matches!(self, RestartReason::Unhealthy { .. })
    }

    /// Why a process that ended with `status` on its own restarts.
    pub fn from_exit(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Code(code) => RestartReason::Exited { code },
            ExitStatus::Signal(signal) => RestartReason::Signaled { signal },
        }
    }
}

/// The kinds of [`RestartReason`], without their details: the one list
/// that metrics export from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartKind {
    /// It exited on its own.
    Exited,
    /// A signal we did not send ended it.
    Signaled,
    /// Its health checks failed.
    Unhealthy,
    /// It did not become ready in time.
    StartTimeout,
    /// Someone asked.
    Manual,
    /// It could not be spawned.
    SpawnFailed,
    /// A change replaced it.
    Reload,
}

impl RestartKind {
    /// Every kind.
    pub const ALL: [RestartKind; 7] = [
        RestartKind::Exited,
        RestartKind::Signaled,
        RestartKind::Unhealthy,
        RestartKind::StartTimeout,
        RestartKind::Manual,
        RestartKind::SpawnFailed,
        RestartKind::Reload,
    ];

    /// snake_case name (metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            RestartKind::Exited => "exited",
            RestartKind::Signaled => "signaled",
            RestartKind::Unhealthy => "unhealthy",
            RestartKind::StartTimeout => "start_timeout",
            RestartKind::Manual => "manual",
            RestartKind::SpawnFailed => "spawn_failed",
            RestartKind::Reload => "reload",
        }
    }
}

/// When an ended process is started again (`restart` of a service;
/// Temporal's is always `Always`). A kill for failed health checks or a
/// start timeout is a failure; a manual restart always starts again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Whatever the exit.
    #[default]
    Always,
    /// Unless it exited with code 0.
    OnFailure,
    /// Never; the state stays `exited`.
    Never,
}

impl RestartPolicy {
    /// Does a process that ended for `reason` start again?
    pub fn restarts(self, reason: &RestartReason) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !matches!(reason, RestartReason::Exited { code: 0 }),
            RestartPolicy::Never => false,
        }
    }
}

/// The rules of a unit's state machine: a value of its declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    /// Backoff policy.
    pub policy: super::Policy,
    /// Consecutive failed health rounds before a restart.
    pub failure_threshold: u32,
    /// Longest wait from spawn to ready.
    pub start_timeout: std::time::Duration,
    /// Whether an ended process starts again.
    pub restart: RestartPolicy,
    /// A process that ends sooner after its spawn failed to start, even
    /// if it was ready (supervisord's `startsecs`).
    pub min_uptime: std::time::Duration,
    /// It is ready once it has run for `min_uptime` (no readiness check).
    pub ready_on_uptime: bool,
}
