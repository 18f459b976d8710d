//! The status document: one JSON schema shared by `GET /status` and
//! `stigmer local status --json` (which fetches it from the daemon);
//! [`render`] is the human form of it.

mod render;

pub use render::human_secs;

use crate::config::Config;
use crate::config::services::ServiceSpec;
use crate::model::Layer;
use crate::model::StateName;
use crate::model::clock::unix_now_ms;
use crate::supervisor::policy::Policy;
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
    /// Every declared service, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSection>,
    /// A gRPC health check of Temporal made for this request
    /// (`/status?check=live`), else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_check: Option<LiveCheck>,
}

/// One gRPC health check of Temporal, made while answering a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LiveCheck {
    /// SERVING?
    pub ok: bool,
    /// How long it took (ms).
    pub latency_ms: f64,
    /// What it found (the status, or why it failed).
    pub detail: String,
}

/// One service of the stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceSection {
    /// Supervisor state (as for Temporal, plus `waiting` and `exited`).
    pub state: String,
    /// Ready (or completed with exit code 0, when not restarted)?
    pub ready: bool,
    /// Pid, when one runs.
    pub pid: Option<i32>,
    /// Process group.
    pub pgid: Option<i32>,
    /// Spawn time (Unix ms).
    pub spawned_at_unix_ms: Option<u64>,
    /// Ready since (Unix ms).
    pub ready_since_unix_ms: Option<u64>,
    /// Seconds since spawn.
    pub uptime_seconds: Option<f64>,
    /// Restarts, and how the last process ended.
    pub restarts: Restarts,
    /// Health layers by name (process, identity, and its check).
    pub health: BTreeMap<String, LayerStatus>,
    /// Pending backoff, or null.
    pub backoff: Option<Backoff>,
    /// Last error worth showing, or null.
    pub last_error: Option<String>,
    /// What it runs.
    pub command: Vec<String>,
    /// What it waits for.
    pub depends_on: Vec<String>,
    /// Its log file.
    pub log: String,
    /// Bytes of its output dropped because the log could not take them.
    #[serde(default)]
    pub log_dropped_bytes: u64,
    /// What needs attention but does not make it not ready (e.g. output
    /// being dropped).
    #[serde(default)]
    pub warnings: Vec<String>,
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
    /// The daemon's executable (`/proc/PID/exe`: after an upgrade, the
    /// new binary; " (deleted)" when the file was replaced since).
    #[serde(default)]
    pub exe: Option<String>,
}

impl SupervisorSection {
    /// When the binary running this command is not the daemon's: one line
    /// saying so and what to do.
    pub fn other_binary_note(&self) -> Option<String> {
        let running = self.exe.as_deref()?;
        let me = std::env::current_exe().ok()?;
        let mine = env!("CARGO_PKG_VERSION");
        if std::path::Path::new(running) == me && self.version == mine {
            return None;
        }
        Some(format!(
            "note: the daemon runs stigmer {} ({running}), not this stigmer {mine} ({}): `stigmer local upgrade` hands over to this binary without restarting Temporal",
            self.version,
            me.display()
        ))
    }
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
    /// Run by us (false: an external Temporal we only watch).
    #[serde(default = "yes")]
    pub managed: bool,
    /// Bytes of its output dropped because the log could not take them.
    #[serde(default)]
    pub log_dropped_bytes: u64,
    /// What needs attention but does not make it not ready.
    #[serde(default)]
    pub warnings: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `config` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigSection {
    /// Seconds between checks while serving.
    pub health_interval_seconds: f64,
    /// Timeout of port and gRPC checks.
    pub health_timeout_seconds: f64,
    /// Timeout of the back-to-back checks that confirm a failure.
    #[serde(default)]
    pub confirm_timeout_seconds: f64,
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
    /// Build the document from every unit's latest snapshot (Temporal
    /// first).
    pub fn build(snaps: &[(String, Snapshot)], info: &DaemonInfo) -> StatusDoc {
        let now = unix_now_ms();
        let c = &info.config;
        let snap = &snaps[0].1;
        let services = snaps[1..]
            .iter()
            .filter_map(|(name, snap)| {
                let spec = c.services.iter().find(|s| &s.name == name)?;
                Some((name.clone(), ServiceSection::build(snap, spec, c, now)))
            })
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
                exe: std::fs::read_link("/proc/self/exe")
                    .ok()
                    .map(|p| p.display().to_string()),
            },
            temporal: TemporalSection::build(snap, info, now),
            health: layers(snap),
            restarts: snap.restarts.clone(),
            backoff: snap.backoff.clone(),
            config: ConfigSection {
                health_interval_seconds: c.health_interval.as_secs_f64(),
                health_timeout_seconds: c.health_timeout.as_secs_f64(),
                confirm_timeout_seconds: c.confirm_timeout.as_secs_f64(),
                failure_threshold: c.failure_threshold,
                stop_grace_seconds: c.stop_grace.as_secs_f64(),
                start_timeout_seconds: c.start_timeout.as_secs_f64(),
                backoff_base_seconds: info.policy.base.as_secs_f64(),
                backoff_cap_seconds: info.policy.cap.as_secs_f64(),
            },
            last_error: snap.last_error.clone(),
            services,
            live_check: None,
        }
    }

    /// Add what each unit's log has dropped, and why it drops output now,
    /// as warnings (`logs`: by unit name).
    pub fn add_log_warnings(&mut self, logs: &[(String, &crate::disk::LogStats)]) {
        for (name, stats) in logs {
            let dropped = stats.dropped_bytes();
            let problem = stats.problem();
            let warning = match (&problem, dropped) {
                (None, 0) => None,
                (Some(p), n) => Some(format!("log: {n} bytes of output dropped; now: {p}")),
                (None, n) => Some(format!("log: {n} bytes of output dropped (writable again)")),
            };
            let (bytes, warnings) = if name == crate::model::TEMPORAL {
                (
                    &mut self.temporal.log_dropped_bytes,
                    &mut self.temporal.warnings,
                )
            } else {
                match self.services.get_mut(name) {
                    Some(s) => (&mut s.log_dropped_bytes, &mut s.warnings),
                    None => continue,
                }
            };
            *bytes = dropped;
            warnings.extend(warning);
        }
    }

    /// Is the whole stack ready: Temporal serving, every service ready?
    pub fn is_ready(&self) -> bool {
        self.temporal.ready
            && self.temporal.state == StateName::Running.as_str()
            && self.services.values().all(|s| s.ready)
            && self.live_check.as_ref().is_none_or(|c| c.ok)
    }

    /// The services that are not ready, by name.
    pub fn not_ready(&self) -> Vec<&str> {
        self.services
            .iter()
            .filter(|(_, s)| !s.ready)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Health layers by name.
fn layers(snap: &Snapshot) -> BTreeMap<String, LayerStatus> {
    snap.health
        .iter()
        .map(|(l, s): (&Layer, &LayerStatus)| (l.as_str().to_string(), s.clone()))
        .collect()
}

impl TemporalSection {
    fn build(snap: &Snapshot, info: &DaemonInfo, now: u64) -> TemporalSection {
        let c = &info.config;
        let t = snap.process.as_ref();
        TemporalSection {
            state: snap.state.as_str().into(),
            ready: snap.ready,
            pid: t.map(|t| t.pid),
            pgid: t.map(|t| t.pgid),
            start_time_ticks: t.map(|t| t.start_time_ticks),
            spawned_at_unix_ms: t.map(|t| t.spawned_at_unix_ms),
            serving_since_unix_ms: t.and_then(|t| t.serving_since_unix_ms),
            uptime_seconds: t.map(|t| now.saturating_sub(t.spawned_at_unix_ms) as f64 / 1000.0),
            frontend: c.frontend().to_string(),
            listen_ip: c.attach.is_none().then(|| c.temporal_ip.to_string()),
            ui_url: c.ui_url(),
            metrics_url: c.temporal_metrics_url(),
            binary: info.binary.display().to_string(),
            exe: t.and_then(|t| t.exe.clone()),
            db_file: c.db_file.display().to_string(),
            managed: c.attach.is_none(),
            log_dropped_bytes: 0,
            warnings: Vec::new(),
        }
    }
}

impl ServiceSection {
    fn build(snap: &Snapshot, spec: &ServiceSpec, c: &Config, now: u64) -> ServiceSection {
        let p = snap.process.as_ref();
        ServiceSection {
            state: snap.state.as_str().into(),
            ready: snap.ready,
            pid: p.map(|p| p.pid),
            pgid: p.map(|p| p.pgid),
            spawned_at_unix_ms: p.map(|p| p.spawned_at_unix_ms),
            ready_since_unix_ms: p.and_then(|p| p.serving_since_unix_ms),
            uptime_seconds: p.map(|p| now.saturating_sub(p.spawned_at_unix_ms) as f64 / 1000.0),
            restarts: snap.restarts.clone(),
            health: layers(snap),
            backoff: snap.backoff.clone(),
            last_error: snap.last_error.clone(),
            command: crate::redact::argv(&spec.command),
            depends_on: spec.depends_on.clone(),
            log: c.home.service_log(&spec.name).display().to_string(),
            log_dropped_bytes: 0,
            warnings: Vec::new(),
        }
    }
}
