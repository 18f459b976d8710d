//! Layered health checks, cheap to expensive. Each layer is one [`Probe`]
//! that answers ok/fail with a reason; [`timed`] adds the latency. A round
//! runs a unit's layers in order and stops at the first failing layer that
//! counts (process onwards). Probes only look: a failed lock or PID file
//! layer never causes a restart; the state machine decides a repair, which
//! the files' one writer carries out. The files are asked through
//! [`FileChecks`], off the event loop and bounded in time, so a stalled
//! disk fails those two layers instead of stalling the round.
//!
//! Why layers: a crashed process is seen by its exit event long before any
//! probe; a hung one (SIGSTOP, deadlock) still has a live pid, the right
//! identity, and even an open port (the kernel completes TCP handshakes
//! into the backlog), so only an application-level answer (Temporal's gRPC
//! health, a service's HTTP or gRPC health) catches it.
//!
//! Temporal's round is lock, pid_file, process, identity, port, grpc; a
//! service's is process, identity and its own check ([`Plan`]).

pub mod detector;
pub mod pressure;
pub mod probes;
pub mod temporal;

use crate::model::Layer;
use crate::process::Identity;
use probes::{
    ExecProbe, GrpcProbe, HttpProbe, IdentityProbe, LockProbe, LogProbe, PidFileProbe, PortProbe,
    ProcessProbe, TcpProbe,
};
pub use probes::{TEMPORAL_SERVICE, grpc_health, health_call};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicI32;
use std::time::{Duration, Instant};
use temporal::{QueueCheck, QueueSeen, TaskQueueProbe};

/// Why a layer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// No answer in time.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The process is gone.
    #[error("pid {0} is gone")]
    Gone(i32),
    /// The process's leader is a zombie.
    #[error("pid {0} is a zombie")]
    Zombie(i32),
    /// The pid names another process now.
    #[error("{0}")]
    NotOurs(String),
    /// A TCP connection was refused or failed.
    #[error("connect {addr}: {error}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        error: String,
    },
    /// A gRPC call failed.
    #[error("health call: {0}")]
    Call(String),
    /// gRPC health answered, but not SERVING.
    #[error("status {0}")]
    NotServing(String),
    /// An HTTP request failed.
    #[error("GET {url}: {error}")]
    Get {
        /// The URL.
        url: String,
        /// Why.
        error: String,
    },
    /// An HTTP answer that is not 2xx.
    #[error("HTTP {0}")]
    HttpStatus(u16),
    /// A check command could not run.
    #[error("cannot run {program}: {error}")]
    Run {
        /// The program.
        program: String,
        /// Why.
        error: String,
    },
    /// A check command ended, but not with code 0.
    #[error("{}", .0.describe())]
    Ended(crate::model::ExitStatus),
    /// No line matched the readiness pattern yet.
    #[error("waiting for a line matching {0:?}")]
    NoLine(String),
    /// The lock or PID file is not right.
    #[error("{0}")]
    File(String),
    /// Temporal (or a proxy before it) rejected the credentials.
    #[error("credentials rejected: {0}")]
    Rejected(String),
    /// No worker of the service polls its task queue (or not lately).
    #[error("{0}")]
    NotPolling(String),
    /// Temporal answered, but could not write.
    #[error("write failed: {0}")]
    Write(String),
}

/// One layer's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The layer.
    pub layer: Layer,
    /// Passed?
    pub ok: bool,
    /// What was seen (on failure: why).
    pub reason: String,
    /// How long the check took.
    #[serde(serialize_with = "ser_ms")]
    pub latency: Duration,
    /// It failed because no answer came in time (not because of one).
    #[serde(skip)]
    pub timed_out: bool,
    /// The credentials were rejected (a start fails at once on it).
    #[serde(skip)]
    pub rejected: bool,
    /// The process has exited (a zombie or gone): its exit event is on
    /// its way, so this is a crash to wait for, not a hang to confirm.
    #[serde(skip)]
    pub exiting: bool,
    /// What a task-queue check saw of the service's workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSeen>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// One health layer.
pub trait Probe {
    /// Which layer this is.
    const LAYER: Layer;
    /// Ok(detail) or why not.
    fn check(&self) -> impl Future<Output = Result<String, Problem>> + Send;
}

/// Run `probe`, timing it.
pub async fn timed<P: Probe>(probe: &P) -> Check {
    let t = Instant::now();
    let r = probe.check().await;
    let latency = t.elapsed();
    // Reasons reach the status, the log and spans: no credentials in them.
    let (ok, reason, timed_out, rejected, exiting) = match r {
        Ok(s) => (true, crate::redact::text(&s), false, false, false),
        Err(p) => (
            false,
            crate::redact::text(&p.to_string()),
            matches!(p, Problem::Timeout(_)),
            matches!(p, Problem::Rejected(_)),
            matches!(p, Problem::Zombie(_) | Problem::Gone(_)),
        ),
    };
    Check {
        layer: P::LAYER,
        ok,
        reason,
        latency,
        timed_out,
        rejected,
        exiting,
        queue: None,
    }
}

/// What a round checks after the process is found alive: the unit's own
/// answer.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Nothing beyond liveness.
    Alive,
    /// Temporal: the frontend port, then its gRPC health.
    Temporal {
        /// Temporal, over a kept connection (with its TLS and
        /// credentials).
        client: crate::temporal::Client,
    },
    /// A URL answers 2xx.
    Http {
        /// Its client, over a kept connection.
        client: crate::http_client::Kept,
    },
    /// A TCP port accepts.
    Tcp {
        /// Where.
        addr: SocketAddr,
    },
    /// `grpc.health.v1` answers SERVING for `service`.
    Grpc {
        /// Where, over a kept connection.
        client: crate::grpc::Client,
        /// The service asked about ("" = the server).
        service: String,
    },
    /// A command exits 0.
    Exec {
        /// The command, run like the service (its cwd and environment).
        spec: crate::process::SpawnSpec,
        /// Who runs it (the daemon's one spawning thread).
        spawner: crate::process::Spawner,
    },
    /// A worker of the process polls its Temporal task queue.
    TaskQueue(QueueCheck),
    /// The process logged its readiness line (`seen` holds the pid that
    /// did).
    Log {
        /// Set by the log pump.
        seen: Arc<AtomicI32>,
        /// The pattern, for the reason text.
        pattern: String,
    },
}

impl Plan {
    /// Drop any kept connection (a new process is starting).
    pub fn reset(&self) {
        match self {
            Plan::Temporal { client } => client.grpc().reset(),
            Plan::Grpc { client, .. } => client.reset(),
            Plan::Http { client } => client.reset(),
            Plan::TaskQueue(q) => q.client.grpc().reset(),
            _ => {}
        }
    }
}

/// Whether the instance's lock and PID file are right: answered by their
/// one writer. Blocking (they read the disk): probes call them on the
/// blocking pool, with a timeout.
pub trait FileChecks: Send + Sync + 'static {
    /// Is the lock still held through a file that its path names?
    fn check_lock(&self) -> Result<String, Problem>;
    /// Does the PID file say what it should?
    fn check_pid_file(&self) -> Result<String, Problem>;
}

/// What one round needs to know about its target.
pub struct Target {
    /// The lock and PID file's writer, asked whether both are right
    /// (Temporal's rounds only).
    pub files: Option<Arc<dyn FileChecks>>,
    /// The process's identity (none for an external Temporal).
    pub identity: Option<Identity>,
    /// What to check after liveness.
    pub plan: Plan,
    /// Timeout of the network and command layers.
    pub timeout: Duration,
    /// Measure the host's CPU pressure over the checks that answer, in
    /// case one times out (adaptive detectors only).
    pub pressure: bool,
}

/// Why a timed-out check was asked again instead of counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Its timer fired far later than asked: the daemon was not running.
    LateTimer,
    /// The host's CPUs were contended while it waited.
    CpuPressure,
}

impl Retry {
    /// Every reason, as the metric's label values.
    pub const ALL: [Retry; 2] = [Retry::LateTimer, Retry::CpuPressure];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Retry::LateTimer => "late_timer",
            Retry::CpuPressure => "cpu_pressure",
        }
    }
}

/// The outcome of one round.
#[derive(Debug, Clone)]
pub struct Round {
    /// The pid that was probed (stale rounds are dropped by the actor).
    pub pid: i32,
    /// The timeout its checks had.
    pub timeout: Duration,
    /// Every layer checked this round, in order.
    pub checks: Vec<Check>,
    /// When a check timed out and pressure was asked for: the share of
    /// the round's answering checks during which some task on the host
    /// waited for a CPU ([`pressure`]).
    pub pressure: Option<f64>,
}

impl Round {
    /// First failing layer that counts, if any.
    pub fn failed(&self) -> Option<Layer> {
        self.checks
            .iter()
            .find(|c| !c.ok && c.layer.counts())
            .map(|c| c.layer)
    }

    /// The lock or PID file layers that failed: files to repair, not
    /// reasons to restart.
    pub fn tampered(&self) -> impl Iterator<Item = Layer> + '_ {
        self.checks
            .iter()
            .filter(|c| !c.ok && !c.layer.counts())
            .map(|c| c.layer)
    }
}

/// Run every layer of `t` in order; stop at the first counting failure.
pub async fn round(t: Target) -> Round {
    let mut checks = Vec::new();
    if let Some(files) = &t.files {
        checks.push(timed(&LockProbe(files.clone())).await);
        checks.push(timed(&PidFileProbe(files.clone())).await);
    }
    let pid = t.identity.as_ref().map_or(0, |id| id.pid);
    // Cheap to expensive; the first counting failure ends the round.
    let mut record = |c: Check| {
        let ok = c.ok;
        checks.push(c);
        ok
    };
    let alive = match &t.identity {
        Some(id) => {
            let stat = crate::process::proc::stat(id.pid);
            record(timed(&ProcessProbe { pid: id.pid, stat }).await)
                && record(
                    timed(&IdentityProbe {
                        identity: id.clone(),
                        stat,
                    })
                    .await,
                )
        }
        None => true,
    };
    let since = (alive && t.pressure).then(pressure::Since::now).flatten();
    if alive {
        let timeout = t.timeout;
        match t.plan {
            Plan::Alive => {}
            Plan::Temporal { client } => {
                let addr = client.grpc().endpoint().address.clone();
                let _ = record(timed(&PortProbe { addr, timeout }).await)
                    && record(
                        timed(&GrpcProbe {
                            client: client.grpc().clone(),
                            service: TEMPORAL_SERVICE.into(),
                            timeout,
                        })
                        .await,
                    );
            }
            Plan::Http { client } => {
                record(timed(&HttpProbe { client, timeout }).await);
            }
            Plan::Tcp { addr } => {
                record(timed(&TcpProbe { addr, timeout }).await);
            }
            Plan::Grpc { client, service } => {
                record(
                    timed(&GrpcProbe {
                        client,
                        service,
                        timeout,
                    })
                    .await,
                );
            }
            Plan::Exec { spec, spawner } => {
                record(
                    timed(&ExecProbe {
                        spec,
                        spawner,
                        timeout,
                    })
                    .await,
                );
            }
            Plan::TaskQueue(check) => {
                let probe = TaskQueueProbe {
                    check,
                    pgid: t.identity.as_ref().map_or(0, |id| id.pgid),
                    timeout,
                    seen: Default::default(),
                };
                let mut c = timed(&probe).await;
                c.queue = probe.seen.into_inner().unwrap_or_else(|p| p.into_inner());
                record(c);
            }
            Plan::Log { seen, pattern } => {
                record(timed(&LogProbe { seen, pid, pattern }).await);
            }
        }
    }
    let pressure = since
        .filter(|_| checks.iter().any(|c| c.timed_out))
        .and_then(|s| s.share());
    Round {
        pid,
        checks,
        timeout: t.timeout,
        pressure,
    }
}
