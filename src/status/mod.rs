//! The status document: one JSON schema shared by `GET /status` and
//! `stigmer local status --json` (which fetches it from the daemon);
//! [`render`] is the human form of it.

mod render;
pub mod v1;

pub use render::human_secs;

use crate::config::Config;
use crate::model::Kind;
use crate::model::Policy;
use crate::model::StateName;
use crate::model::clock::unix_now_ms;
use crate::supervisor::{Backoff, LayerStatus, Restarts, Snapshot, UnitView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Schema version of [`StatusDoc`].
pub const SCHEMA_VERSION: u32 = 1;

/// The whole document, as the daemon holds it: one list of units, each
/// with the same status, whatever its kind. Its JSON is the documented
/// version-1 layout ([`v1`]: Temporal's section, with four of its fields
/// copied at the top, and a map of services), produced at the edge by
/// serialisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "v1::Document", from = "v1::Document")]
pub struct StatusDoc {
    /// The supervising daemon.
    pub supervisor: SupervisorSection,
    /// How the stack's Temporal is reached (whatever runs it).
    pub temporal: TemporalInfo,
    /// Every unit, the stack's Temporal first.
    pub units: Vec<UnitEntry>,
    /// Effective supervision settings.
    pub config: ConfigSection,
    /// A gRPC health check of Temporal made for this request
    /// (`/status?check=live`), else absent.
    pub live_check: Option<LiveCheck>,
}

/// One unit of the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitEntry {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Its status.
    pub status: UnitStatus,
    /// What it runs (credentials masked; empty for Temporal).
    pub command: Vec<String>,
    /// What it waits for.
    pub depends_on: Vec<String>,
}

/// What `status --json` prints when there is no daemon document to show:
/// nothing runs, or the daemon does not answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unreachable {
    /// Schema version.
    pub version: u32,
    /// Does a daemon hold the instance lock?
    pub running: bool,
    /// What is known of Temporal: nothing but that.
    pub temporal: Unknown,
    /// Why the daemon's document could not be had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Temporal, when the daemon cannot be asked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unknown {
    /// `not_running` or `unknown`.
    pub state: Absence,
    /// Never ready.
    pub ready: bool,
}

/// Why nothing is known.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Absence {
    /// Nothing runs.
    NotRunning,
    /// A daemon runs but does not answer.
    Unknown,
}

impl Unreachable {
    /// The document for `state` (and why, when a daemon runs).
    pub fn new(state: Absence, error: Option<String>) -> Unreachable {
        Unreachable {
            version: SCHEMA_VERSION,
            running: state == Absence::Unknown,
            temporal: Unknown {
                state,
                ready: false,
            },
            error,
        }
    }
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

/// One unit's status, the same for Temporal and every service (and
/// embedded in each one's section): what its supervisor knows of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnitStatus {
    /// Supervisor state.
    pub state: StateName,
    /// Ready (for a service that its restart policy does not start
    /// again: completed with exit code 0)?
    pub ready: bool,
    /// Pid, when one runs.
    pub pid: Option<i32>,
    /// Process group.
    pub pgid: Option<i32>,
    /// Start time in clock ticks since boot (`/proc/PID/stat`).
    #[serde(default)]
    pub start_time_ticks: Option<u64>,
    /// Spawn time (Unix ms).
    pub spawned_at_unix_ms: Option<u64>,
    /// Ready since (Unix ms).
    #[serde(default)]
    pub ready_since_unix_ms: Option<u64>,
    /// Seconds since spawn.
    pub uptime_seconds: Option<f64>,
    /// Executable seen in /proc once ready.
    #[serde(default)]
    pub exe: Option<String>,
    /// Restarts, and how the last process ended.
    #[serde(default)]
    pub restarts: Restarts,
    /// Health layers by name.
    #[serde(default)]
    pub health: BTreeMap<String, LayerStatus>,
    /// Pending backoff, or null.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Last error worth showing, or null.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Its log file (none for an external Temporal).
    #[serde(default)]
    pub log: Option<String>,
    /// Bytes of its output dropped because the log could not take them.
    #[serde(default)]
    pub log_dropped_bytes: u64,
    /// Bytes of its output written to its log since the daemon started.
    #[serde(default)]
    pub log_written_bytes: u64,
    /// What needs attention but does not make it not ready (e.g. output
    /// being dropped).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Why it is not ready (absent when it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready_reason: Option<String>,
    /// Its build, when it has one: the last one's outcome or the one
    /// running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::supervisor::BuildStatus>,
    /// The second process of an overlap reload, while there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<crate::supervisor::Overlap>,
    /// The timeout its health checks have now (ms): adaptive, or fixed.
    #[serde(default)]
    pub check_timeout_ms: Option<f64>,
}

impl UnitStatus {
    /// The status of a unit that published `snap`, logging to `log`
    /// (with what it dropped in `stats`), at `now` (Unix ms).
    pub fn build(
        snap: &Snapshot,
        log: Option<&std::path::Path>,
        stats: &crate::disk::LogStats,
        now: u64,
    ) -> UnitStatus {
        let p = snap.process.as_ref();
        let dropped = stats.dropped_bytes();
        let warning = match (stats.problem(), dropped) {
            (None, 0) => None,
            (Some(p), n) => Some(format!("log: {n} bytes of output dropped; now: {p}")),
            (None, n) => Some(format!("log: {n} bytes of output dropped (writable again)")),
        };
        UnitStatus {
            state: snap.state,
            ready: snap.ready,
            pid: p.map(|p| p.pid),
            pgid: p.map(|p| p.pgid),
            start_time_ticks: p.map(|p| p.start_time_ticks),
            spawned_at_unix_ms: p.map(|p| p.spawned_at_unix_ms),
            ready_since_unix_ms: p.and_then(|p| p.serving_since_unix_ms),
            uptime_seconds: p.map(|p| now.saturating_sub(p.spawned_at_unix_ms) as f64 / 1000.0),
            exe: p.and_then(|p| p.exe.clone()),
            restarts: snap.restarts.clone(),
            health: snap
                .health
                .iter()
                .map(|(l, s)| (l.as_str().to_string(), s.clone()))
                .collect(),
            backoff: snap.backoff.clone(),
            last_error: snap.last_error.clone(),
            log: log.map(|l| l.display().to_string()),
            log_dropped_bytes: dropped,
            log_written_bytes: stats.written_bytes(),
            warnings: warning
                .into_iter()
                .chain(snap.notes.iter().cloned())
                .chain(snap.build.as_ref().and_then(|b| {
                    let e = b.error.as_ref()?;
                    Some(format!(
                        "build failed ({}): {e}; the running process stays",
                        b.trigger
                    ))
                }))
                .collect(),
            not_ready_reason: (!snap.ready).then(|| snap.not_ready_reason()),
            build: snap.build.clone(),
            overlap: snap.overlap.clone(),
            check_timeout_ms: snap.check_timeout_ms,
        }
    }
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

/// How the stack's Temporal is reached, and what it is: the fields the
/// `temporal` section carries besides its unit's status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemporalInfo {
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
    /// Database file.
    pub db_file: String,
    /// Run by us (false: an external Temporal we only watch).
    #[serde(default = "yes")]
    pub managed: bool,
    /// The stack's namespace (services' `TEMPORAL_NAMESPACE`).
    #[serde(default)]
    pub namespace: String,
    /// Calls go over TLS.
    #[serde(default)]
    pub tls: bool,
    /// `"set"` when calls carry credentials (an API key); the value is
    /// never shown.
    #[serde(default)]
    pub credentials: Option<String>,
    /// The `temporal.toml` profile attached through, as `NAME (FILE)`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Seconds between write checks (the `persistence` layer), when on.
    #[serde(default)]
    pub persistence_interval_seconds: Option<f64>,
}

fn yes() -> bool {
    true
}

/// `config` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigSection {
    /// Seconds between checks while serving.
    pub health_interval_seconds: f64,
    /// Timeout of port and gRPC checks (when adaptive: its cap).
    pub health_timeout_seconds: f64,
    /// Timeout of the back-to-back checks that confirm a failure (when
    /// adaptive: the detector's, like every other check).
    #[serde(default)]
    pub confirm_timeout_seconds: f64,
    /// The check timeout adapts to the answers seen (no
    /// `--health-timeout` given); the current value is each unit's
    /// `check_timeout_ms`.
    #[serde(default)]
    pub adaptive_timeout: bool,
    /// Failed checks before a restart.
    pub failure_threshold: u32,
    /// SIGTERM → SIGKILL grace.
    pub stop_grace_seconds: f64,
    /// Spawn → serving deadline.
    pub start_timeout_seconds: f64,
    /// A process that ends sooner after its spawn failed to start.
    #[serde(default)]
    pub min_uptime_seconds: f64,
    /// Backoff base (second attempt), seconds.
    pub backoff_base_seconds: f64,
    /// Backoff cap, seconds.
    pub backoff_cap_seconds: f64,
}

/// What the daemon is and runs with, as it is now: a configuration
/// reload replaces it, and every reader sees the new one.
#[derive(Debug, Clone)]
pub struct Info(std::sync::Arc<std::sync::RwLock<std::sync::Arc<DaemonInfo>>>);

impl Info {
    /// Over `d`.
    pub fn new(d: DaemonInfo) -> Info {
        Info(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(d),
        )))
    }

    /// The current one.
    pub fn get(&self) -> std::sync::Arc<DaemonInfo> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replace its configuration and Temporal binary (a reload).
    pub fn set(&self, config: Config, binary: PathBuf) {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        let mut d = (**slot).clone();
        d.config = config;
        if !binary.as_os_str().is_empty() {
            d.binary = binary;
        }
        *slot = std::sync::Arc::new(d);
    }
}

/// What the daemon is and runs with.
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
    /// Build the document from every unit's latest view, in the stack's
    /// order.
    pub fn build(views: &[UnitView], info: &DaemonInfo) -> StatusDoc {
        let now = unix_now_ms();
        let c = &info.config;
        let units = views
            .iter()
            .map(|u| {
                let spec = c.services.iter().find(|s| s.name == u.name);
                UnitEntry {
                    name: u.name.clone(),
                    kind: u.kind,
                    status: UnitStatus::build(&u.snapshot, u.log.as_deref(), &u.stats, now),
                    command: spec
                        .map(|s| crate::redact::argv(&s.command))
                        .unwrap_or_default(),
                    depends_on: spec.map(|s| s.depends_on.clone()).unwrap_or_default(),
                }
            })
            .collect();
        StatusDoc {
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
            temporal: TemporalInfo::build(info),
            units,
            config: ConfigSection {
                health_interval_seconds: c.health_interval.as_secs_f64(),
                health_timeout_seconds: c.health_timeout.as_secs_f64(),
                confirm_timeout_seconds: c.confirm_timeout.as_secs_f64(),
                adaptive_timeout: c.adaptive_timeout,
                failure_threshold: c.failure_threshold,
                stop_grace_seconds: c.stop_grace.as_secs_f64(),
                start_timeout_seconds: c.start_timeout.as_secs_f64(),
                min_uptime_seconds: c.min_uptime.as_secs_f64(),
                backoff_base_seconds: info.policy.base.as_secs_f64(),
                backoff_cap_seconds: info.policy.cap.as_secs_f64(),
            },
            live_check: None,
        }
    }

    /// The stack's Temporal.
    pub fn temporal_unit(&self) -> Option<&UnitEntry> {
        self.units.iter().find(|u| u.kind.is_temporal())
    }

    /// The services, in the stack's order.
    pub fn services(&self) -> impl Iterator<Item = &UnitEntry> {
        self.units.iter().filter(|u| !u.kind.is_temporal())
    }

    /// Is the whole stack ready: Temporal serving, every service ready?
    pub fn is_ready(&self) -> bool {
        let temporal = self
            .temporal_unit()
            .is_some_and(|t| t.status.ready && t.status.state == StateName::Running);
        temporal
            && self.services().all(|s| s.status.ready)
            && self.live_check.as_ref().is_none_or(|c| c.ok)
    }

    /// Unit `name`'s status.
    pub fn unit(&self, name: &str) -> Option<&UnitStatus> {
        self.units
            .iter()
            .find(|u| u.name == name)
            .map(|u| &u.status)
    }

    /// The services that are not ready, by name.
    pub fn not_ready(&self) -> Vec<&str> {
        self.services()
            .filter(|s| !s.status.ready)
            .map(|s| s.name.as_str())
            .collect()
    }
}

impl TemporalInfo {
    fn build(info: &DaemonInfo) -> TemporalInfo {
        let c = &info.config;
        TemporalInfo {
            frontend: c.frontend().to_string(),
            listen_ip: c.attach.is_none().then(|| c.temporal_ip.to_string()),
            ui_url: c.ui_url(),
            metrics_url: c.temporal_metrics_url(),
            binary: info.binary.display().to_string(),
            db_file: c.db_file.display().to_string(),
            managed: c.attach.is_none(),
            namespace: c.namespace.clone(),
            tls: c.connection().tls(),
            credentials: c.connection().has_credentials().then(|| "set".to_string()),
            profile: c
                .attach
                .as_ref()
                .and_then(|a| a.profile.as_ref())
                .map(|p| format!("{} ({})", p.name, p.file.display())),
            persistence_interval_seconds: c.persistence.as_ref().map(|p| p.interval.as_secs_f64()),
        }
    }
}
