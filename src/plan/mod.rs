//! The plan: every unit of the stack as a value, made by one pure
//! function from a checked configuration ([`Plan::of`]). A [`UnitSpec`]
//! holds everything declared about a unit with every inherited default
//! already resolved (a service with no `health` check has the stack's
//! round interval written in its spec, not looked up later), and its
//! [`Kind`]; runtime handles (clients, compiled patterns, the spawner) are
//! bound only where the unit runs (`supervisor::unit`).
//!
//! Start and reload are one reconciliation: [`diff`] compares the running
//! plan with a new one, unit by unit, and the daemon applies the
//! difference (start is the difference from the empty plan). A reload
//! that changes an inherited setting therefore replaces exactly the units
//! whose resolved spec changed, and names the settings.

mod diff;

pub use diff::{Change, Diff, diff};

use crate::config::Config;
use crate::config::services::{EnvFile, ProbeKind, Readiness, ReloadMode, ServiceSpec, WatchSpec};
use crate::config::temporal::PersistenceCheck;
use crate::model::{Kind, Policy, RestartPolicy, Rules, TEMPORAL};
use crate::temporal::Connection;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Probe period from spawn until ready for Temporal: short, so a restart
/// is seen serving within milliseconds of Temporal being able to answer.
pub const TEMPORAL_STARTUP_INTERVAL: Duration = Duration::from_millis(10);
/// The same for services (whose probes may cost more: HTTP, commands).
pub const SERVICE_STARTUP_INTERVAL: Duration = Duration::from_millis(50);
/// The same for a task-queue readiness check: three calls to Temporal.
pub const QUEUE_STARTUP_INTERVAL: Duration = Duration::from_millis(250);
/// An attached Temporal is looked at this often until it first answers.
pub const ATTACHED_STARTUP_INTERVAL: Duration = Duration::from_millis(100);

/// Every unit of a stack, and how the daemon reaches and runs around
/// them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Every unit, the stack's Temporal first, each after what it
    /// depends on.
    pub units: Vec<UnitSpec>,
    /// How every call reaches the stack's Temporal.
    pub connection: Connection,
    /// Temporal's write check, when on.
    pub persistence: Option<PersistenceCheck>,
    /// What the daemon itself runs with.
    pub daemon: DaemonSpec,
}

/// What the daemon runs with, apart from its units: applied at start
/// only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonSpec {
    /// Its HTTP address.
    pub http_addr: SocketAddr,
    /// A non-loopback HTTP address was allowed.
    pub allow_remote_http: bool,
    /// Host names its HTTP server answers to.
    pub http_allowed_hosts: Vec<String>,
    /// Where traces go.
    pub otlp_endpoint: Option<String>,
}

/// One unit as declared, every default resolved: a value (compared,
/// serialised, handed over in an upgrade).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitSpec {
    /// `temporal`, or the service's name.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// What runs (none for an attached Temporal).
    pub run: Option<Run>,
    /// Addresses it binds, checked free before each spawn.
    pub binds: Vec<SocketAddr>,
    /// When it is ready.
    pub ready: Ready,
    /// What a health round checks once it is ready, beyond liveness.
    pub health: Check,
    /// How often and how long it is checked.
    pub timing: Timing,
    /// The rules of its state machine.
    pub rules: Rules,
    /// The signal that asks it to stop.
    pub stop_signal: i32,
    /// Stop signal → SIGKILL.
    pub stop_grace: Duration,
    /// Its stdout/stderr log (none for an attached Temporal).
    pub log: Option<PathBuf>,
    /// What must be ready before it starts.
    pub depends_on: Vec<String>,
    /// Dependencies whose restart restarts it.
    pub restart_with: Vec<String>,
    /// Units that stop only after it has: its dependencies, and for a
    /// service the stack's Temporal (written out here, not implied).
    pub stops_before: Vec<String>,
    /// Files whose changes replace it.
    pub watch: Option<WatchSpec>,
    /// What runs before each (re)start, in its cwd and environment.
    pub build: Option<Vec<String>>,
    /// How a change or a restart replaces it.
    pub reload: ReloadMode,
}

/// What a unit runs: a command, its environment and directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// What the stack sets in its environment (the service's own `env`
    /// included when it has no env files).
    pub env: Vec<(String, String)>,
    /// Inherited variables left out.
    pub env_remove: Vec<String>,
    /// Env files read at every spawn, between `env` and `own_env`.
    pub env_files: Vec<EnvFile>,
    /// The service's own `env` when env files are read (it wins over
    /// them); empty otherwise.
    pub own_env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
}

/// When a unit counts as ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ready {
    /// Once it has run for its `min_uptime`.
    Uptime,
    /// When a line it logs matches this pattern.
    Log {
        /// The regular expression (checked).
        pattern: String,
    },
    /// When this check first passes.
    Check(Check),
}

/// A health check, as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Nothing beyond being alive.
    Alive,
    /// Temporal's frontend port, then its gRPC health, over the stack's
    /// connection.
    Temporal,
    /// A service's probe (its task-queue namespace resolved).
    Probe(ProbeKind),
}

/// How often, and with what timeouts, a unit is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Between rounds while it is ready.
    pub health_interval: Duration,
    /// Between rounds from spawn until ready.
    pub startup_interval: Duration,
    /// Timeout of a check: the fixed one, or the adaptive one's cap.
    pub health_timeout: Duration,
    /// Timeout of the checks that confirm a failure, when fixed.
    pub confirm_timeout: Duration,
    /// The timeout adapts to the answers.
    pub adaptive: bool,
    /// Confirmations use the adaptive timeout too.
    pub adaptive_confirm: bool,
}

impl UnitSpec {
    /// How messages name it: "Temporal", or "service NAME".
    pub fn title(&self) -> String {
        self.kind.title(&self.name)
    }
}

impl Plan {
    /// The plan with nothing in it: what runs before a start.
    pub fn empty(like: &Plan) -> Plan {
        Plan {
            units: Vec::new(),
            ..like.clone()
        }
    }

    /// The plan of `cfg`: Temporal (run from `bin`, or attached) and each
    /// service, with `policy`'s backoff. `inherited` names the variables
    /// of the environment services inherit (some are left out).
    pub fn of(cfg: &Config, bin: &Path, policy: &Policy, inherited: &[String]) -> Plan {
        let mut units = vec![temporal(cfg, bin, policy)];
        units.extend(
            cfg.services
                .iter()
                .map(|s| service(s, cfg, policy, inherited)),
        );
        Plan {
            units,
            connection: cfg.connection(),
            persistence: cfg.persistence.clone(),
            daemon: DaemonSpec {
                http_addr: cfg.http_addr,
                allow_remote_http: cfg.allow_remote_http,
                http_allowed_hosts: cfg.http_allowed_hosts.clone(),
                otlp_endpoint: cfg.otlp_endpoint.clone(),
            },
        }
    }

    /// The unit called `name`.
    pub fn unit(&self, name: &str) -> Option<&UnitSpec> {
        self.units.iter().find(|u| u.name == name)
    }

    /// The stack's Temporal, run here or attached.
    pub fn temporal(&self) -> Option<&UnitSpec> {
        self.units.iter().find(|u| u.kind.is_temporal())
    }
}

/// The timing a unit without checks of its own gets: the stack's.
fn stack_timing(cfg: &Config, startup_interval: Duration) -> Timing {
    Timing {
        health_interval: cfg.health_interval,
        startup_interval,
        health_timeout: cfg.health_timeout,
        confirm_timeout: cfg.confirm_timeout,
        adaptive: cfg.adaptive_timeout,
        adaptive_confirm: cfg.adaptive_confirm,
    }
}

/// The stack's Temporal: the dev server run from `bin`, or the one it
/// attaches to.
fn temporal(cfg: &Config, bin: &Path, policy: &Policy) -> UnitSpec {
    let attached = cfg.attach.is_some();
    let run = (!attached).then(|| Run {
        program: bin.to_path_buf(),
        args: cfg
            .temporal_args()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        env: Vec::new(),
        env_remove: Vec::new(),
        env_files: Vec::new(),
        own_env: Vec::new(),
        cwd: None,
    });
    let startup = if attached {
        ATTACHED_STARTUP_INTERVAL
    } else {
        TEMPORAL_STARTUP_INTERVAL
    };
    UnitSpec {
        name: TEMPORAL.into(),
        kind: if attached {
            Kind::AttachedTemporal
        } else {
            Kind::Temporal
        },
        run,
        binds: cfg.temporal_binds().into_iter().map(|(a, ..)| a).collect(),
        ready: Ready::Check(Check::Temporal),
        health: Check::Temporal,
        timing: stack_timing(cfg, startup),
        rules: Rules {
            policy: policy.clone(),
            failure_threshold: cfg.failure_threshold,
            start_timeout: cfg.start_timeout,
            restart: RestartPolicy::Always,
            min_uptime: cfg.min_uptime,
            ready_on_uptime: false,
        },
        stop_signal: nix::sys::signal::Signal::SIGTERM as i32,
        stop_grace: cfg.stop_grace,
        log: (!attached).then(|| cfg.home.unit_log(TEMPORAL)),
        depends_on: Vec::new(),
        restart_with: Vec::new(),
        stops_before: Vec::new(),
        watch: None,
        build: None,
        reload: ReloadMode::Restart,
    }
}

/// Service `s` of `cfg`.
fn service(s: &ServiceSpec, cfg: &Config, policy: &Policy, inherited: &[String]) -> UnitSpec {
    let resolve = |kind: &ProbeKind| match kind {
        ProbeKind::TaskQueue {
            queue,
            namespace,
            types,
            identity,
        } => ProbeKind::TaskQueue {
            queue: queue.clone(),
            namespace: Some(namespace.clone().unwrap_or_else(|| cfg.namespace.clone())),
            types: types.clone(),
            identity: identity.clone(),
        },
        other => other.clone(),
    };
    let (ready, start_timeout) = match &s.ready {
        Readiness::Spawned => (Ready::Uptime, cfg.start_timeout),
        Readiness::Log { pattern, timeout } => (
            Ready::Log {
                pattern: pattern.clone(),
            },
            *timeout,
        ),
        Readiness::Probe { kind, timeout } => (Ready::Check(Check::Probe(resolve(kind))), *timeout),
    };
    let startup = match &s.ready {
        Readiness::Probe {
            kind: ProbeKind::TaskQueue { .. },
            ..
        } => QUEUE_STARTUP_INTERVAL,
        _ => SERVICE_STARTUP_INTERVAL,
    };
    let health = s.health.as_ref();
    let timing = match health {
        None => stack_timing(cfg, startup),
        Some(h) => Timing {
            health_interval: h.interval,
            startup_interval: startup,
            health_timeout: h.timeout,
            confirm_timeout: h.timeout.min(cfg.confirm_timeout),
            adaptive: h.adaptive,
            adaptive_confirm: h.adaptive,
        },
    };
    let mut stops_before = s.depends_on.clone();
    if !stops_before.iter().any(|d| d == TEMPORAL) {
        stops_before.push(TEMPORAL.into());
    }
    UnitSpec {
        name: s.name.clone(),
        kind: Kind::Service,
        run: Some(service_run(s, cfg, inherited)),
        binds: Vec::new(),
        ready,
        health: health.map_or(Check::Alive, |h| Check::Probe(resolve(&h.kind))),
        timing,
        rules: Rules {
            policy: policy.clone(),
            failure_threshold: health.map_or(cfg.failure_threshold, |h| h.failure_threshold),
            start_timeout,
            restart: s.restart,
            min_uptime: s.min_uptime.unwrap_or(cfg.min_uptime),
            ready_on_uptime: matches!(s.ready, Readiness::Spawned),
        },
        stop_signal: s.stop_signal,
        stop_grace: s.stop_grace,
        log: Some(cfg.home.unit_log(&s.name)),
        depends_on: s.depends_on.clone(),
        restart_with: s.restart_with.clone(),
        stops_before,
        watch: s.watch.clone(),
        build: s.build.clone(),
        reload: s.reload,
    }
}

/// What service `s` runs, with the environment the stack gives it.
fn service_run(s: &ServiceSpec, cfg: &Config, inherited: &[String]) -> Run {
    let (mut env, env_remove) = service_env(s, cfg, inherited);
    let own_env: Vec<(String, String)> =
        s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let read_at_spawn = !s.env_files.is_empty();
    if !read_at_spawn {
        env.extend(own_env.iter().cloned());
    }
    Run {
        program: PathBuf::from(&s.command[0]),
        args: s.command[1..].to_vec(),
        env,
        env_remove,
        env_files: s.env_files.clone(),
        own_env: if read_at_spawn { own_env } else { Vec::new() },
        cwd: s.cwd.clone(),
    }
}

/// A service's environment from the stack: the stack's Temporal (unless
/// it says `temporal_env = false`), under its own `env`, which wins; and
/// the inherited variables (of `inherited`) to drop: an API key or TLS
/// setting meant for another Temporal would turn TLS on against the
/// plaintext dev server.
pub fn service_env(
    s: &ServiceSpec,
    cfg: &Config,
    inherited: &[String],
) -> (Vec<(String, String)>, Vec<String>) {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut remove: Vec<String> = Vec::new();
    if s.temporal_env {
        env.push(("TEMPORAL_ADDRESS".into(), cfg.frontend()));
        env.push(("TEMPORAL_NAMESPACE".into(), cfg.namespace.clone()));
        let strip = cfg.attach.as_ref().is_none_or(|a| a.strip_inherited);
        if strip {
            remove = crate::config::temporal::stripped(inherited.iter().map(String::as_str));
        }
        if let Some(at) = &cfg.attach {
            env.extend(
                at.env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string())),
            );
        }
        env.retain(|(k, _)| !s.env.contains_key(k));
        remove.retain(|k| !s.env.contains_key(k) && !env.iter().any(|(e, _)| e == k));
    }
    (env, remove)
}

/// The names of the variables this process would pass on.
pub fn inherited_names() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect()
}
