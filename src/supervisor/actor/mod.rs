//! The supervisor actor: owns the Temporal child and executes what
//! [`step`] decides. Every input is an event source in one `select!`:
//! shutdown (first, so it wins), the child's exit (a pidfd event, not a
//! poll), the grace-period and backoff timers, manual commands, and the
//! in-flight probe round. Nothing here decides *what* to do next.

use super::registry::SharedRegistry;
use super::state::{Action, Event, Rules, State, StateName, step};
use super::{Backoff, Command, Handle, NoObserver, Observer, Snapshot, TemporalInfo};
use crate::config::Config;
use crate::exit::Code;
use crate::health::Round;
use crate::logfile::{self, RotatingLog};
use crate::process::{self, Identity, SpawnSpec, Spawned, Spawner, ports};
use crate::startup::Report;
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;

mod probing;

/// Everything the actor needs to run Temporal.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The Temporal command.
    pub spec: SpawnSpec,
    /// Frontend gRPC address (probed).
    pub frontend: SocketAddr,
    /// Every address Temporal will bind (frontend, UI): checked free
    /// before each spawn.
    pub binds: Vec<SocketAddr>,
    /// Probe period while serving.
    pub health_interval: Duration,
    /// Probe period from spawn until first ready.
    pub startup_interval: Duration,
    /// Timeout of the port and gRPC layers.
    pub health_timeout: Duration,
    /// SIGTERM → SIGKILL grace.
    pub stop_grace: Duration,
    /// State-machine rules.
    pub rules: Rules,
    /// Temporal log path.
    pub log_path: PathBuf,
    /// Rotate the log past this size.
    pub log_max_bytes: u64,
}

impl SupervisorConfig {
    /// How to supervise the Temporal of `cfg`, run from `bin` under `rules`.
    pub fn temporal(cfg: &Config, bin: &Path, rules: Rules) -> Self {
        SupervisorConfig {
            spec: SpawnSpec {
                program: bin.to_path_buf(),
                args: cfg.temporal_args(),
            },
            frontend: cfg.frontend(),
            binds: cfg.temporal_binds().into_iter().map(|(a, ..)| a).collect(),
            health_interval: cfg.health_interval,
            startup_interval: STARTUP_PROBE_INTERVAL,
            health_timeout: cfg.health_timeout,
            stop_grace: cfg.stop_grace,
            rules,
            log_path: cfg.home.temporal_log(),
            log_max_bytes: logfile::DEFAULT_MAX_BYTES,
        }
    }
}

/// Probe period from spawn until first ready: short, so a restart is seen
/// serving within milliseconds of Temporal being able to answer.
pub const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// The running child and what we know of it.
struct Live {
    child: Spawned,
    identity: Identity,
}

type ProbeFuture = Pin<Box<dyn Future<Output = Round> + Send>>;

/// The supervisor task. Create with [`Actor::new`], run with [`Actor::run`].
pub struct Actor {
    cfg: SupervisorConfig,
    registry: SharedRegistry,
    observer: Arc<dyn Observer>,
    spawner: Spawner,
    log: Option<Arc<Mutex<RotatingLog>>>,
    status: watch::Sender<Snapshot>,
    commands: mpsc::Receiver<Command>,
    startup: Option<oneshot::Sender<Report>>,
    /// The startup outcome, sent by `publish` once the snapshot agrees.
    startup_outcome: Option<Report>,
    // Runtime state.
    state: State,
    live: Option<Live>,
    wake: Option<Instant>,
    kill_at: Option<Instant>,
    next_probe: Instant,
    probe: Option<ProbeFuture>,
    probe_started: Instant,
    exit_seen_at: Option<Instant>,
    failure_seen_at: Option<Instant>,
    first_failed_probe: Option<Instant>,
    epoch: (Instant, SystemTime),
    snap: Snapshot,
    finished: bool,
}

impl Actor {
    /// A new actor (not yet running) and the handle to talk to it.
    pub fn new(cfg: SupervisorConfig, registry: SharedRegistry) -> (Self, Handle) {
        let (status, status_rx) = watch::channel(Snapshot::default());
        let (cmd_tx, commands) = mpsc::channel(8);
        let actor = Actor {
            cfg,
            registry,
            observer: Arc::new(NoObserver),
            spawner: Spawner::new(),
            log: None,
            status,
            commands,
            startup: None,
            startup_outcome: None,
            state: State::Stopped,
            live: None,
            wake: None,
            kill_at: None,
            next_probe: Instant::now(),
            probe: None,
            probe_started: Instant::now(),
            exit_seen_at: None,
            failure_seen_at: None,
            first_failed_probe: None,
            epoch: (Instant::now(), SystemTime::now()),
            snap: Snapshot::default(),
            finished: false,
        };
        let handle = Handle {
            status: status_rx,
            commands: cmd_tx,
        };
        (actor, handle)
    }

    /// Report metrics and traces to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// How the first start went: the first `Ready` or `Failed` report.
    pub fn notify_startup(&mut self) -> oneshot::Receiver<Report> {
        let (tx, rx) = oneshot::channel();
        self.startup = Some(tx);
        rx
    }

    /// Supervise until `shutdown` resolves; then stop Temporal (whole
    /// group) and return. Errors only on an illegal transition (a bug).
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), super::state::Illegal> {
        self.log = match RotatingLog::open(&self.cfg.log_path, self.cfg.log_max_bytes) {
            Ok(l) => Some(Arc::new(Mutex::new(l))),
            Err(e) => {
                tracing::warn!(path = %self.cfg.log_path.display(), error = %e, "cannot open Temporal log; its output is discarded");
                None
            }
        };
        tokio::pin!(shutdown);
        let mut shutdown_seen = false;
        let mut pending = vec![Event::Start];
        loop {
            for ev in std::mem::take(&mut pending) {
                self.handle(ev, &mut pending).await?;
            }
            if !pending.is_empty() {
                continue;
            }
            self.publish();
            if self.finished {
                return Ok(());
            }
            let probing_due = self.probe.is_none() && self.wants_probes();
            let child_running = self
                .live
                .as_ref()
                .is_some_and(|l| l.child.exit_status().is_none());
            tokio::select! {
                biased;
                () = &mut shutdown, if !shutdown_seen => {
                    shutdown_seen = true;
                    self.probe = None; // cancel an in-flight probe at once
                    pending.push(Event::Shutdown);
                }
                status = wait_exit(&mut self.live), if child_running => {
                    self.exit_seen_at = Some(Instant::now());
                    match status {
                        Ok(status) => pending.push(Event::Exited { status }),
                        Err(e) => tracing::error!(error = %e, "waiting for Temporal failed"),
                    }
                }
                () = sleep_opt(self.kill_at) => {
                    self.kill_at = None;
                    self.signal(Signal::SIGKILL, "grace period over");
                }
                () = sleep_opt(self.wake) => {
                    self.wake = None;
                    pending.push(Event::Wake);
                }
                Some(Command::Restart) = self.commands.recv() => pending.push(Event::RestartRequested),
                round = poll_opt(&mut self.probe) => {
                    self.probe = None;
                    // Rounds start on a fixed cadence: a slow (timing-out)
                    // round does not push the next one back.
                    self.next_probe = (self.probe_started + self.probe_interval()).max(Instant::now());
                    pending.extend(self.absorb(round));
                }
                () = sleep_until(self.next_probe.into()), if probing_due => {
                    self.probe_started = Instant::now();
                    self.probe = self.start_round();
                }
            }
        }
    }

    async fn handle(
        &mut self,
        ev: Event,
        pending: &mut Vec<Event>,
    ) -> Result<(), super::state::Illegal> {
        let now = Instant::now();
        let from = self.state.name();
        tracing::debug!(state = ?from, event = ?ev, "event");
        let exited = matches!(ev, Event::Exited { .. });
        if let Event::Exited { status } = ev {
            self.on_exit(status, now);
        }
        let (next, actions) = step(&self.state, ev, now, &self.cfg.rules)?;
        self.state = next;
        if self.state.name() != from {
            tracing::info!(from = from.as_str(), to = self.state.name().as_str(), pid = ?self.state.pid(), "state");
            self.observer.state_changed(from, self.state.name());
        }
        if exited && from == StateName::Starting && self.startup.is_some() {
            let why = self
                .snap
                .restarts
                .last_exit_description
                .clone()
                .unwrap_or_default();
            self.report_startup(Report::Failed {
                code: Code::StartFailed,
                message: format!("Temporal exited during startup ({why})"),
            });
        }
        for action in actions {
            self.execute(action, now, pending).await;
        }
        Ok(())
    }

    async fn execute(&mut self, action: Action, now: Instant, pending: &mut Vec<Event>) {
        match action {
            Action::Spawn => pending.push(self.spawn().await),
            Action::Kill => self.signal(Signal::SIGKILL, "restart"),
            Action::Terminate => {
                if self.state.name() == StateName::Stopping {
                    self.observer.stopping();
                }
                self.signal(Signal::SIGTERM, "terminate");
                self.signal(Signal::SIGCONT, "terminate");
                self.kill_at = Some(now + self.cfg.stop_grace);
            }
            Action::ReapGroup => self.reap_group().await,
            Action::WakeAt(t) => {
                self.wake = Some(t);
                self.snap.backoff = match self.state {
                    State::Backoff { attempt, until } | State::CrashLoop { attempt, until } => {
                        Some(Backoff {
                            attempt,
                            next_attempt_at_unix_ms: self.unix_ms(until),
                            delay_ms: ms(until.saturating_duration_since(now)),
                        })
                    }
                    _ => None,
                };
            }
            Action::Ready => self.on_ready(now),
            Action::RecordRestart {
                reason,
                detected_at,
            } => {
                let hang = matches!(reason, super::state::RestartReason::Unhealthy { .. });
                let detection = if hang {
                    self.first_failed_probe
                        .map(|t| detected_at.saturating_duration_since(t))
                } else {
                    self.exit_seen_at
                        .take()
                        .map(|t| now.saturating_duration_since(t))
                };
                let delay = self
                    .wake
                    .map(|w| w.saturating_duration_since(now))
                    .unwrap_or_default();
                self.failure_seen_at = Some(detected_at);
                let r = &mut self.snap.restarts;
                r.count += 1;
                r.last_detection_ms = detection.map(ms).or(r.last_detection_ms);
                r.last_reason = Some(reason.clone());
                tracing::warn!(reason = reason.label(), detail = ?reason, count = r.count, "restarting Temporal");
                self.observer.restart(&super::RestartInfo {
                    reason: reason.clone(),
                    attempt: self.state.attempt(),
                    backoff: delay,
                    detection,
                });
                if let super::state::RestartReason::SpawnFailed { error } = &reason {
                    self.snap.last_error = Some(error.clone());
                }
            }
            Action::Repair(layer) => match self.registry.repair(layer) {
                Ok(done) => tracing::warn!(layer = layer.as_str(), "{done}"),
                Err(e) => tracing::error!(layer = layer.as_str(), error = %e, "repair failed"),
            },
            Action::Finish => {
                self.observer.stopped();
                self.finished = true;
            }
        }
    }

    fn on_exit(&mut self, status: process::ExitStatus, _now: Instant) {
        let Some(live) = &self.live else { return };
        let pid = live.child.pid;
        let r = &mut self.snap.restarts;
        r.last_exit = Some(status);
        r.last_exit_description = Some(status.describe());
        r.last_exit_at_unix_ms = Some(unix_now_ms());
        if self.state.name() == StateName::Stopping {
            tracing::info!(pid, status = %status.describe(), "Temporal exited");
        } else {
            tracing::warn!(pid, status = %status.describe(), "Temporal exited");
        }
        self.observer.exited(pid, status);
    }

    fn on_ready(&mut self, now: Instant) {
        let Some(live) = &mut self.live else { return };
        let pid = live.child.pid;
        // Record the executable now: a shim may have exec'd the real binary
        // since the spawn, and identity checks must compare against that.
        live.identity.exe = process::proc::exe(pid);
        let start = now.saturating_duration_since(live.child.spawned_at);
        let recovery = self
            .failure_seen_at
            .take()
            .map(|t| now.saturating_duration_since(t));
        self.first_failed_probe = None;
        if let Some(r) = recovery {
            self.snap.restarts.last_recovery_ms = Some(ms(r));
        }
        self.snap.backoff = None;
        self.snap.last_error = None;
        if let Some(t) = &mut self.snap.temporal {
            t.exe = live.identity.exe.as_ref().map(|p| p.display().to_string());
            t.serving_since_unix_ms = Some(unix_now_ms());
        }
        self.write_pid_file();
        tracing::info!(pid, start_ms = ms(start), recovery_ms = ?recovery.map(ms), "Temporal is serving");
        self.observer.serving(pid, start, recovery);
        self.report_startup(Report::Ready { pid });
    }

    async fn spawn(&mut self) -> Event {
        for &addr in &self.cfg.binds {
            if let Err(who) = ports::wait_free(addr, &[], Instant::now()) {
                let error = format!("port {} is in use by {who}", addr.port());
                self.report_startup(Report::Failed {
                    code: Code::PortInUse,
                    message: error.clone(),
                });
                return Event::SpawnFailed { error };
            }
        }
        let attempt = match self.state {
            State::Spawning { attempt } => attempt,
            _ => 0,
        };
        match self.spawner.spawn(self.cfg.spec.clone()).await {
            Ok(mut child) => {
                let pid = child.pid;
                for fd in [child.stdout.take(), child.stderr.take()]
                    .into_iter()
                    .flatten()
                {
                    if let Some(log) = &self.log
                        && let Err(e) = logfile::pump(fd, log.clone())
                    {
                        tracing::warn!(error = %e, "cannot read Temporal output");
                    }
                }
                let identity = Identity::of(pid).map_or(
                    Identity {
                        pid,
                        pgid: pid,
                        start_time: 0,
                        exe: None,
                    },
                    |id| Identity { exe: None, ..id },
                );
                self.snap.temporal = Some(TemporalInfo {
                    pid,
                    pgid: child.pgid(),
                    start_time_ticks: identity.start_time,
                    exe: None,
                    spawned_at_unix_ms: unix_now_ms(),
                    serving_since_unix_ms: None,
                });
                self.snap.backoff = None;
                self.live = Some(Live { child, identity });
                self.write_pid_file();
                self.next_probe = Instant::now();
                tracing::info!(pid, attempt, "spawned Temporal");
                self.observer.spawned(pid, attempt);
                Event::Spawned { pid }
            }
            Err(e) => {
                let error = format!("cannot run {}: {e}", self.cfg.spec.program.display());
                self.report_startup(Report::Failed {
                    code: Code::StartFailed,
                    message: error.clone(),
                });
                Event::SpawnFailed { error }
            }
        }
    }

    /// After the leader's exit: SIGKILL whatever is left in its group and
    /// wait until the group is empty, so one Temporal runs at a time.
    async fn reap_group(&mut self) {
        self.kill_at = None;
        self.probe = None;
        let Some(live) = self.live.take() else { return };
        let pgid = live.child.pgid();
        if process::group::group_alive(pgid) {
            let _ = process::signal_group(pgid, Signal::SIGKILL);
            if !process::wait_group_gone(pgid, Instant::now() + Duration::from_secs(5)).await {
                tracing::error!(pgid, "processes of Temporal's group survived SIGKILL");
            }
        }
        self.snap.temporal = None;
        self.write_pid_file();
    }

    /// Signal the child's group. Safe without re-verifying identity: the
    /// child is ours and not yet reaped, so its pid cannot have been reused.
    fn signal(&self, sig: Signal, why: &str) {
        let Some(live) = &self.live else { return };
        if live.child.exit_status().is_some() {
            return;
        }
        tracing::debug!(
            pgid = live.child.pgid(),
            signal = sig.as_str(),
            why,
            "signal group"
        );
        if let Err(e) = process::signal_group(live.child.pgid(), sig) {
            tracing::warn!(error = %e, signal = sig.as_str(), "cannot signal Temporal's group");
        }
    }

    /// Tell the PID file's writer who runs now.
    fn write_pid_file(&self) {
        self.registry
            .set_temporal(self.live.as_ref().map(|l| l.identity.clone()));
    }

    /// Settle the startup outcome (the first one counts). It is sent from
    /// `publish`, after the snapshot says the same: a `start` that returns
    /// "ready" must find `/status` and `status` saying so too.
    fn report_startup(&mut self, outcome: Report) {
        if self.startup.is_some() && self.startup_outcome.is_none() {
            self.startup_outcome = Some(outcome);
        }
    }

    fn publish(&mut self) {
        self.snap.state = self.state.name();
        if self.state.name() != StateName::Stopping {
            self.snap.restarts.consecutive_failures = self.state.attempt();
        }
        self.snap.ready = self.state.is_serving();
        if !matches!(self.state.name(), StateName::Backoff | StateName::CrashLoop) {
            self.snap.backoff = None;
        }
        let snap = self.snap.clone();
        self.status.send_if_modified(|s| {
            if *s == snap {
                false
            } else {
                *s = snap;
                true
            }
        });
        if let Some(outcome) = self.startup_outcome.take()
            && let Some(tx) = self.startup.take()
        {
            let _ = tx.send(outcome);
        }
    }

    fn unix_ms(&self, t: Instant) -> u64 {
        let (i0, s0) = self.epoch;
        let wall = if t >= i0 {
            s0 + (t - i0)
        } else {
            s0 - (i0 - t)
        };
        wall.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Current wall-clock time in Unix ms.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn wait_exit(live: &mut Option<Live>) -> std::io::Result<process::ExitStatus> {
    match live {
        Some(l) => l.child.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

async fn poll_opt(f: &mut Option<ProbeFuture>) -> Round {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
