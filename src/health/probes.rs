//! One [`Probe`] per layer. Each only looks, and answers with a reason.

use super::{FileChecks, Probe, Problem};
use crate::grpc::{self, CallError};
use crate::model::Layer;
use crate::process::{Identity, SpawnSpec, Spawner, Verdict, proc};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;

/// The gRPC service Temporal reports health for.
pub const TEMPORAL_SERVICE: &str = crate::temporal::HEALTH_SERVICE;

/// How long a look at the lock or PID file may take (a stalled disk).
const FILE_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Ask `files` on the blocking pool, bounded by [`FILE_CHECK_TIMEOUT`].
async fn off_loop(
    files: &Arc<dyn FileChecks>,
    ask: fn(&dyn FileChecks) -> Result<String, Problem>,
) -> Result<String, Problem> {
    let files = files.clone();
    let call = tokio::task::spawn_blocking(move || ask(files.as_ref()));
    match tokio::time::timeout(FILE_CHECK_TIMEOUT, call).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(Problem::File(format!("check failed: {e}"))),
        Err(_) => Err(Problem::Timeout(FILE_CHECK_TIMEOUT)),
    }
}

/// We still hold the lock and its path names the locked file.
pub struct LockProbe(pub Arc<dyn FileChecks>);

impl Probe for LockProbe {
    const LAYER: Layer = Layer::Lock;
    async fn check(&self) -> Result<String, Problem> {
        off_loop(&self.0, |f| f.check_lock()).await
    }
}

/// The PID file names our current processes.
pub struct PidFileProbe(pub Arc<dyn FileChecks>);

impl Probe for PidFileProbe {
    const LAYER: Layer = Layer::PidFile;
    async fn check(&self) -> Result<String, Problem> {
        off_loop(&self.0, |f| f.check_pid_file()).await
    }
}

/// The process is alive (not a zombie), from its stat line (read once
/// per round, for this layer and the identity's).
pub struct ProcessProbe {
    /// The pid.
    pub pid: i32,
    /// Its stat line, if it exists.
    pub stat: Option<proc::Stat>,
}

impl Probe for ProcessProbe {
    const LAYER: Layer = Layer::Process;
    async fn check(&self) -> Result<String, Problem> {
        match self.stat {
            Some(s) if s.stopped() => Ok(format!("pid {} alive (stopped)", self.pid)),
            Some(s) if !s.leader_exited() => Ok(format!("pid {} alive", self.pid)),
            Some(_) => Err(Problem::Zombie(self.pid)),
            None => Err(Problem::Gone(self.pid)),
        }
    }
}

/// Pid, start time and executable match what we spawned.
pub struct IdentityProbe {
    /// What we spawned.
    pub identity: Identity,
    /// The process's stat line as the round read it.
    pub stat: Option<proc::Stat>,
}

impl Probe for IdentityProbe {
    const LAYER: Layer = Layer::Identity;
    async fn check(&self) -> Result<String, Problem> {
        match self.identity.verify_stat(self.stat) {
            Verdict::Match => Ok("matches".into()),
            Verdict::Gone | Verdict::Exiting => Err(Problem::Gone(self.identity.pid)),
            Verdict::Mismatch(why) => Err(Problem::NotOurs(why)),
        }
    }
}

async fn connect(addr: &str, timeout: Duration) -> Result<String, Problem> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(format!("{addr} accepts connections")),
        Ok(Err(e)) => Err(Problem::Connect {
            addr: addr.to_string(),
            error: e.to_string(),
        }),
        Err(_) => Err(Problem::Timeout(timeout)),
    }
}

/// TCP connect to Temporal's frontend port.
pub struct PortProbe {
    /// Frontend address, `HOST:PORT` (a name is resolved each time).
    pub addr: String,
    /// Connect timeout.
    pub timeout: Duration,
}

impl Probe for PortProbe {
    const LAYER: Layer = Layer::Port;
    async fn check(&self) -> Result<String, Problem> {
        connect(&self.addr, self.timeout).await
    }
}

/// TCP connect to a service's port.
pub struct TcpProbe {
    /// Where.
    pub addr: SocketAddr,
    /// Connect timeout.
    pub timeout: Duration,
}

impl Probe for TcpProbe {
    const LAYER: Layer = Layer::Tcp;
    async fn check(&self) -> Result<String, Problem> {
        connect(&self.addr.to_string(), self.timeout).await
    }
}

/// `grpc.health.v1.Health/Check` answers SERVING in time.
pub struct GrpcProbe {
    /// Where, over a connection kept between checks.
    pub client: grpc::Client,
    /// The service asked about ("" = the server).
    pub service: String,
    /// Deadline for connect + call.
    pub timeout: Duration,
}

impl Probe for GrpcProbe {
    const LAYER: Layer = Layer::Grpc;
    async fn check(&self) -> Result<String, Problem> {
        health_call(&self.client, &self.service, self.timeout).await
    }
}

/// One health request; Ok only for SERVING within `timeout`.
pub async fn health_call(
    client: &grpc::Client,
    service: &str,
    timeout: Duration,
) -> Result<String, Problem> {
    match client.health(service, timeout).await {
        Ok(ServingStatus::Serving) => Ok("SERVING".to_string()),
        Ok(other) => Err(Problem::NotServing(other.as_str_name().to_string())),
        Err(CallError::Timeout(t)) => Err(Problem::Timeout(t)),
        Err(e) if e.is_auth() => Err(Problem::Rejected(e.to_string())),
        Err(CallError::Status { message, .. }) => Err(Problem::Call(message)),
        Err(e) => Err(Problem::Call(e.to_string())),
    }
}

/// Ask the gRPC health service at `addr` about `service` over a new
/// connection (for one-off checks, e.g. from the CLI); Ok only for SERVING.
pub async fn grpc_health(
    addr: SocketAddr,
    service: &str,
    timeout: Duration,
) -> Result<String, Problem> {
    health_call(
        &grpc::Client::new(grpc::Endpoint::plain(addr)),
        service,
        timeout,
    )
    .await
}

/// A URL answers 2xx, over the unit's kept connection.
pub struct HttpProbe {
    /// The URL's client.
    pub client: crate::http_client::Kept,
    /// Deadline.
    pub timeout: Duration,
}

impl Probe for HttpProbe {
    const LAYER: Layer = Layer::Http;
    async fn check(&self) -> Result<String, Problem> {
        use crate::http_client::KeptError;
        match self.client.get(self.timeout).await {
            Ok(status) if (200..300).contains(&status) => Ok(format!("HTTP {status}")),
            Ok(status) => Err(Problem::HttpStatus(status)),
            Err(KeptError::Timeout) => Err(Problem::Timeout(self.timeout)),
            Err(e) => Err(Problem::Get {
                url: self.client.url().to_string(),
                error: e.to_string(),
            }),
        }
    }
}

/// A command exits 0 in time (run in its own group, killed on timeout).
pub struct ExecProbe {
    /// The command.
    pub spec: SpawnSpec,
    /// The daemon's spawning thread.
    pub spawner: Spawner,
    /// Deadline.
    pub timeout: Duration,
}

impl Probe for ExecProbe {
    const LAYER: Layer = Layer::Exec;
    async fn check(&self) -> Result<String, Problem> {
        let mut child = self
            .spawner
            .spawn(self.spec.clone())
            .await
            .map_err(|e| Problem::Run {
                program: self.spec.program.display().to_string(),
                error: e.to_string(),
            })?;
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(crate::model::ExitStatus::Code(0))) => Ok("exit code 0".into()),
            Ok(Ok(status)) => Err(Problem::Ended(status)),
            Ok(Err(e)) => Err(Problem::Run {
                program: self.spec.program.display().to_string(),
                error: format!("wait: {e}"),
            }),
            Err(_) => {
                let _ =
                    crate::process::signal_group(child.pgid(), nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait().await;
                Err(Problem::Timeout(self.timeout))
            }
        }
    }
}

/// The process logged its readiness line.
pub struct LogProbe {
    /// The pid whose line matched, set by the log pump.
    pub seen: Arc<AtomicI32>,
    /// The pid probed.
    pub pid: i32,
    /// The pattern, for the reason.
    pub pattern: String,
}

impl Probe for LogProbe {
    const LAYER: Layer = Layer::Log;
    async fn check(&self) -> Result<String, Problem> {
        if self.seen.load(Ordering::Acquire) == self.pid {
            Ok(format!("logged a line matching {:?}", self.pattern))
        } else {
            Err(Problem::NoLine(self.pattern.clone()))
        }
    }
}
