//! Layered health checks, cheap to expensive. Each layer is one [`Probe`]
//! that answers ok/fail with a reason; [`timed`] adds the latency. A round
//! runs the layers in order and stops at the first failing layer that
//! counts (process..gRPC). Probes only look: a failed lock or PID file
//! layer never causes a restart; the state machine decides a repair, which
//! the files' one writer ([`SharedRegistry`]) carries out.
//!
//! Why six layers: a crashed process is seen by its exit event long before
//! any probe; a hung one (SIGSTOP, deadlock) still has a live pid, the
//! right identity, and even an open port (the kernel completes TCP
//! handshakes into the backlog), so only the gRPC health call catches it.

use crate::process::{Identity, Verdict, proc};
use crate::supervisor::registry::SharedRegistry;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The gRPC service Temporal reports health for.
pub const TEMPORAL_SERVICE: &str = "temporal.api.workflowservice.v1.WorkflowService";

/// A health layer, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The daemon still holds the flock, and the path names the locked file.
    Lock,
    /// The PID file is present and names the current child.
    PidFile,
    /// The child is alive.
    Process,
    /// Pid, start time and executable still match.
    Identity,
    /// TCP connect to the frontend port.
    Port,
    /// `grpc.health.v1.Health/Check` answers SERVING.
    Grpc,
}

impl Layer {
    /// All layers in order.
    pub const ALL: [Layer; 6] = [
        Layer::Lock,
        Layer::PidFile,
        Layer::Process,
        Layer::Identity,
        Layer::Port,
        Layer::Grpc,
    ];

    /// snake_case name (metrics label).
    pub fn as_str(&self) -> &'static str {
        match self {
            Layer::Lock => "lock",
            Layer::PidFile => "pid_file",
            Layer::Process => "process",
            Layer::Identity => "identity",
            Layer::Port => "port",
            Layer::Grpc => "grpc",
        }
    }

    /// Does a failure of this layer count towards a restart?
    pub fn counts(&self) -> bool {
        !matches!(self, Layer::Lock | Layer::PidFile)
    }
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
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// One health layer.
pub trait Probe {
    /// Which layer this is.
    const LAYER: Layer;
    /// Ok(detail) or Err(reason).
    fn check(&self) -> impl Future<Output = Result<String, String>> + Send;
}

/// Run `probe`, timing it.
pub async fn timed<P: Probe>(probe: &P) -> Check {
    let t = Instant::now();
    let r = probe.check().await;
    let latency = t.elapsed();
    let (ok, reason) = match r {
        Ok(s) => (true, s),
        Err(s) => (false, s),
    };
    Check {
        layer: P::LAYER,
        ok,
        reason,
        latency,
    }
}

/// Layer 1: we still hold the lock and its path names the locked file.
pub struct LockProbe(pub SharedRegistry);

impl Probe for LockProbe {
    const LAYER: Layer = Layer::Lock;
    async fn check(&self) -> Result<String, String> {
        self.0.check_lock()
    }
}

/// Layer 2: the PID file names our current processes.
pub struct PidFileProbe(pub SharedRegistry);

impl Probe for PidFileProbe {
    const LAYER: Layer = Layer::PidFile;
    async fn check(&self) -> Result<String, String> {
        self.0.check_pid_file()
    }
}

/// Layer 3: the child process is alive (not a zombie).
pub struct ProcessProbe(pub i32);

impl Probe for ProcessProbe {
    const LAYER: Layer = Layer::Process;
    async fn check(&self) -> Result<String, String> {
        match proc::stat(self.0) {
            Some(s) if s.stopped() => Ok(format!("pid {} alive (stopped)", self.0)),
            Some(s) if !s.leader_exited() => Ok(format!("pid {} alive", self.0)),
            Some(_) => Err(format!("pid {} is a zombie", self.0)),
            None => Err(format!("pid {} is gone", self.0)),
        }
    }
}

/// Layer 4: pid, start time and executable match what we spawned.
pub struct IdentityProbe(pub Identity);

impl Probe for IdentityProbe {
    const LAYER: Layer = Layer::Identity;
    async fn check(&self) -> Result<String, String> {
        match self.0.verify() {
            Verdict::Match => Ok("matches".into()),
            Verdict::Gone | Verdict::Exiting => Err(format!("pid {} is gone", self.0.pid)),
            Verdict::Mismatch(why) => Err(why),
        }
    }
}

/// Layer 5: TCP connect to the frontend port.
pub struct PortProbe {
    /// Frontend address.
    pub addr: SocketAddr,
    /// Connect timeout.
    pub timeout: Duration,
}

impl Probe for PortProbe {
    const LAYER: Layer = Layer::Port;
    async fn check(&self) -> Result<String, String> {
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(self.addr)).await {
            Ok(Ok(_)) => Ok(format!("{} accepts connections", self.addr)),
            Ok(Err(e)) => Err(format!("connect {}: {e}", self.addr)),
            Err(_) => Err(format!("connect {} timed out", self.addr)),
        }
    }
}

/// Layer 6: the gRPC health check answers SERVING in time.
pub struct GrpcProbe {
    /// Frontend address.
    pub addr: SocketAddr,
    /// Deadline for connect + call.
    pub timeout: Duration,
}

impl Probe for GrpcProbe {
    const LAYER: Layer = Layer::Grpc;
    async fn check(&self) -> Result<String, String> {
        grpc_health(self.addr, self.timeout).await
    }
}

/// Ask Temporal's gRPC health service; Ok only for SERVING.
pub async fn grpc_health(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let call = async {
        let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = ep.connect().await.map_err(|e| format!("connect: {e}"))?;
        let resp = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: TEMPORAL_SERVICE.into(),
            })
            .await
            .map_err(|s| format!("health call: {}", s.message()))?;
        match resp.into_inner().status() {
            ServingStatus::Serving => Ok("SERVING".to_string()),
            other => Err(format!("status {}", other.as_str_name())),
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// What one round needs to know about the target.
pub struct Target {
    /// The lock and PID file's writer, asked whether both are right.
    pub registry: SharedRegistry,
    /// The child's identity.
    pub identity: Identity,
    /// Frontend gRPC address.
    pub frontend: SocketAddr,
    /// Per-layer timeout for the network layers.
    pub timeout: Duration,
}

/// The outcome of one round.
#[derive(Debug, Clone)]
pub struct Round {
    /// The pid that was probed (stale rounds are dropped by the actor).
    pub pid: i32,
    /// Every layer checked this round, in order.
    pub checks: Vec<Check>,
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

/// Run every layer in order; stop at the first counting failure.
pub async fn round(t: Target) -> Round {
    let mut checks = vec![
        timed(&LockProbe(t.registry.clone())).await,
        timed(&PidFileProbe(t.registry.clone())).await,
    ];
    let pid = t.identity.pid;
    let port = PortProbe {
        addr: t.frontend,
        timeout: t.timeout,
    };
    let grpc = GrpcProbe {
        addr: t.frontend,
        timeout: t.timeout,
    };
    // Cheap to expensive; the first counting failure ends the round.
    let mut record = |c: Check| {
        let ok = c.ok;
        checks.push(c);
        ok
    };
    let _ = record(timed(&ProcessProbe(pid)).await)
        && record(timed(&IdentityProbe(t.identity.clone())).await)
        && record(timed(&port).await)
        && record(timed(&grpc).await);
    Round { pid, checks }
}
