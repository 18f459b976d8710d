//! Health layer names: the value every part of the daemon shares (the
//! probes that check them, the state machine that counts them, the status
//! and metrics that show them).

use serde::{Deserialize, Serialize};

/// A health layer, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The daemon still holds the flock, and the path names the locked file.
    Lock,
    /// The PID file is present and names the current processes.
    PidFile,
    /// The process is alive.
    Process,
    /// Pid, start time and executable still match.
    Identity,
    /// The service logged its readiness line.
    Log,
    /// TCP connect to Temporal's frontend port.
    Port,
    /// A service's TCP port accepts a connection.
    Tcp,
    /// `grpc.health.v1.Health/Check` answers SERVING.
    Grpc,
    /// An HTTP URL answers 2xx.
    Http,
    /// A command exits 0.
    Exec,
    /// A worker of the service polls its Temporal task queue.
    TaskQueue,
    /// Temporal writes: a workflow started and terminated through its
    /// frontend (on its own schedule, not in every round).
    Persistence,
}

impl Layer {
    /// Every layer, in the order they run.
    pub const ALL: [Layer; 12] = [
        Layer::Lock,
        Layer::PidFile,
        Layer::Process,
        Layer::Identity,
        Layer::Log,
        Layer::Port,
        Layer::Tcp,
        Layer::Grpc,
        Layer::Http,
        Layer::Exec,
        Layer::TaskQueue,
        Layer::Persistence,
    ];

    /// Temporal's layers, in order.
    pub const TEMPORAL: [Layer; 7] = [
        Layer::Lock,
        Layer::PidFile,
        Layer::Process,
        Layer::Identity,
        Layer::Port,
        Layer::Grpc,
        Layer::Persistence,
    ];

    /// Every layer a service may have, in order.
    pub const SERVICE: [Layer; 8] = [
        Layer::Process,
        Layer::Identity,
        Layer::Log,
        Layer::Tcp,
        Layer::Grpc,
        Layer::Http,
        Layer::Exec,
        Layer::TaskQueue,
    ];

    /// snake_case name (metrics label).
    pub fn as_str(&self) -> &'static str {
        match self {
            Layer::Lock => "lock",
            Layer::PidFile => "pid_file",
            Layer::Process => "process",
            Layer::Identity => "identity",
            Layer::Log => "log",
            Layer::Port => "port",
            Layer::Tcp => "tcp",
            Layer::Grpc => "grpc",
            Layer::Http => "http",
            Layer::Exec => "exec",
            Layer::TaskQueue => "task_queue",
            Layer::Persistence => "persistence",
        }
    }

    /// Does a failure of this layer in a round count towards a restart?
    /// Not the files (repaired instead), nor persistence (checked on its
    /// own schedule; a restart does not fix a full disk, so its failures
    /// restart only when configured to: see `Event::Condemned`).
    pub fn counts(&self) -> bool {
        !matches!(self, Layer::Lock | Layer::PidFile | Layer::Persistence)
    }

    /// Does its failure make the unit not ready, though it keeps running?
    pub fn gates_ready(&self) -> bool {
        matches!(self, Layer::Persistence)
    }

    /// Is this layer the application's own answer (the one a hang fails)?
    pub fn answers(&self) -> bool {
        matches!(
            self,
            Layer::Port
                | Layer::Tcp
                | Layer::Grpc
                | Layer::Http
                | Layer::Exec
                | Layer::Log
                | Layer::TaskQueue
        )
    }
}
