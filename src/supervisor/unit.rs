//! A [`Unit`]: one unit of the plan ([`UnitSpec`], a value) bound to what
//! running it takes: its checks' clients and kept connections, its
//! compiled readiness pattern, its adaptive detector. Bound where it
//! runs; the actor only executes it.

use crate::config::services::ProbeKind;
use crate::health::Plan;
use crate::health::temporal::QueueCheck;
use crate::model::Kind;
use crate::plan::{Check, Ready as ReadySpec, UnitSpec};
use crate::process::{SpawnSpec, Spawner};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicI32;
use std::time::Duration;

/// When a unit counts as ready, bound.
#[derive(Debug, Clone)]
pub enum Ready {
    /// Once it has run for its `min_uptime` (the state machine decides).
    Uptime,
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

/// One supervised unit: its spec, bound.
#[derive(Debug, Clone)]
pub struct Unit {
    /// What is declared about it.
    pub spec: UnitSpec,
    /// When it is ready.
    pub ready: Ready,
    /// What a health round checks once it is ready, beyond liveness.
    pub health: Plan,
    /// What a check's timeout is: adaptive, or the fixed one.
    pub detector: crate::health::detector::Detector,
}

impl Unit {
    /// Bind `spec`: its commands run through `spawner`, its checks of
    /// Temporal (its health, task queues) through `temporal`.
    pub fn bind(spec: UnitSpec, spawner: &Spawner, temporal: &crate::temporal::Client) -> Unit {
        let check = |c: &Check| bind_check(c, &spec, spawner, temporal);
        let ready = match &spec.ready {
            ReadySpec::Uptime => Ready::Uptime,
            ReadySpec::Log { pattern } => Ready::Log {
                regex: regex::Regex::new(pattern).expect("checked with the configuration"),
                seen: Arc::new(AtomicI32::new(0)),
            },
            ReadySpec::Check(c) => Ready::Probe(check(c)),
        };
        // A health check that is the ready check (the default) shares its
        // kept connection rather than holding a second one open.
        let health = match (&spec.ready, &ready) {
            (ReadySpec::Check(r), Ready::Probe(p)) if *r == spec.health => p.clone(),
            _ => check(&spec.health),
        };
        let detector = detector(spec.timing.adaptive, spec.timing.health_timeout);
        Unit {
            ready,
            health,
            detector,
            spec,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The stack's Temporal: its rounds check the lock and PID file too,
    /// and its identity includes its executable, recorded once it is
    /// ready (a pyenv shim execs the real binary first; a service may
    /// exec other programs at any time, so it is known by pid and start
    /// time alone).
    pub fn is_temporal(&self) -> bool {
        self.spec.kind == Kind::Temporal
    }

    /// The signal that asks it to stop.
    pub fn stop_signal(&self) -> Signal {
        Signal::try_from(self.spec.stop_signal).unwrap_or(Signal::SIGTERM)
    }

    /// Its env files (read at every spawn).
    pub fn env_files(&self) -> &[crate::config::services::EnvFile] {
        self.spec.run.as_ref().map_or(&[], |r| &r.env_files)
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.spec.log.clone().unwrap_or_default()
    }

    /// What to spawn now: with its env files read afresh (so an edit
    /// applies at the next start).
    pub fn spawn_spec(&self) -> Result<SpawnSpec, String> {
        let Some(run) = &self.spec.run else {
            return Err(format!("{} is not run here", self.spec.title()));
        };
        let mut env = run.env.clone();
        for f in &run.env_files {
            env.extend(f.read().map_err(|e| e.0)?);
        }
        env.extend(run.own_env.iter().cloned());
        Ok(SpawnSpec {
            program: run.program.clone(),
            args: run.args.iter().map(Into::into).collect(),
            env,
            env_remove: run.env_remove.clone(),
            cwd: run.cwd.clone(),
            capture: true,
        })
    }

    /// Its build, as it runs now: the service's own cwd and environment.
    pub fn build_spec(&self) -> Option<Result<SpawnSpec, String>> {
        let argv = self.spec.build.as_ref()?;
        Some(self.spawn_spec().map(|spec| SpawnSpec {
            program: PathBuf::from(&argv[0]),
            args: argv[1..].iter().map(Into::into).collect(),
            ..spec
        }))
    }

    /// The program it runs, for messages.
    pub fn program(&self) -> String {
        self.spec
            .run
            .as_ref()
            .map_or_else(String::new, |r| r.program.display().to_string())
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
            Ready::Uptime => Plan::Alive,
            Ready::Log { regex, seen } => Plan::Log {
                seen: seen.clone(),
                pattern: regex.as_str().to_string(),
            },
            Ready::Probe(p) => p.clone(),
        }
    }
}

/// A declared check as a probe plan: its clients and kept connections.
fn bind_check(
    c: &Check,
    spec: &UnitSpec,
    spawner: &Spawner,
    temporal: &crate::temporal::Client,
) -> Plan {
    let kind = match c {
        Check::Alive => return Plan::Alive,
        Check::Temporal => {
            return Plan::Temporal {
                client: temporal.clone(),
            };
        }
        Check::Probe(kind) => kind,
    };
    match kind {
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
            namespace.clone().unwrap_or_default(),
            queue.clone(),
            types.clone(),
            identity.clone(),
        )),
        ProbeKind::Exec { argv } => {
            let run = spec.run.as_ref();
            let mut env = run.map(|r| r.env.clone()).unwrap_or_default();
            env.extend(run.map(|r| r.own_env.clone()).unwrap_or_default());
            Plan::Exec {
                spec: SpawnSpec {
                    program: PathBuf::from(&argv[0]),
                    args: argv[1..].iter().map(Into::into).collect(),
                    env,
                    env_remove: run.map(|r| r.env_remove.clone()).unwrap_or_default(),
                    cwd: run.and_then(|r| r.cwd.clone()),
                    capture: false,
                },
                spawner: spawner.clone(),
            }
        }
    }
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
