//! Attach mode: a Temporal that runs elsewhere (`managed = false`). It is
//! only probed (its port and gRPC health, plus our lock and PID file): it
//! is never spawned and never signalled, and a stop leaves it running.
//! Its state (`starting` until it first answers, then `running` or
//! `unhealthy`) gates the services that depend on it, like a managed one.

use super::frozen::FrozenUnit;
use super::registry::SharedRegistry;
use crate::model::{Layer, StateName};

use super::Startup;
use super::{Command, Halt, Outlet, Snapshot, UnitHandle};
use crate::health::{self, FileChecks, Plan, Round, Target};
use crate::model::clock::unix_now_ms;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Period of rounds until the external Temporal first answers.
const STARTUP_INTERVAL: Duration = Duration::from_millis(100);

/// What is known of the external Temporal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Watched {
    /// Not answered yet.
    Starting,
    /// The last round passed.
    Running,
    /// The last round failed at `layer`.
    Unhealthy {
        /// The first failing layer.
        layer: Layer,
    },
}

impl Watched {
    /// The state's name.
    pub fn name(self) -> StateName {
        match self {
            Watched::Starting => StateName::Starting,
            Watched::Running => StateName::Running,
            Watched::Unhealthy { .. } => StateName::Unhealthy,
        }
    }
}

/// The pure decision: a round's outcome gives the next state and the files
/// to repair. Nothing is ever restarted or signalled.
pub fn step(state: Watched, failed: Option<Layer>, tampered: &[Layer]) -> (Watched, Vec<Layer>) {
    let next = match (state, failed) {
        (_, None) => Watched::Running,
        // Not answering yet is still starting; once it has answered, a
        // failure makes it unhealthy (not ready) at once.
        (Watched::Starting, Some(_)) => Watched::Starting,
        (_, Some(layer)) => Watched::Unhealthy { layer },
    };
    (next, tampered.to_vec())
}

/// The watcher task.
pub struct Watcher {
    client: crate::temporal::Client,
    interval: Duration,
    timeout: Duration,
    registry: SharedRegistry,
    out: Outlet,
    status: watch::Sender<Snapshot>,
    commands: mpsc::Receiver<Command>,
    state: Watched,
}

impl Watcher {
    /// A watcher of the attached Temporal `spec` declares, reached
    /// through `client`, and its handle.
    pub fn new(
        spec: &crate::plan::UnitSpec,
        client: crate::temporal::Client,
        registry: SharedRegistry,
        out: Outlet,
    ) -> (Self, UnitHandle) {
        let snap = Snapshot {
            state: StateName::Starting,
            ..Snapshot::default()
        };
        // Nothing of an external Temporal's is logged here.
        let (status, commands, handle) = super::unit_channels(spec, snap, Arc::default(), None);
        let w = Watcher {
            client,
            interval: spec.timing.health_interval,
            timeout: spec.timing.health_timeout,
            registry,
            out,
            status,
            commands,
            state: Watched::Starting,
        };
        (w, handle)
    }

    /// Continue from what the previous daemon's watcher handed over.
    pub fn adopt(mut self, state: Watched, snapshot: Snapshot) -> Self {
        self.state = state;
        self.status.send_replace(snapshot);
        self
    }

    /// Probe until `halt` resolves: on [`Halt::Freeze`], return what the
    /// next daemon's watcher continues from.
    pub async fn run(mut self, halt: impl Future<Output = Halt>) -> Option<FrozenUnit> {
        tokio::pin!(halt);
        let mut state = self.state;
        if state != Watched::Starting {
            self.out.observer.adopted(state.name(), None);
        }
        let mut next = Instant::now();
        let how = loop {
            let round = tokio::select! {
                biased;
                how = &mut halt => break how,
                Some(cmd) = self.commands.recv() => {
                    // Restarting an external Temporal is not ours to do;
                    // a check of its own schedule is shown.
                    if let Command::Observed { check, .. } = cmd {
                        self.observed(state, &check);
                    }
                    continue;
                }
                () = tokio::time::sleep_until(next.into()) => {
                    let started = Instant::now();
                    let round = tokio::select! {
                        biased;
                        how = &mut halt => break how,
                        r = health::round(self.target()) => r,
                    };
                    let every = if state == Watched::Starting { STARTUP_INTERVAL } else { self.interval };
                    next = (started + every).max(Instant::now());
                    round
                }
            };
            let tampered: Vec<Layer> = round.tampered().collect();
            let (to, repairs) = step(state, round.failed(), &tampered);
            for layer in repairs {
                let registry = self.registry.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = registry.repair(layer) {
                        tracing::error!(layer = layer.as_str(), error = %e, "repair failed");
                    }
                });
            }
            if to.name() != state.name() {
                tracing::info!(from = state.name().as_str(), to = to.name().as_str(), address = %self.client.grpc().endpoint().address, "external Temporal");
                self.out.observer.state_changed(state.name(), to.name());
            }
            state = to;
            self.publish(state, &round);
        };
        if how == Halt::Freeze {
            return Some(FrozenUnit::Attached {
                state,
                snapshot: Box::new(self.status.borrow().clone()),
            });
        }
        self.out
            .observer
            .state_changed(state.name(), StateName::Stopped);
        self.status.send_modify(|s| {
            s.state = StateName::Stopped;
            s.ready = false;
        });
        None
    }

    fn target(&self) -> Target {
        Target {
            files: Some(Arc::new(self.registry.clone()) as Arc<dyn FileChecks>),
            identity: None,
            plan: Plan::Temporal {
                client: self.client.clone(),
            },
            timeout: self.timeout,
            pressure: false,
        }
    }

    fn publish(&mut self, state: Watched, round: &Round) {
        self.status.send_modify(|s| {
            s.state = state.name();
            super::fold_checks(&mut s.health, &round.checks, unix_now_ms());
            s.ready = state == Watched::Running && s.gated().is_none();
        });
        for c in &round.checks {
            if state != Watched::Starting || c.ok {
                self.out.observer.probe(c);
            }
        }
        // The first time it answers (`Ready` with pid 0: not ours).
        if state == Watched::Running {
            self.out.report_startup(Startup::Ready { pid: 0 });
        }
        // Credentials it rejects will not start working by waiting: a
        // start fails at once, with the reason.
        if let Some(c) = round.checks.iter().find(|c| c.rejected) {
            self.out.report_startup(Startup::Failed {
                code: crate::model::Code::TemporalAuth,
                message: format!(
                    "Temporal at {} refused us: {}; check the API key (or client certificate) it is given",
                    self.client.grpc().endpoint().address,
                    c.reason
                ),
            });
        }
    }

    /// A check of its own schedule (the opt-in write check): shown, and
    /// the Temporal is not ready while it fails.
    fn observed(&mut self, state: Watched, check: &crate::health::Check) {
        self.status.send_modify(|s| {
            super::fold_checks(&mut s.health, std::slice::from_ref(check), unix_now_ms());
            s.ready = state == Watched::Running && s.gated().is_none();
        });
        self.out.observer.probe(check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_external_temporal_is_only_ever_marked() {
        let g = Some(Layer::Grpc);
        assert_eq!(step(Watched::Starting, g, &[]).0, Watched::Starting);
        assert_eq!(step(Watched::Starting, None, &[]).0, Watched::Running);
        assert_eq!(
            step(Watched::Running, g, &[]).0,
            Watched::Unhealthy { layer: Layer::Grpc }
        );
        assert_eq!(
            step(Watched::Unhealthy { layer: Layer::Grpc }, None, &[]).0,
            Watched::Running
        );
        assert_eq!(
            step(Watched::Running, None, &[Layer::Lock]).1,
            vec![Layer::Lock]
        );
    }
}
