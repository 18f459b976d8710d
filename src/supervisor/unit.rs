//! A [`Unit`]: one supervised process, Temporal or a declared service,
//! described the same way: what to run, when it is ready, how its health
//! is checked, how it stops, what it waits for, and the rules of its state
//! machine. Built once from the [`Config`]; the actor only executes it.

use crate::model::Policy;
use super::state::Rules;
use crate::config::Config;
use crate::config::services::{ProbeKind, Readiness, ServiceSpec};
use crate::health::Plan;
use crate::health::temporal::QueueCheck;
use crate::model::{RestartPolicy, TEMPORAL};
use crate::process::{SpawnSpec, Spawner};
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicI32;
use std::time::Duration;

/// Probe period from spawn until ready for Temporal: short, so a restart
/// is seen serving within milliseconds of Temporal being able to answer.
pub const TEMPORAL_STARTUP_INTERVAL: Duration = Duration::from_millis(10);
/// The same for services (whose probes may cost more: HTTP, commands).
pub const SERVICE_STARTUP_INTERVAL: Duration = Duration::from_millis(50);
/// The same for a task-queue readiness check: three calls to Temporal.
pub const QUEUE_STARTUP_INTERVAL: Duration = Duration::from_millis(250);

/// When a unit counts as ready.
#[derive(Debug, Clone)]
pub enum Ready {
    /// As soon as it is spawned.
    Spawned,
    /// When a line it logs matches `regex`; the log pump stores the pid
    /// that logged it in `seen`.
    Log {
        /// The compiled pattern.
        regex: regex::Regex,
        /// The pid whose line matched.
        seen: Arc<AtomicI32>,
    },
    /// When this check first passes.
    Probe(Plan),
}

/// One supervised process.
#[derive(Debug, Clone)]
pub struct Unit {
    /// `temporal` or the service's name.
    pub name: String,
    /// What to run.
    pub spawn: SpawnSpec,
    /// Addresses it binds, checked free before each spawn.
    pub binds: Vec<SocketAddr>,
    /// When it is ready.
    pub ready: Ready,
    /// What a health round checks once it is ready, beyond liveness.
    pub health: Plan,
    /// Period of health rounds while ready.
    pub health_interval: Duration,
    /// Period of rounds from spawn until ready.
    pub startup_interval: Duration,
    /// Timeout of one network or command check.
    pub health_timeout: Duration,
    /// Timeout of the checks that confirm a failure, run back to back.
    pub confirm_timeout: Duration,
    /// What a check's timeout is: adaptive, or the fixed `health_timeout`
    /// (and `confirm_timeout` for confirmations).
    pub detector: crate::health::detector::Detector,
    /// Confirmations use the detector's timeout (else `confirm_timeout`).
    pub adaptive_confirm: bool,
    /// Whether its rounds check the lock and PID file (Temporal's do).
    pub files: bool,
    /// Whether a check on its own schedule (Temporal's write check)
    /// restarts it after `failure_threshold` failures in a row.
    pub side_restart: bool,
    /// Whether its identity includes its executable, recorded once it is
    /// ready (Temporal's: a pyenv shim execs the real binary first). A
    /// service may exec other programs at any time, so it is known by pid
    /// and start time alone.
    pub exe_in_identity: bool,
    /// The signal that asks it to stop.
    pub stop_signal: Signal,
    /// Stop signal → SIGKILL.
    pub stop_grace: Duration,
    /// Its stdout/stderr log.
    pub log_path: PathBuf,
    /// Rotate the log past this size.
    pub log_max_bytes: u64,
    /// The rules of its state machine.
    pub rules: Rules,
    /// What must be ready before it starts.
    pub depends_on: Vec<String>,
    /// Dependencies whose restart restarts it.
    pub restart_with: Vec<String>,
    /// Files whose changes replace it.
    pub watch: Option<crate::config::services::WatchSpec>,
    /// What runs before each (re)start, in its cwd and environment.
    pub build: Option<Vec<String>>,
    /// How a change or a restart replaces it.
    pub reload: crate::config::services::ReloadMode,
    /// Env files read at every spawn (their variables go between the
    /// stack's and `own_env`).
    pub env_files: Vec<crate::config::services::EnvFile>,
    /// The service's own `env` (wins over everything), when env files are
    /// read at spawn; empty otherwise (then `spawn.env` has it already).
    pub own_env: Vec<(String, String)>,
}

impl Unit {
    /// Temporal as `cfg` runs it, from `bin`, checked through `temporal`.
    pub fn temporal(
        cfg: &Config,
        bin: &Path,
        policy: Policy,
        temporal: &crate::temporal::Client,
    ) -> Unit {
        let check = Plan::Temporal {
            client: temporal.clone(),
        };
        Unit {
            name: TEMPORAL.into(),
            spawn: SpawnSpec {
                program: bin.to_path_buf(),
                args: cfg.temporal_args(),
                capture: true,
                ..SpawnSpec::default()
            },
            binds: cfg.temporal_binds().into_iter().map(|(a, ..)| a).collect(),
            ready: Ready::Probe(check.clone()),
            health: check,
            health_interval: cfg.health_interval,
            startup_interval: TEMPORAL_STARTUP_INTERVAL,
            health_timeout: cfg.health_timeout,
            confirm_timeout: cfg.confirm_timeout,
            detector: detector(cfg.adaptive_timeout, cfg.health_timeout),
            adaptive_confirm: cfg.adaptive_confirm,
            files: true,
            side_restart: cfg.persistence.as_ref().is_some_and(|p| p.restart),
            exe_in_identity: true,
            stop_signal: Signal::SIGTERM,
            stop_grace: cfg.stop_grace,
            log_path: cfg.home.temporal_log(),
            log_max_bytes: crate::logfile::DEFAULT_MAX_BYTES,
            rules: Rules {
                policy,
                failure_threshold: cfg.failure_threshold,
                start_timeout: cfg.start_timeout,
                restart: RestartPolicy::Always,
                min_uptime: cfg.min_uptime,
                ready_on_uptime: false,
            },
            depends_on: Vec::new(),
            restart_with: Vec::new(),
            watch: None,
            build: None,
            reload: crate::config::services::ReloadMode::Restart,
            env_files: Vec::new(),
            own_env: Vec::new(),
        }
    }

    /// Service `s` of `cfg`; its commands run through `spawner`, its
    /// task-queue checks through `temporal`.
    pub fn service(
        s: &ServiceSpec,
        cfg: &Config,
        policy: Policy,
        spawner: &Spawner,
        temporal: &crate::temporal::Client,
    ) -> Unit {
        let (mut env, env_remove) = service_env(s, cfg);
        let own_env: Vec<(String, String)> =
            s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let with_own = {
            let mut e = env.clone();
            e.extend(own_env.iter().cloned());
            e
        };
        if s.env_files.is_empty() {
            env = with_own.clone();
        }
        let spawn = SpawnSpec {
            program: PathBuf::from(&s.command[0]),
            args: s.command[1..].iter().map(Into::into).collect(),
            env,
            env_remove,
            cwd: s.cwd.clone(),
            capture: true,
        };
        let plan = |kind: &ProbeKind| match kind {
            ProbeKind::Http { url } => Plan::Http {
                client: crate::http_client::Kept::new(url),
            },
            ProbeKind::Tcp { addr } => Plan::Tcp { addr: *addr },
            ProbeKind::Grpc { addr, service } => Plan::Grpc {
                client: crate::grpc::Client::new(crate::grpc::Endpoint::plain(*addr)),
                service: service.clone(),
            },
            ProbeKind::TaskQueue {
                queue,
                namespace,
                types,
                identity,
            } => Plan::TaskQueue(QueueCheck::new(
                temporal.clone(),
                namespace.clone().unwrap_or_else(|| cfg.namespace.clone()),
                queue.clone(),
                types.clone(),
                identity.clone(),
            )),
            ProbeKind::Exec { argv } => Plan::Exec {
                spec: SpawnSpec {
                    program: PathBuf::from(&argv[0]),
                    args: argv[1..].iter().map(Into::into).collect(),
                    capture: false,
                    env: with_own.clone(),
                    ..spawn.clone()
                },
                spawner: spawner.clone(),
            },
        };
        let (ready, start_timeout) = match &s.ready {
            Readiness::Spawned => (Ready::Spawned, cfg.start_timeout),
            Readiness::Log { pattern, timeout } => (
                Ready::Log {
                    regex: regex::Regex::new(pattern).expect("checked with the configuration"),
                    seen: Arc::new(AtomicI32::new(0)),
                },
                *timeout,
            ),
            Readiness::Probe { kind, timeout } => (Ready::Probe(plan(kind)), *timeout),
        };
        let health = s.health.as_ref();
        // A health check that is the ready check (the default) shares its
        // kept connection rather than holding a second one open.
        let health_plan = health.map_or(Plan::Alive, |h| match (&s.ready, &ready) {
            (Readiness::Probe { kind, .. }, Ready::Probe(p)) if *kind == h.kind => p.clone(),
            _ => plan(&h.kind),
        });
        Unit {
            name: s.name.clone(),
            binds: Vec::new(),
            ready,
            health: health_plan,
            health_interval: health.map_or(cfg.health_interval, |h| h.interval),
            startup_interval: match &s.ready {
                Readiness::Probe {
                    kind: ProbeKind::TaskQueue { .. },
                    ..
                } => QUEUE_STARTUP_INTERVAL,
                _ => SERVICE_STARTUP_INTERVAL,
            },
            health_timeout: health.map_or(cfg.health_timeout, |h| h.timeout),
            confirm_timeout: health
                .map_or(cfg.confirm_timeout, |h| h.timeout.min(cfg.confirm_timeout)),
            detector: match health {
                Some(h) => detector(h.adaptive, h.timeout),
                None => detector(cfg.adaptive_timeout, cfg.health_timeout),
            },
            adaptive_confirm: health.map_or(cfg.adaptive_confirm, |h| h.adaptive),
            files: false,
            side_restart: false,
            exe_in_identity: false,
            stop_signal: Signal::try_from(s.stop_signal).unwrap_or(Signal::SIGTERM),
            stop_grace: s.stop_grace,
            log_path: cfg.home.service_log(&s.name),
            log_max_bytes: crate::logfile::DEFAULT_MAX_BYTES,
            rules: Rules {
                policy,
                failure_threshold: health.map_or(cfg.failure_threshold, |h| h.failure_threshold),
                start_timeout,
                restart: s.restart,
                min_uptime: s.min_uptime.unwrap_or(cfg.min_uptime),
                ready_on_uptime: matches!(s.ready, Readiness::Spawned),
            },
            depends_on: s.depends_on.clone(),
            restart_with: s.restart_with.clone(),
            watch: s.watch.clone(),
            build: s.build.clone(),
            reload: s.reload,
            own_env: if s.env_files.is_empty() {
                Vec::new()
            } else {
                own_env
            },
            env_files: s.env_files.clone(),
            spawn,
        }
    }

    /// What to spawn now: with its env files read afresh (so an edit
    /// applies at the next start).
    pub fn spawn_spec(&self) -> Result<SpawnSpec, String> {
        if self.env_files.is_empty() {
            return Ok(self.spawn.clone());
        }
        let mut spec = self.spawn.clone();
        for f in &self.env_files {
            spec.env.extend(f.read().map_err(|e| e.0)?);
        }
        spec.env.extend(self.own_env.iter().cloned());
        Ok(spec)
    }

    /// Its build, as it runs now: the service's own cwd and environment.
    pub fn build_spec(&self) -> Option<Result<SpawnSpec, String>> {
        let argv = self.build.as_ref()?;
        Some(self.spawn_spec().map(|spec| SpawnSpec {
            program: PathBuf::from(&argv[0]),
            args: argv[1..].iter().map(Into::into).collect(),
            ..spec
        }))
    }

    /// Drop the kept connections of its checks (a new process starts).
    pub fn reset_checks(&self) {
        if let Ready::Probe(p) = &self.ready {
            p.reset();
        }
        self.health.reset();
    }

    /// The plan of a round in the ready-or-not phase.
    pub fn ready_plan(&self) -> Plan {
        match &self.ready {
            Ready::Spawned => Plan::Alive,
            Ready::Log { regex, seen } => Plan::Log {
                seen: seen.clone(),
                pattern: regex.as_str().to_string(),
            },
            Ready::Probe(p) => p.clone(),
        }
    }
}

/// A service's environment: the stack's Temporal (unless it says
/// `temporal_env = false`), then its own `env`, which wins; and the
/// inherited variables to drop (an API key or TLS setting meant for
/// another Temporal would turn TLS on against the plaintext dev server).
pub fn service_env(s: &ServiceSpec, cfg: &Config) -> (Vec<(String, String)>, Vec<String>) {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut remove: Vec<String> = Vec::new();
    if s.temporal_env {
        env.push(("TEMPORAL_ADDRESS".into(), cfg.frontend()));
        env.push(("TEMPORAL_NAMESPACE".into(), cfg.namespace.clone()));
        let strip = cfg.attach.as_ref().is_none_or(|a| a.strip_inherited);
        if strip {
            let names: Vec<String> = std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .collect();
            remove = crate::config::temporal::stripped(names.iter().map(String::as_str));
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

/// An adaptive detector capped at `timeout`, or the fixed `timeout`.
fn detector(adaptive: bool, timeout: Duration) -> crate::health::detector::Detector {
    use crate::health::detector::Detector;
    if adaptive {
        Detector::adaptive(timeout)
    } else {
        Detector::fixed(timeout)
    }
}
