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

/// A unit joining the stack: its supervisor, its handle, and a check of
/// its own schedule beside it, if any.
pub struct Joining {
    /// Its supervisor.
    pub runner: Runner,
    /// Its handle.
    pub handle: UnitHandle,
    /// Temporal's write check.
    pub side: Option<super::side::SideCheck>,
}

/// A change to a running stack: what start, reload and adoption apply.
pub enum StackChange {
    /// Supervise this unit too (it starts once its dependencies are
    /// ready), with a check of its own schedule beside it, if any.
    Add(Box<Joining>),
    /// Stop this unit and forget it; answered once it is gone.
    Remove(String, oneshot::Sender<()>),
}

/// The stack: its units come and go as [`StackChange`]s (a start adds
/// every unit of the plan).
pub struct Stack {
    heartbeat: Heartbeat,
    handle: Handle,
    changes: mpsc::Receiver<StackChange>,
}

impl Stack {
    /// An empty stack; units are added through its handle's `changes`.
    pub fn new(heartbeat: Heartbeat) -> Self {
        let (tx, changes) = mpsc::channel(64);
        let handle = Handle::new(Vec::new(), heartbeat.clone(), tx);
        Stack {
            heartbeat,
            handle,
            changes,
        }
    }

    /// Handles to every unit.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
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
        let mut st = Running::default();
        let (changed_tx, mut changed) = mpsc::unbounded_channel();
        tokio::pin!(halt);
        let mut serving: std::collections::BTreeMap<String, i32> =
            std::collections::BTreeMap::new();
        let how = loop {
            start_ready_dependents(&handle, &mut st.started).await;
            restart_followers(&handle, &mut serving).await;
            tokio::select! {
                biased;
                how = &mut halt => break how,
                Some(joined) = st.tasks.join_next() => {
                    let Ok((name, _)) = joined else {
                        // Not expected: each unit contains its panics.
                        tracing::error!("a unit's supervisor task failed; the rest of the stack carries on");
                        continue;
                    };
                    match st.removing.iter().position(|(n, _)| *n == name) {
                        Some(i) => {
                            let (_, done) = st.removing.swap_remove(i);
                            handle.forget(&name);
                            st.stops.retain(|(n, _)| *n != name);
                            st.started.remove(&name);
                            serving.remove(&name);
                            let _ = done.send(());
                        }
                        None => tracing::error!(unit = %name, "a unit's supervisor ended on its own; the rest of the stack carries on"),
                    }
                }
                Some(change) = self.changes.recv() => {
                    apply(change, &mut st, &handle, &changed_tx);
                }
                Some(()) = changed.recv() => {}
            }
        };
        // Units still queued to join (a stop right after a start or an
        // adoption) join now, so they are stopped or frozen with the rest.
        while let Ok(change) = self.changes.try_recv() {
            apply(change, &mut st, &handle, &changed_tx);
        }
        if how == Halt::Freeze {
            return freeze_all(&mut st.stops, &mut st.tasks).await;
        }
        stop_in_order(&handle, &mut st.stops, &mut st.tasks).await?;
        Ok(Ended::Stopped)
    }
}

/// The running stack's own bookkeeping.
#[derive(Default)]
struct Running {
    /// Each unit's stop sender.
    stops: Vec<(String, Option<oneshot::Sender<Halt>>)>,
    /// Each unit's supervisor task.
    tasks: Tasks,
    /// Units past waiting.
    started: BTreeSet<String>,
    /// Units being removed, and who waits for them to be gone.
    removing: Vec<(String, oneshot::Sender<()>)>,
    /// Checks of their own schedule, ended with the stack.
    sides: AbortOnDrop,
}

/// Carry out `change` on the running stack.
fn apply(
    change: StackChange,
    st: &mut Running,
    handle: &Handle,
    changed: &mpsc::UnboundedSender<()>,
) {
    match change {
        StackChange::Add(j) => {
            let Joining {
                runner,
                handle: h,
                side,
            } = *j;
            tracing::info!(unit = %h.name, "added");
            // A unit adopted from a previous daemon, past waiting, has
            // been started already.
            if h.status.borrow().state != StateName::Waiting {
                st.started.insert(h.name.clone());
            }
            handle.push(h.clone());
            if let Some(side) = side {
                st.sides.0.push(tokio::spawn(side.run(h.clone())));
            }
            launch(runner, &h, &mut st.stops, &mut st.tasks, changed);
        }
        StackChange::Remove(name, done) => {
            tracing::info!(unit = %name, "removing");
            let stop = st
                .stops
                .iter_mut()
                .find(|(n, _)| *n == name)
                .and_then(|(_, tx)| tx.take());
            match stop {
                Some(tx) => {
                    let _ = tx.send(Halt::Stop);
                    st.removing.push((name, done));
                }
                None => {
                    let _ = done.send(());
                }
            }
        }
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
#[derive(Default)]
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
        if u.links.depends_on.is_empty() || started.contains(&u.name) {
            continue;
        }
        let deps_ready = u
            .links
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
            .filter(|f| f.links.restart_with.contains(&u.name))
        {
            tracing::info!(unit = %f.name, dependency = %u.name, "its dependency restarted: restarting");
            let _ = f.commands.send(Command::Restart).await;
        }
    }
}

/// Stop the units in waves: a unit stops once every unit that must stop
/// before it (its dependents; for Temporal, every service: written out in
/// the plan) has.
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
                    remaining.contains(&u.name) && &u.name != *n && u.links.stops_before.contains(n)
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

/// A unit's first-start report, with its kind.
pub type FirstStart = (crate::model::Kind, oneshot::Receiver<Startup>);

/// `Ready` once every unit reported ready (with Temporal's pid), or the
/// first `Failed`, naming the service.
pub async fn combined(startups: Vec<FirstStart>) -> Startup {
    let mut set = JoinSet::new();
    for (kind, rx) in startups {
        set.spawn(async move { (kind, rx.await) });
    }
    let mut temporal_pid = 0;
    while let Some(joined) = set.join_next().await {
        let Ok((kind, report)) = joined else { continue };
        match report {
            Ok(Startup::Ready { pid }) if kind.is_temporal() => temporal_pid = pid,
            Ok(Startup::Ready { .. }) => {}
            Ok(failed @ Startup::Failed { .. }) => return failed,
            Err(_) => {}
        }
    }
    Startup::Ready { pid: temporal_pid }
}
