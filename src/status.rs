//! The status document: one JSON schema shared by `GET /status` and
//! `stigmer local status --json` (which fetches it from the daemon), and
//! the human rendering of it.

use crate::config::Config;
use crate::health::Layer;
use crate::supervisor::actor::unix_now_ms;
use crate::supervisor::policy::Policy;
use crate::supervisor::state::StateName;
use crate::supervisor::{Backoff, LayerStatus, Restarts, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Schema version of [`StatusDoc`].
pub const SCHEMA_VERSION: u32 = 1;

/// The whole document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusDoc {
    /// Schema version.
    pub version: u32,
    /// The supervising daemon.
    pub supervisor: SupervisorSection,
    /// Temporal.
    pub temporal: TemporalSection,
    /// Health layers by name (lock, pid_file, process, identity, port, grpc).
    pub health: BTreeMap<String, LayerStatus>,
    /// Restarts.
    pub restarts: Restarts,
    /// Pending backoff, or null.
    pub backoff: Option<Backoff>,
    /// Effective supervision settings.
    pub config: ConfigSection,
    /// Last error worth showing, or null.
    pub last_error: Option<String>,
}

/// `supervisor` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SupervisorSection {
    /// Daemon pid.
    pub pid: u32,
    /// stigmer version.
    pub version: String,
    /// Start (Unix ms).
    pub started_at_unix_ms: u64,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// The HTTP server's address.
    pub http_addr: String,
    /// State directory.
    pub home: String,
}

/// `temporal` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemporalSection {
    /// Supervisor state: stopped, spawning, starting, running, unhealthy,
    /// killing, backoff, crash_loop, stopping.
    pub state: String,
    /// Serving (gRPC health SERVING at the last check)?
    pub ready: bool,
    /// Pid, when one runs.
    pub pid: Option<i32>,
    /// Process group.
    pub pgid: Option<i32>,
    /// Start time in clock ticks since boot (`/proc/PID/stat`).
    pub start_time_ticks: Option<u64>,
    /// Spawn time (Unix ms).
    pub spawned_at_unix_ms: Option<u64>,
    /// Serving since (Unix ms).
    pub serving_since_unix_ms: Option<u64>,
    /// Seconds since spawn.
    pub uptime_seconds: Option<f64>,
    /// Frontend gRPC address, as a local client dials it.
    pub frontend: String,
    /// The IP Temporal listens on (`--temporal-ip`).
    #[serde(default)]
    pub listen_ip: Option<String>,
    /// Web UI URL, or null when headless.
    pub ui_url: Option<String>,
    /// Temporal's own /metrics URL when `--temporal-metrics-port` is set.
    pub metrics_url: Option<String>,
    /// Binary.
    pub binary: String,
    /// Executable seen in /proc once serving.
    pub exe: Option<String>,
    /// Database file.
    pub db_file: String,
}

/// `config` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigSection {
    /// Seconds between checks while serving.
    pub health_interval_seconds: f64,
    /// Timeout of port and gRPC checks.
    pub health_timeout_seconds: f64,
    /// Failed checks before a restart.
    pub failure_threshold: u32,
    /// SIGTERM → SIGKILL grace.
    pub stop_grace_seconds: f64,
    /// Spawn → serving deadline.
    pub start_timeout_seconds: f64,
    /// Backoff base (second attempt), seconds.
    pub backoff_base_seconds: f64,
    /// Backoff cap, seconds.
    pub backoff_cap_seconds: f64,
}

/// What the daemon is and runs with; fixed for its whole life.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    /// The checked configuration.
    pub config: Config,
    /// The Temporal binary, resolved.
    pub binary: PathBuf,
    /// Daemon start (Unix ms).
    pub started_at_unix_ms: u64,
    /// The restart policy in force.
    pub policy: Policy,
}

impl StatusDoc {
    /// Build the document from the latest snapshot.
    pub fn build(snap: &Snapshot, info: &DaemonInfo) -> StatusDoc {
        let now = unix_now_ms();
        let c = &info.config;
        let t = snap.temporal.as_ref();
        let health: BTreeMap<String, LayerStatus> = snap
            .health
            .iter()
            .map(|(l, s): (&Layer, &LayerStatus)| (l.as_str().to_string(), s.clone()))
            .collect();
        StatusDoc {
            version: SCHEMA_VERSION,
            supervisor: SupervisorSection {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").into(),
                started_at_unix_ms: info.started_at_unix_ms,
                uptime_seconds: now.saturating_sub(info.started_at_unix_ms) as f64 / 1000.0,
                http_addr: c.http_addr.to_string(),
                home: c.home.root().display().to_string(),
            },
            temporal: TemporalSection {
                state: snap.state.as_str().into(),
                ready: snap.ready,
                pid: t.map(|t| t.pid),
                pgid: t.map(|t| t.pgid),
                start_time_ticks: t.map(|t| t.start_time_ticks),
                spawned_at_unix_ms: t.map(|t| t.spawned_at_unix_ms),
                serving_since_unix_ms: t.and_then(|t| t.serving_since_unix_ms),
                uptime_seconds: t.map(|t| now.saturating_sub(t.spawned_at_unix_ms) as f64 / 1000.0),
                frontend: c.frontend().to_string(),
                listen_ip: Some(c.temporal_ip.to_string()),
                ui_url: c.ui_url(),
                metrics_url: c.temporal_metrics_url(),
                binary: info.binary.display().to_string(),
                exe: t.and_then(|t| t.exe.clone()),
                db_file: c.db_file.display().to_string(),
            },
            health,
            restarts: snap.restarts.clone(),
            backoff: snap.backoff.clone(),
            config: ConfigSection {
                health_interval_seconds: c.health_interval.as_secs_f64(),
                health_timeout_seconds: c.health_timeout.as_secs_f64(),
                failure_threshold: c.failure_threshold,
                stop_grace_seconds: c.stop_grace.as_secs_f64(),
                start_timeout_seconds: c.start_timeout.as_secs_f64(),
                backoff_base_seconds: info.policy.base.as_secs_f64(),
                backoff_cap_seconds: info.policy.cap.as_secs_f64(),
            },
            last_error: snap.last_error.clone(),
        }
    }

    /// Is Temporal serving?
    pub fn is_ready(&self) -> bool {
        self.temporal.ready && self.temporal.state == StateName::Running.as_str()
    }

    /// A few human lines.
    pub fn render(&self) -> String {
        let t = &self.temporal;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "Temporal: {}{}",
            t.state,
            t.pid
                .map(|p| format!(
                    " (pid {p}, up {})",
                    human_secs(t.uptime_seconds.unwrap_or(0.0))
                ))
                .unwrap_or_default()
        ));
        match t.listen_ip.as_deref() {
            Some(ip)
                if !ip
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback()) =>
            {
                line(format!("  frontend:  {} (listening on {ip})", t.frontend));
            }
            _ => line(format!("  frontend:  {}", t.frontend)),
        }
        if let Some(ui) = &t.ui_url {
            line(format!("  web UI:    {ui}"));
        }
        line(format!(
            "  health:    http://{}/healthz",
            self.supervisor.http_addr
        ));
        line(format!(
            "  daemon:    pid {}, up {}",
            self.supervisor.pid,
            human_secs(self.supervisor.uptime_seconds)
        ));
        let r = &self.restarts;
        let mut restarts = format!("  restarts:  {}", r.count);
        if let Some(reason) = &r.last_reason {
            restarts.push_str(&format!(", last: {}", reason.label()));
        }
        if let Some(exit) = &r.last_exit_description {
            restarts.push_str(&format!(" ({exit})"));
        }
        line(restarts);
        if let Some(b) = &self.backoff {
            line(format!(
                "  backoff:   attempt {}, next in {:.0} ms",
                b.attempt, b.delay_ms
            ));
        }
        for layer in Layer::ALL {
            if let Some(s) = self.health.get(layer.as_str()) {
                line(format!(
                    "  {:<9}  {} {} ({:.1} ms)",
                    layer.as_str(),
                    if s.ok { "ok  " } else { "FAIL" },
                    s.reason,
                    s.latency_ms
                ));
            }
        }
        if let Some(e) = &self.last_error {
            line(format!("  last error: {e}"));
        }
        out
    }
}

/// "1h02m", "3m04s", "12.3s".
pub fn human_secs(s: f64) -> String {
    let whole = s as u64;
    if whole >= 3600 {
        format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
    } else if whole >= 60 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{s:.1}s")
    }
}
