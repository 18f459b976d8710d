//! The stack: every unit's supervisor (Temporal's first, then the
//! services, each after what it depends on) on one runtime. A unit that
//! depends on others starts once every one of them is ready, and only
//! then: a dependency's later restart does not restart it (workers
//! reconnect on their own). At shutdown, units stop in reverse dependency
//! order (every service before Temporal), each wave waiting for the one
//! before it to be gone. The first start is reported once every unit is
//! ready, or as soon as one fails.

use super::actor::Actor;
use super::external::Watcher;
use super::frozen::FrozenUnit;
use super::heartbeat::Heartbeat;
use crate::model::StateName;

use super::Startup;
use super::{Command, Halt, Handle, UnitHandle};
use crate::model::TEMPORAL;
use std::collections::BTreeSet;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// One unit's supervisor, before it runs.
pub enum Runner {
    /// A process of ours.
    Managed(Box<Actor>),
    /// An external Temporal.
    Attached(Watcher),
}

impl Runner {
    async fn run(self, halt: oneshot::Receiver<Halt>) -> Option<FrozenUnit> {
        let halt = async move { halt.await.unwrap_or(Halt::Stop) };
        match self {
            Runner::Managed(actor) => actor.run(halt).await,
            Runner::Attached(watcher) => watcher.run(halt).await,
        }
    }
}

/// Why supervision ended badly.
#[derive(Debug, thiserror::Error)]
pub enum SupervisionError {
    /// A unit's supervisor panicked (a bug).
    #[error("a supervisor panicked: {0}")]
    Panicked(String),
    /// A unit's supervisor had already ended when an upgrade froze it.
    #[error("{0} had stopped before the handover")]
    StoppedEarly(String),
    /// Supervision stopped when asked to freeze (for an upgrade).
    #[error("the supervisor stopped instead of handing over")]
    NotFrozen,
    /// The supervisor's thread is gone.
    #[error("the supervisor thread died")]
    ThreadDied,
}

/// How the stack's supervision ended.
#[derive(Debug)]
pub enum Ended {
    /// Every unit stopped (processes gone).
    Stopped,
    /// Every unit frozen for a handover (processes running), by name, in
    /// the stack's order.
    Frozen(Vec<(String, FrozenUnit)>),
}

/// A change to a running stack (a configuration reload).
pub enum StackChange {
    /// Supervise this unit too (it starts once its dependencies are
    /// ready).
    Add(Box<Runner>, UnitHandle),
    /// Stop this unit and forget it; answered once it is gone.
    Remove(String, oneshot::Sender<()>),
}

/// Every unit of the stack, ready to run.
pub struct Stack {
    members: Vec<(Runner, UnitHandle)>,
    startups: Vec<(String, oneshot::Receiver<Startup>)>,
    sides: Vec<(String, super::side::SideCheck)>,
    heartbeat: Heartbeat,
    handle: Handle,
    changes: mpsc::Receiver<StackChange>,
}

impl Stack {
    /// A stack of `members`, Temporal first, each after what it depends
    /// on, with each unit's first-start report.
    pub fn new(
        members: Vec<(Runner, UnitHandle)>,
        startups: Vec<(String, oneshot::Receiver<Startup>)>,
        heartbeat: Heartbeat,
    ) -> Self {
        let (tx, changes) = mpsc::channel(16);
        let handle = Handle::new(
            members.iter().map(|(_, h)| h.clone()).collect(),
            heartbeat.clone(),
            tx,
        );
        Stack {
            members,
            startups,
            sides: Vec::new(),
            heartbeat,
            handle,
            changes,
        }
    }

    /// Also run `side` beside unit `name`'s rounds.
    pub fn with_side(mut self, name: &str, side: super::side::SideCheck) -> Self {
        self.sides.push((name.to_string(), side));
        self
    }

    /// Handles to every unit.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// How the first start went, for the whole stack: `Ready` (with
    /// Temporal's pid) once every unit is ready, or the first `Failed`.
    pub fn startup(&mut self) -> oneshot::Receiver<Startup> {
        let (tx, rx) = oneshot::channel();
        let startups = std::mem::take(&mut self.startups);
        tokio::spawn(async move {
            let _ = tx.send(combined(startups).await);
        });
        rx
    }

    /// Supervise until `halt` resolves; then stop every unit, in reverse
    /// dependency order ([`Halt::Stop`]), or freeze them all for a
    /// handover ([`Halt::Freeze`]). Nothing a unit does ends it: each
    /// unit's supervisor contains its own failures.
    pub async fn run(
        mut self,
        halt: impl Future<Output = Halt>,
    ) -> Result<Ended, SupervisionError> {
        self.heartbeat.spawn();
        let handle = self.handle();
        let sides: Vec<tokio::task::JoinHandle<()>> = self
            .sides
            .into_iter()
            .filter_map(|(name, side)| {
                let unit = handle.unit(&name)?.clone();
                Some(tokio::spawn(side.run(unit)))
            })
            .collect();
        let _abort_sides = AbortOnDrop(sides);
        let mut stops = Vec::new();
        let mut tasks = JoinSet::new();
        let (changed_tx, mut changed) = mpsc::unbounded_channel();
        for (runner, h) in std::mem::take(&mut self.members) {
            launch(runner, &h, &mut stops, &mut tasks, &changed_tx);
        }
        tokio::pin!(halt);
        // Units adopted from a previous daemon that are past waiting have
        // been started already.
        let mut started: BTreeSet<String> = handle
            .units()
            .iter()
            .filter(|u| u.status.borrow().state != StateName::Waiting)
            .map(|u| u.name.clone())
            .collect();
        let mut serving: std::collections::BTreeMap<String, i32> =
            std::collections::BTreeMap::new();
        // Units being removed, and who waits for them to be gone.
        let mut removing: Vec<(String, oneshot::Sender<()>)> = Vec::new();
        let how = loop {
            start_ready_dependents(&handle, &mut started).await;
            restart_followers(&handle, &mut serving).await;
            tokio::select! {
                biased;
                how = &mut halt => break how,
                Some(joined) = tasks.join_next() => {
                    let Ok((name, _)) = joined else {
                        // Not expected: each unit contains its panics.
                        tracing::error!("a unit's supervisor task failed; the rest of the stack carries on");
                        continue;
                    };
                    match removing.iter().position(|(n, _)| *n == name) {
                        Some(i) => {
                            let (_, done) = removing.swap_remove(i);
                            handle.forget(&name);
                            stops.retain(|(n, _)| *n != name);
                            started.remove(&name);
                            serving.remove(&name);
                            let _ = done.send(());
                        }
                        None => tracing::error!(unit = %name, "a unit's supervisor ended on its own; the rest of the stack carries on"),
                    }
                }
                Some(change) = self.changes.recv() => match change {
                    StackChange::Add(runner, h) => {
                        tracing::info!(unit = %h.name, "added");
                        handle.push(h.clone());
                        launch(*runner, &h, &mut stops, &mut tasks, &changed_tx);
                    }
                    StackChange::Remove(name, done) => {
                        tracing::info!(unit = %name, "removing");
                        match stops.iter_mut().find(|(n, _)| *n == name).and_then(|(_, tx)| tx.take()) {
                            Some(tx) => {
                                let _ = tx.send(Halt::Stop);
                                removing.push((name, done));
                            }
                            None => {
                                let _ = done.send(());
                            }
                        }
                    }
                },
                Some(()) = changed.recv() => {}
            }
        };
        if how == Halt::Freeze {
            return freeze_all(&mut stops, &mut tasks).await;
        }
        stop_in_order(&handle, &mut stops, &mut tasks).await?;
        Ok(Ended::Stopped)
    }
}

/// Run `runner` as one of the stack's units, its stop sender in `stops`,
/// its status changes on `changed`.
fn launch(
    runner: Runner,
    h: &UnitHandle,
    stops: &mut Vec<(String, Option<oneshot::Sender<Halt>>)>,
    tasks: &mut Tasks,
    changed: &mpsc::UnboundedSender<()>,
) {
    let (stop_tx, stop_rx) = oneshot::channel();
    stops.push((h.name.clone(), Some(stop_tx)));
    let name = h.name.clone();
    tasks.spawn(async move { (name, runner.run(stop_rx).await) });
    // What the loop acts on: readiness (dependents start, followers
    // restart on a new ready pid) and the state.
    h.forward_changes(
        |s| (s.state, s.ready, s.process.as_ref().map(|p| p.pid)),
        changed.clone(),
    );
}

/// Side checks end with supervision, however it ends.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

type Stops = [(String, Option<oneshot::Sender<Halt>>)];
type Tasks = JoinSet<(String, Option<FrozenUnit>)>;

/// Freeze every unit at once; each hands back its state.
async fn freeze_all(stops: &mut Stops, tasks: &mut Tasks) -> Result<Ended, SupervisionError> {
    let order: Vec<String> = stops.iter().map(|(n, _)| n.clone()).collect();
    for (_, tx) in stops.iter_mut() {
        if let Some(tx) = tx.take() {
            let _ = tx.send(Halt::Freeze);
        }
    }
    let mut frozen = std::collections::BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, Some(f))) => {
                frozen.insert(name, f);
            }
            Ok((name, None)) => return Err(SupervisionError::StoppedEarly(name)),
            Err(e) => return Err(SupervisionError::Panicked(e.to_string())),
        }
    }
    Ok(Ended::Frozen(
        order
            .into_iter()
            .filter_map(|n| frozen.remove(&n).map(|f| (n, f)))
            .collect(),
    ))
}

/// Send `Start` to every waiting unit whose dependencies are all ready.
async fn start_ready_dependents(handle: &Handle, started: &mut BTreeSet<String>) {
    for u in &handle.units() {
        if u.depends_on.is_empty() || started.contains(&u.name) {
            continue;
        }
        let deps_ready = u
            .depends_on
            .iter()
            .all(|d| handle.unit(d).is_some_and(|h| h.status.borrow().ready));
        if deps_ready {
            tracing::info!(unit = %u.name, "dependencies ready: starting");
            let _ = u.commands.send(Command::Start).await;
            started.insert(u.name.clone());
        }
    }
}

/// Restart the units that asked to follow a dependency's restarts
/// (`depends_on = [{ name, restart = true }]`) once it serves again with a
/// new process. `serving` remembers each unit's last ready pid.
async fn restart_followers(handle: &Handle, serving: &mut std::collections::BTreeMap<String, i32>) {
    for u in &handle.units() {
        let (ready, pid) = {
            let s = u.status.borrow();
            (s.ready, s.process.as_ref().map(|p| p.pid))
        };
        let Some(pid) = pid.filter(|_| ready) else {
            continue;
        };
        let before = serving.insert(u.name.clone(), pid);
        if before.is_none_or(|b| b == pid) {
            continue;
        }
        for f in handle
            .units()
            .iter()
            .filter(|f| f.restart_with.contains(&u.name))
        {
            tracing::info!(unit = %f.name, dependency = %u.name, "its dependency restarted: restarting");
            let _ = f.commands.send(Command::Restart).await;
        }
    }
}

/// Stop the units in waves: a unit stops once no unit that is still
/// running depends on it, and Temporal only after every service.
async fn stop_in_order(
    handle: &Handle,
    stops: &mut Stops,
    tasks: &mut Tasks,
) -> Result<(), SupervisionError> {
    let units = handle.units();
    let mut remaining: BTreeSet<String> = units.iter().map(|u| u.name.clone()).collect();
    let mut outcome = Ok(());
    while !remaining.is_empty() {
        let wave: Vec<String> = remaining
            .iter()
            .filter(|n| {
                !units.iter().any(|u| {
                    remaining.contains(&u.name)
                        && &u.name != *n
                        && (u.depends_on.contains(n) || (*n == TEMPORAL))
                })
            })
            .cloned()
            .collect();
        for name in &wave {
            tracing::info!(unit = %name, "stopping");
            if let Some((_, tx)) = stops.iter_mut().find(|(n, _)| n == name)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(Halt::Stop);
            }
        }
        let mut left: BTreeSet<String> = wave.iter().cloned().collect();
        // Units that ended before the shutdown are done already.
        left.retain(|n| handle.unit(n).is_some_and(|u| u.alive()));
        while !left.is_empty() {
            match tasks.join_next().await {
                Some(Ok((name, _))) => {
                    left.remove(&name);
                    remaining.remove(&name);
                }
                Some(Err(e)) => {
                    outcome = Err(SupervisionError::Panicked(e.to_string()));
                    break;
                }
                None => break,
            }
        }
        for name in wave {
            remaining.remove(&name);
        }
    }
    outcome
}

/// `Ready` once every unit reported ready (with Temporal's pid), or the
/// first `Failed`, naming the service.
async fn combined(startups: Vec<(String, oneshot::Receiver<Startup>)>) -> Startup {
    let mut set = JoinSet::new();
    for (name, rx) in startups {
        set.spawn(async move { (name, rx.await) });
    }
    let mut temporal_pid = 0;
    while let Some(joined) = set.join_next().await {
        let Ok((name, report)) = joined else { continue };
        match report {
            Ok(Startup::Ready { pid }) if name == TEMPORAL => temporal_pid = pid,
            Ok(Startup::Ready { .. }) => {}
            Ok(failed @ Startup::Failed { .. }) => return failed,
            Err(_) => {}
        }
    }
    Startup::Ready { pid: temporal_pid }
}
