//! Supervision of the stack: Temporal and the declared services.
//!
//! - [`state`]: the pure decision core, `step(state, event, now)`.
//! - [`policy`]: restart delays (exponential, jittered, capped).
//! - [`unit`]: what one supervised process is (Temporal or a service).
//! - [`actor`]: the task that owns one unit's child, turns the kernel's
//!   exit event, probe rounds, timers and commands into events, and
//!   executes the actions `step` returns.
//! - [`external`]: an external Temporal (attach mode), only probed.
//! - [`stack`]: runs every unit, starts each once what it depends on is
//!   ready, and stops them in reverse order.
//! - [`registry`]: the one writer of the lock file and the PID file.
//! - [`Snapshot`]: what each unit publishes (via a `watch` channel) for
//!   `/status`, `status`, and readiness; [`Observer`] is how metrics and
//!   traces hear about the same moments.

pub mod actor;
pub mod external;
pub mod files;
pub mod frozen;
pub mod heartbeat;

pub mod registry;
pub mod side;
pub mod stack;
pub mod state;
pub mod unit;

use crate::health::Check;
use crate::model::ExitStatus;
use crate::model::Layer;
use crate::model::{RestartReason, StateName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

pub use actor::Actor;

/// How a unit's (or the whole stack's) first start went: what the daemon
/// reports to the CLI that launched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Ready (for the stack: every unit), with Temporal's pid (0 when it
    /// is not ours).
    Ready {
        /// The pid.
        pid: i32,
    },
    /// It failed; the CLI exits with `code`.
    Failed {
        /// The exit class.
        code: crate::model::Code,
        /// What happened.
        message: String,
    },
}

/// Why a unit's supervisor stops supervising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// Shut down: stop its process (whole group).
    Stop,
    /// Hand over to the next daemon: leave the process running and return
    /// the supervisor's state ([`frozen`]).
    Freeze,
}

/// Requests to one unit.
#[derive(Debug, Clone)]
pub enum Command {
    /// Its dependencies are ready: start (a waiting unit only).
    Start,
    /// Stop it gracefully and start a new one.
    Restart,
    /// A check that runs on its own schedule ([`side`]) has a verdict on
    /// process `pid` (0: a Temporal that is not ours).
    Observed {
        /// The process it checked.
        pid: i32,
        /// Its verdict.
        check: Box<Check>,
        /// Its policy: `failure_threshold` failures in a row restart the
        /// unit.
        restart: bool,
    },
    /// Its configuration changed (a reload): run this from now on, and
    /// replace the process (with a build first, and an overlap, where the
    /// unit says so).
    Reconfigure(Box<unit::Unit>),
}

/// How a unit is tied to the others of the stack (from its spec).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// What must be ready before it starts.
    pub depends_on: Vec<String>,
    /// Dependencies whose restart restarts it.
    pub restart_with: Vec<String>,
    /// Units that stop only after it has.
    pub stops_before: Vec<String>,
}

impl Links {
    /// The links `spec` declares.
    pub fn of(spec: &crate::plan::UnitSpec) -> Links {
        Links {
            depends_on: spec.depends_on.clone(),
            restart_with: spec.restart_with.clone(),
            stops_before: spec.stops_before.clone(),
        }
    }
}

/// A cloneable handle to one unit: read its latest snapshot, send it
/// commands.
#[derive(Clone)]
pub struct UnitHandle {
    /// The unit's name (`temporal` or the service's).
    pub name: String,
    /// What it is.
    pub kind: crate::model::Kind,
    /// How it is tied to the others.
    pub links: Links,
    /// Latest snapshot.
    pub status: watch::Receiver<Snapshot>,
    /// Command channel.
    pub commands: mpsc::Sender<Command>,
    /// What its log has written and dropped (read when asked).
    pub log: Arc<crate::disk::LogStats>,
    /// Its log file (none for an external Temporal).
    pub log_path: Option<std::path::PathBuf>,
}

impl UnitHandle {
    /// Send `()` on `tx` whenever `key` of its snapshot changes, until
    /// `tx`'s receiver goes. A snapshot changes with every health check
    /// (its times and latencies); whoever reacts to states or readiness
    /// across the stack would otherwise wake for each check of each unit
    /// and walk every unit: quadratic in the stack's size.
    pub fn forward_changes<K>(&self, key: fn(&Snapshot) -> K, tx: mpsc::UnboundedSender<()>)
    where
        K: PartialEq + Send + 'static,
    {
        let mut rx = self.status.clone();
        // Taken now, not when the task first runs: a change in between
        // must not become the starting point and go unreported.
        let mut last = key(&rx.borrow_and_update());
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let now = key(&rx.borrow_and_update());
                if now == last {
                    continue;
                }
                last = now;
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
    }
}

/// What every unit's supervisor works through: the PID file's writer,
/// the thread that spawns children, and the logs.
#[derive(Clone)]
pub struct Context {
    /// The lock and PID file's one writer.
    pub registry: registry::SharedRegistry,
    /// The daemon's spawning thread.
    pub spawner: crate::process::Spawner,
    /// The disk thread and the pumps' runtime.
    pub logs: crate::logfile::Logs,
    /// The supervisor loop's heartbeat (and how late its timers are).
    pub heartbeat: heartbeat::Heartbeat,
}

impl UnitHandle {
    /// Is the unit's supervisor still running?
    pub fn alive(&self) -> bool {
        // The supervisor owns the sender: once it is gone, it has ended.
        self.status.has_changed().is_ok()
    }
}

/// The stale-event name of a side check's verdict on an earlier process
/// ([`Command::Observed`]).
pub const OBSERVED: &str = "observed";

/// Handles to every unit of the stack, Temporal first, each after what it
/// depends on. Shared: a configuration reload adds and removes units, and
/// every holder sees it.
#[derive(Clone)]
pub struct Handle {
    units: Arc<std::sync::RwLock<Vec<UnitHandle>>>,
    /// The supervisor loop's heartbeat.
    pub heartbeat: heartbeat::Heartbeat,
    /// Changes to the stack (units added and removed).
    pub changes: mpsc::Sender<stack::StackChange>,
}

impl Handle {
    /// A handle over `units`, taking stack changes on `changes`.
    pub fn new(
        units: Vec<UnitHandle>,
        heartbeat: heartbeat::Heartbeat,
        changes: mpsc::Sender<stack::StackChange>,
    ) -> Handle {
        Handle {
            units: Arc::new(std::sync::RwLock::new(units)),
            heartbeat,
            changes,
        }
    }

    /// Every unit now, Temporal first.
    pub fn units(&self) -> Vec<UnitHandle> {
        self.units.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Add a unit at the end (it comes after what it depends on).
    pub(crate) fn push(&self, u: UnitHandle) {
        self.units
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(u);
    }

    /// Unit `name` is tied to the others by `links` from now on.
    pub(crate) fn set_links(&self, name: &str, links: Links) {
        let mut units = self.units.write().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = units.iter_mut().find(|u| u.name == name) {
            u.links = links;
        }
    }

    /// Forget unit `name` (it was removed and has stopped).
    pub(crate) fn forget(&self, name: &str) {
        self.units
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|u| u.name != name);
    }

    /// Is supervision alive: its loop beating, and every unit's
    /// supervisor running?
    pub fn alive(&self) -> bool {
        self.heartbeat.fresh() && self.units().iter().all(UnitHandle::alive)
    }

    /// Temporal's handle (every stack has Temporal, managed or attached).
    pub fn temporal(&self) -> Option<UnitHandle> {
        self.units
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|u| u.kind.is_temporal())
            .cloned()
    }

    /// Temporal's state (`stopped` if it had none).
    pub fn temporal_state(&self) -> crate::model::StateName {
        self.temporal()
            .map_or(crate::model::StateName::Stopped, |t| {
                t.status.borrow().state
            })
    }

    /// The unit called `name`.
    pub fn unit(&self, name: &str) -> Option<UnitHandle> {
        self.units
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|u| u.name == name)
            .cloned()
    }

    /// Every unit as the status document is built from it.
    pub fn views(&self) -> Vec<UnitView> {
        self.units()
            .iter()
            .map(|u| UnitView {
                name: u.name.clone(),
                kind: u.kind,
                snapshot: u.status.borrow().clone(),
                log: u.log_path.clone(),
                stats: u.log.clone(),
            })
            .collect()
    }

    /// Every unit's latest snapshot, by name, Temporal first.
    pub fn snapshots(&self) -> Vec<(String, Snapshot)> {
        self.units()
            .iter()
            .map(|u| (u.name.clone(), u.status.borrow().clone()))
            .collect()
    }
}

/// One unit as the status is built from it: its name, latest snapshot,
/// log file and log stats.
pub struct UnitView {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: crate::model::Kind,
    /// What its supervisor published last.
    pub snapshot: Snapshot,
    /// Its log file, when it has one.
    pub log: Option<std::path::PathBuf>,
    /// What its log wrote and dropped.
    pub stats: Arc<crate::disk::LogStats>,
}

/// What every unit's supervisor (an actor, or the watcher of an external
/// Temporal) is built with: the channel it publishes its snapshot on, the
/// one it takes commands from, and the handle others hold.
pub(crate) fn unit_channels(
    spec: &crate::plan::UnitSpec,
    first: Snapshot,
    log: Arc<crate::disk::LogStats>,
    log_path: Option<std::path::PathBuf>,
) -> (watch::Sender<Snapshot>, mpsc::Receiver<Command>, UnitHandle) {
    let (status, status_rx) = watch::channel(first);
    let (commands_tx, commands) = mpsc::channel(8);
    let handle = UnitHandle {
        name: spec.name.clone(),
        kind: spec.kind,
        links: Links::of(spec),
        status: status_rx,
        commands: commands_tx,
        log,
        log_path,
    };
    (status, commands, handle)
}

/// Fold a round's `checks` into a unit's health layers (at `now_ms`),
/// counting each layer's failures in a row.
pub(crate) fn fold_checks(
    health: &mut BTreeMap<Layer, LayerStatus>,
    checks: &[Check],
    now_ms: u64,
) {
    for c in checks {
        let failures = health.get(&c.layer).map_or(0, |l| l.consecutive_failures);
        health.insert(
            c.layer,
            LayerStatus {
                ok: c.ok,
                reason: c.reason.clone(),
                latency_ms: c.latency.as_secs_f64() * 1000.0,
                consecutive_failures: if c.ok { 0 } else { failures + 1 },
                last_checked_unix_ms: now_ms,
                queue: c.queue.clone(),
            },
        );
    }
}

/// Hooks for metrics and traces; every method defaults to nothing.
pub trait Observer: Send + Sync {
    /// The state changed.
    fn state_changed(&self, _from: StateName, _to: StateName) {}
    /// Supervision continues, after an upgrade, in `state` with process
    /// `pid`: gauges show it again (counters were carried).
    fn adopted(&self, _state: StateName, _pid: Option<i32>) {}
    /// One layer was checked.
    fn probe(&self, _check: &Check) {}
    /// The next checks' timeout (the detector's threshold).
    fn check_timeout(&self, _timeout: Duration) {}
    /// A timed-out check was asked again instead of counted.
    fn check_retried(&self, _why: crate::health::Retry) {}
    /// A new Temporal was spawned.
    fn spawned(&self, _pid: i32, _attempt: u32) {}
    /// Temporal exited (whatever the cause).
    fn exited(&self, _pid: i32, _status: ExitStatus) {}
    /// A restart was decided.
    fn restart(&self, _info: &RestartInfo) {}
    /// Temporal answered its health check after a spawn: `start` is spawn →
    /// serving; `recovery` is failure detected → serving, after a restart.
    fn serving(&self, _pid: i32, _start: Duration, _recovery: Option<Duration>) {}
    /// An event about an earlier process or backoff was ignored.
    fn stale(&self, _event: &'static str) {}
    /// The unit's supervisor failed (a bug) and was rebuilt.
    fn internal_error(&self) {}
    /// Supervision is shutting down.
    fn stopping(&self) {}
    /// Supervision is over (Temporal's group is gone).
    fn stopped(&self) {}
}

/// Where a unit's runner reports: its observer (metrics, traces) and, on
/// a fresh start (not one adopted in an upgrade), whoever waits to hear
/// how the first start went. Both kinds of runner take one.
pub struct Outlet {
    /// Told of every state change, check, spawn, exit and restart.
    pub observer: Arc<dyn Observer>,
    startup: Option<oneshot::Sender<Startup>>,
}

impl Outlet {
    /// Reports to `observer`, nobody waits for the startup.
    pub fn new(observer: Arc<dyn Observer>) -> Self {
        Outlet {
            observer,
            startup: None,
        }
    }

    /// Be told how the first start goes: the first `Ready` or `Failed`.
    pub fn watch_startup(&mut self) -> oneshot::Receiver<Startup> {
        let (tx, rx) = oneshot::channel();
        self.startup = Some(tx);
        rx
    }

    /// Someone still waits to hear how the first start went.
    pub fn awaits_startup(&self) -> bool {
        self.startup.is_some()
    }

    /// Tell the waiter, once.
    pub fn report_startup(&mut self, outcome: Startup) {
        if let Some(tx) = self.startup.take() {
            let _ = tx.send(outcome);
        }
    }
}

/// What is known when a restart is decided.
#[derive(Debug, Clone)]
pub struct RestartInfo {
    /// Why.
    pub reason: RestartReason,
    /// Consecutive failures, this one included.
    pub attempt: u32,
    /// Delay before the respawn.
    pub backoff: Duration,
    /// kind=exit: exit notification → decision; kind=hang: first failed
    /// health check → decision.
    pub detection: Option<Duration>,
}

/// Several observers as one (metrics and spans).
pub struct Observers(pub Vec<Arc<dyn Observer>>);

impl Observer for Observers {
    fn state_changed(&self, from: StateName, to: StateName) {
        self.0.iter().for_each(|o| o.state_changed(from, to));
    }
    fn adopted(&self, state: StateName, pid: Option<i32>) {
        self.0.iter().for_each(|o| o.adopted(state, pid));
    }
    fn probe(&self, check: &Check) {
        self.0.iter().for_each(|o| o.probe(check));
    }
    fn check_timeout(&self, timeout: Duration) {
        self.0.iter().for_each(|o| o.check_timeout(timeout));
    }
    fn check_retried(&self, why: crate::health::Retry) {
        self.0.iter().for_each(|o| o.check_retried(why));
    }
    fn spawned(&self, pid: i32, attempt: u32) {
        self.0.iter().for_each(|o| o.spawned(pid, attempt));
    }
    fn exited(&self, pid: i32, status: ExitStatus) {
        self.0.iter().for_each(|o| o.exited(pid, status));
    }
    fn restart(&self, info: &RestartInfo) {
        self.0.iter().for_each(|o| o.restart(info));
    }
    fn serving(&self, pid: i32, start: Duration, recovery: Option<Duration>) {
        self.0.iter().for_each(|o| o.serving(pid, start, recovery));
    }
    fn stale(&self, event: &'static str) {
        self.0.iter().for_each(|o| o.stale(event));
    }
    fn internal_error(&self) {
        self.0.iter().for_each(|o| o.internal_error());
    }
    fn stopping(&self) {
        self.0.iter().for_each(|o| o.stopping());
    }
    fn stopped(&self) {
        self.0.iter().for_each(|o| o.stopped());
    }
}

/// The running process as its supervisor sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessInfo {
    /// Pid.
    pub pid: i32,
    /// Process group.
    pub pgid: i32,
    /// Start time in clock ticks since boot.
    pub start_time_ticks: u64,
    /// Executable, once known.
    pub exe: Option<String>,
    /// When it was spawned (Unix ms).
    pub spawned_at_unix_ms: u64,
    /// When it first answered SERVING (Unix ms).
    pub serving_since_unix_ms: Option<u64>,
}

/// One layer's latest result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerStatus {
    /// Passed last time it ran.
    pub ok: bool,
    /// What was seen.
    pub reason: String,
    /// How long it took (ms).
    pub latency_ms: f64,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// When it last ran (Unix ms).
    pub last_checked_unix_ms: u64,
    /// A task-queue check's view of the service's workers.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<crate::health::temporal::QueueSeen>,
}

/// Restart bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Restarts {
    /// Restarts since the daemon started.
    pub count: u64,
    /// Failures in a row (0 once Temporal has served stably); drives backoff.
    pub consecutive_failures: u32,
    /// Why the last one happened.
    pub last_reason: Option<RestartReason>,
    /// How the last Temporal ended.
    pub last_exit: Option<ExitStatus>,
    /// Human form of `last_exit`.
    pub last_exit_description: Option<String>,
    /// When it ended (Unix ms).
    pub last_exit_at_unix_ms: Option<u64>,
    /// Detection latency of the last hang (first failed probe → decision), ms.
    pub last_detection_ms: Option<f64>,
    /// Failure detected → serving again, ms, for the last recovery.
    pub last_recovery_ms: Option<f64>,
    /// The last [`RECENT_RESTARTS`] restarts, newest first.
    #[serde(default)]
    pub recent: std::collections::VecDeque<RestartRecord>,
}

/// How many restarts `restarts.recent` keeps.
pub const RECENT_RESTARTS: usize = 20;

/// One restart, for the history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RestartRecord {
    /// When it was decided (Unix ms).
    pub at_unix_ms: u64,
    /// Why.
    pub reason: RestartReason,
    /// How the process ended, when it did on its own or was killed.
    pub exit: Option<ExitStatus>,
    /// The process that failed.
    pub pid: Option<i32>,
    /// Detection latency, ms (see `last_detection_ms`).
    pub detection_ms: Option<f64>,
    /// Failure detected → ready again, ms, once it is.
    pub recovery_ms: Option<f64>,
}

impl Restarts {
    /// Remember a restart, newest first, keeping [`RECENT_RESTARTS`].
    pub fn remember(&mut self, record: RestartRecord) {
        self.recent.push_front(record);
        self.recent.truncate(RECENT_RESTARTS);
    }

    /// The newest restart has recovered after `ms`.
    pub fn recovered(&mut self, ms: f64) {
        if let Some(r) = self.recent.front_mut()
            && r.recovery_ms.is_none()
        {
            r.recovery_ms = Some(ms);
        }
    }
}

/// Pending backoff.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backoff {
    /// Consecutive failures.
    pub attempt: u32,
    /// Next spawn (Unix ms).
    pub next_attempt_at_unix_ms: u64,
    /// Delay chosen, ms.
    pub delay_ms: f64,
}

/// Everything the supervisor knows, published after every event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// Current state.
    pub state: StateName,
    /// Serving (readiness)?
    pub ready: bool,
    /// The current process, if one runs.
    pub process: Option<ProcessInfo>,
    /// Health layers by name.
    pub health: BTreeMap<Layer, LayerStatus>,
    /// Restarts.
    pub restarts: Restarts,
    /// Pending backoff.
    pub backoff: Option<Backoff>,
    /// Last error worth showing (spawn failure, port conflict, ...).
    pub last_error: Option<String>,
    /// Its build: the last one's outcome, or the one running.
    #[serde(default)]
    pub build: Option<BuildStatus>,
    /// The other process of an overlap reload: the new one getting
    /// ready, or the old one stopping.
    #[serde(default)]
    pub overlap: Option<Overlap>,
    /// What needs attention but does not make it not ready (e.g. files
    /// that cannot be watched, a reload whose new process failed).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The timeout its checks have now (ms): adaptive, or the fixed one.
    #[serde(default)]
    pub check_timeout_ms: Option<f64>,
}

/// A build of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildStatus {
    /// `running`, `ok` or `failed`.
    pub state: String,
    /// What started it: `start`, or the file that changed.
    pub trigger: String,
    /// When it started (Unix ms).
    pub started_at_unix_ms: u64,
    /// How long it took, once done.
    pub duration_ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The second process of an overlap reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overlap {
    /// Its pid.
    pub pid: i32,
    /// `starting` (the new one, not ready yet) or `stopping` (the old one).
    pub role: String,
    /// Since (Unix ms).
    pub since_unix_ms: u64,
}

impl Snapshot {
    /// Why it is not ready, in a few words: a layer that keeps it from
    /// being ready, else its first failing layer, else its state.
    pub fn not_ready_reason(&self) -> String {
        if let Some(g) = self.gated() {
            return g;
        }
        match self.health.iter().find(|(l, s)| l.counts() && !s.ok) {
            Some((l, s)) => format!("{}: {}", l.as_str(), s.reason),
            None => match &self.last_error {
                Some(e) => format!("{}: {e}", self.state.as_str()),
                None => self.state.as_str().to_string(),
            },
        }
    }

    /// A layer that keeps the unit from being ready (while it runs on)
    /// failed its last check: the reason.
    pub fn gated(&self) -> Option<String> {
        self.health
            .iter()
            .find(|(l, s)| l.gates_ready() && !s.ok)
            .map(|(l, s)| format!("{}: {}", l.as_str(), s.reason))
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            state: StateName::Stopped,
            ready: false,
            process: None,
            health: BTreeMap::new(),
            restarts: Restarts::default(),
            backoff: None,
            last_error: None,
            build: None,
            overlap: None,
            notes: Vec::new(),
            check_timeout_ms: None,
        }
    }
}
