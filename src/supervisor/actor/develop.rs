//! The developer loop of one unit: its watched files, its build, and a
//! replacement that overlaps the old process.
//!
//! A change (a watched file, `stigmer local restart`, a configuration
//! reload, a dependency's restart) first builds, when the service has a
//! `build`: a change during a build cancels it and builds again, a failed
//! build leaves the running process alone. Then the process is replaced:
//! `restart` stops it and starts a new one (the state machine's
//! `Event::Reload`); `overlap` starts the new one beside it, waits for it
//! to be ready (a worker: polling its task queue), swaps
//! (`Event::Replaced`) and only then stops the old one with its stop
//! signal and grace, so it finishes what it has in hand. A new process
//! that never gets ready is stopped, and the old one keeps running.

use super::{Actor, Live};
use crate::config::services::ReloadMode;
use crate::disk::Stream;
use crate::health::{self, Target};
use crate::model::clock::unix_now_ms;
use crate::model::{ExitStatus, StateName};
use crate::process::{self, Identity, Spawned};
use crate::supervisor::files::{self, Seen};
use crate::supervisor::state::Event;
use crate::supervisor::{BuildStatus, Overlap, Startup};
use nix::sys::signal::Signal;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Waiting<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A build in flight.
pub(super) struct Build {
    ctl: Arc<BuildCtl>,
    trigger: String,
    started: Instant,
    /// The build before the unit's first start.
    first: bool,
    wait: Waiting<std::io::Result<ExitStatus>>,
}

/// A build's (or an overlap's new) process group once spawned, and
/// whether it was cancelled (a cancel that comes before the spawn is seen
/// by the spawn).
#[derive(Default)]
struct BuildCtl {
    pgid: AtomicI32,
    cancelled: AtomicBool,
}

impl BuildCtl {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let pgid = self.pgid.load(Ordering::SeqCst);
        if pgid > 0 {
            let _ = process::signal_group(pgid, Signal::SIGKILL);
        }
    }
}

/// A new process getting ready beside the old one.
pub(super) struct Successor {
    ctl: Arc<BuildCtl>,
    trigger: String,
    ready: Waiting<SuccessorOutcome>,
}

/// The loop's state in the actor.
pub(super) struct Dev {
    changes: Option<mpsc::UnboundedReceiver<Seen>>,
    _watching: Option<files::Watching>,
    pub(super) build: Option<Build>,
    /// The build before the first start succeeded (or none is needed).
    built: bool,
    /// A start waits for the first build.
    start_wanted: bool,
    pub(super) successor: Option<Successor>,
    retiring: Vec<tokio::task::JoinHandle<()>>,
    /// Old processes that have stopped (their pids).
    retired: (mpsc::UnboundedSender<i32>, mpsc::UnboundedReceiver<i32>),
}

impl Default for Dev {
    fn default() -> Self {
        Dev {
            changes: None,
            _watching: None,
            build: None,
            built: false,
            start_wanted: false,
            successor: None,
            retiring: Vec::new(),
            retired: mpsc::unbounded_channel(),
        }
    }
}

/// What the loop has for the actor.
pub(super) enum DevEvent {
    /// Watched files changed (the first one named).
    Changed(String),
    /// Watched files cannot all be watched.
    Problem(String),
    /// The build ended.
    Built(std::io::Result<ExitStatus>),
    /// The overlap's new process is ready, or failed.
    SuccessorDone(SuccessorOutcome),
    /// An old process of an overlap has stopped.
    Retired(i32),
}

impl Dev {
    /// After a failure of the unit's supervisor: a build or a new process
    /// of an overlap in flight is killed (reaped off the loop), so no
    /// process of the unit is left that nothing supervises.
    pub(super) fn cancel_in_flight(&mut self) {
        if let Some(b) = self.build.take() {
            b.ctl.cancel();
            tokio::spawn(b.wait);
        }
        if let Some(s) = self.successor.take() {
            s.ctl.cancel();
            tokio::spawn(async move {
                if let (Some((mut child, ..)), _) = s.ready.await {
                    let pgid = child.pgid();
                    let _ = child.wait().await;
                    process::wait_group_gone(pgid, Instant::now() + Duration::from_secs(5)).await;
                }
            });
        }
        self.start_wanted = false;
    }

    /// Wait for the next thing the loop has (pending forever if none).
    pub(super) async fn next(&mut self) -> DevEvent {
        let changes = async {
            match self.changes.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let build = async {
            match self.build.as_mut() {
                Some(b) => (&mut b.wait).await,
                None => std::future::pending().await,
            }
        };
        let successor = async {
            match self.successor.as_mut() {
                Some(s) => (&mut s.ready).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            seen = changes => match seen {
                Some(Seen::Changed(path)) => DevEvent::Changed(path),
                Some(Seen::Problem(p)) => DevEvent::Problem(p),
                None => {
                    self.changes = None;
                    std::future::pending().await
                }
            },
            status = build => DevEvent::Built(status),
            done = successor => DevEvent::SuccessorDone(done),
            Some(pid) = self.retired.1.recv() => DevEvent::Retired(pid),
        }
    }
}

impl Actor {
    /// The overlap's new process's pid, once it is spawned.
    pub(super) fn successor_pid(&self) -> Option<i32> {
        let pid = self.dev.successor.as_ref()?.ctl.pgid.load(Ordering::SeqCst);
        (pid > 0).then_some(pid)
    }

    /// Start watching, if the unit watches anything.
    pub(super) fn start_watching(&mut self) {
        let Some(spec) = &self.unit.spec.watch else {
            return;
        };
        let env_files: Vec<std::path::PathBuf> = self
            .unit
            .env_files()
            .iter()
            .map(|f| f.path.clone())
            .collect();
        match files::watch(spec, &env_files) {
            Ok((w, rx)) => {
                self.dev._watching = Some(w);
                self.dev.changes = Some(rx);
            }
            Err(e) => self.note(format!("watch: {e}")),
        }
    }

    fn note(&mut self, n: String) {
        tracing::warn!(unit = %self.unit.spec.name, "{n}");
        if !self.snap.notes.contains(&n) {
            self.snap.notes.push(n);
        }
    }

    /// A start: held back for the build before the first start, if any.
    pub(super) fn gate_start(&mut self, ev: Event) -> Option<Event> {
        if matches!(ev, Event::Start) && self.unit.spec.build.is_some() && !self.dev.built {
            self.dev.start_wanted = true;
            if self.dev.build.is_none() {
                self.start_build("start".into(), true);
            }
            return None;
        }
        Some(ev)
    }

    /// Something the loop reported, as events for the state machine.
    pub(super) async fn on_dev(&mut self, ev: DevEvent) -> Vec<Event> {
        match ev {
            DevEvent::Changed(path) => {
                tracing::info!(unit = %self.unit.spec.name, file = %path, "changed");
                self.change(format!("{path} changed"))
            }
            DevEvent::Problem(p) => {
                self.note(p);
                vec![]
            }
            DevEvent::Built(status) => self.built(status).await,
            DevEvent::SuccessorDone(done) => self.successor_done(done).await,
            DevEvent::Retired(pid) => {
                self.dev.retiring.retain(|t| !t.is_finished());
                if self.snap.overlap.as_ref().is_some_and(|o| o.pid == pid) {
                    self.snap.overlap = None;
                }
                vec![]
            }
        }
    }

    /// Replace the process because of `trigger`: build first when there
    /// is a build; before the first start, start.
    pub(super) fn change(&mut self, trigger: String) -> Vec<Event> {
        if self.unit.spec.build.is_some() {
            let first = !self.dev.built;
            self.start_build(trigger, first);
            return vec![];
        }
        self.replace(trigger)
    }

    fn start_build(&mut self, trigger: String, first: bool) {
        let mut first = first;
        if let Some(b) = self.dev.build.take() {
            // Cancelled: the newer change builds again. Its process is
            // reaped off the loop (it dies at once).
            tracing::info!(unit = %self.unit.spec.name, trigger = %b.trigger, "build cancelled by a newer change");
            b.ctl.cancel();
            first |= b.first;
            tokio::spawn(b.wait);
        }
        let started = Instant::now();
        self.snap.build = Some(BuildStatus {
            state: "running".into(),
            trigger: trigger.clone(),
            started_at_unix_ms: unix_now_ms(),
            duration_ms: None,
            error: None,
        });
        let ctl = Arc::new(BuildCtl::default());
        let wait: Waiting<_> = match self.unit.build_spec() {
            None => return,
            Some(Err(e)) => Box::pin(async move { Err(std::io::Error::other(e)) }),
            Some(Ok(spec)) => {
                tracing::info!(unit = %self.unit.spec.name, %trigger, program = %spec.program.display(), "building");
                let (spawner, logs, log, ctl) = (
                    self.ctx.spawner.clone(),
                    self.ctx.logs.clone(),
                    self.log.clone(),
                    ctl.clone(),
                );
                Box::pin(async move {
                    let mut child = spawner.spawn(spec).await?;
                    let pgid = child.pgid();
                    ctl.pgid.store(pgid, Ordering::SeqCst);
                    if ctl.cancelled.load(Ordering::SeqCst) {
                        let _ = process::signal_group(pgid, Signal::SIGKILL);
                    }
                    // Its output goes to the service's log.
                    let pipes = [
                        (child.stdout.take(), Stream::Stdout),
                        (child.stderr.take(), Stream::Stderr),
                    ];
                    for (fd, stream) in pipes {
                        if let Some(fd) = fd {
                            let _ = logs.pump(fd, stream, log.clone(), None);
                        }
                    }
                    let status = child.wait().await;
                    // Nothing of a build outlives it.
                    if process::group::group_alive(pgid) {
                        let _ = process::signal_group(pgid, Signal::SIGKILL);
                        process::wait_group_gone(pgid, Instant::now() + Duration::from_secs(5))
                            .await;
                    }
                    status
                })
            }
        };
        self.dev.build = Some(Build {
            ctl,
            trigger,
            started,
            first,
            wait,
        });
    }

    async fn built(&mut self, status: std::io::Result<ExitStatus>) -> Vec<Event> {
        let Some(b) = self.dev.build.take() else {
            return vec![];
        };
        let took = b.started.elapsed();
        let error = match &status {
            Ok(ExitStatus::Code(0)) => None,
            Ok(st) => Some(format!(
                "{} (its output is in `stigmer local logs {}`)",
                st.describe(),
                self.unit.spec.name
            )),
            Err(e) => Some(format!("cannot run the build: {e}")),
        };
        if let Some(s) = &mut self.snap.build {
            s.state = if error.is_none() { "ok" } else { "failed" }.into();
            s.duration_ms = Some(took.as_secs_f64() * 1e3);
            s.error = error.clone();
        }
        match error {
            None => {
                tracing::info!(unit = %self.unit.spec.name, trigger = %b.trigger, ms = took.as_millis() as u64, "built");
                if b.first {
                    self.dev.built = true;
                    let wanted = std::mem::take(&mut self.dev.start_wanted);
                    return if wanted { vec![Event::Start] } else { vec![] };
                }
                self.replace(b.trigger)
            }
            Some(e) => {
                tracing::warn!(unit = %self.unit.spec.name, trigger = %b.trigger, error = %e, "build failed; the running process stays");
                if b.first {
                    self.report_startup(Startup::Failed {
                        code: crate::model::Code::StartFailed,
                        message: format!("service {} failed to build: {e}", self.unit.spec.name),
                    });
                }
                vec![]
            }
        }
    }

    /// A reload changed its configuration: run `unit` from now on, and
    /// replace the process (building first, overlapping where it says
    /// so); watch what it watches now.
    pub(super) fn reconfigure(&mut self, unit: crate::supervisor::unit::Unit) -> Vec<Event> {
        let rewatch =
            unit.spec.watch != self.unit.spec.watch || unit.env_files() != self.unit.env_files();
        self.unit = unit;
        if rewatch {
            self.dev.changes = None;
            self.dev._watching = None;
            self.snap
                .notes
                .retain(|n| !n.starts_with("watch") && !n.contains("inotify"));
            self.start_watching();
        }
        // Replaced as its spec says (Temporal's: a restart, its ports may
        // have moved; no build).
        self.change("the configuration changed".to_string())
    }

    /// `stigmer local restart`: an overlap when the unit reloads so and
    /// serves; otherwise stop and start.
    pub(super) fn restart_requested(&mut self) -> Vec<Event> {
        if self.life.state.name() == StateName::Spawning {
            return vec![];
        }
        if self.unit.spec.reload == ReloadMode::Overlap && self.life.state.is_serving_or_unhealthy()
        {
            return self.replace("restart requested".into());
        }
        vec![Event::RestartRequested]
    }

    /// Replace the process now: overlap when the unit says so and it
    /// serves; otherwise stop and start.
    fn replace(&mut self, trigger: String) -> Vec<Event> {
        let serving = self.life.state.is_serving_or_unhealthy();
        match (self.unit.spec.reload, serving, self.life.state.name()) {
            (_, _, StateName::Waiting | StateName::Stopped) => vec![],
            (ReloadMode::Overlap, true, _) => {
                if self.dev.successor.is_none() {
                    self.start_successor(trigger);
                }
                vec![]
            }
            _ => vec![Event::Reload { trigger }],
        }
    }
}

/// Name of the second process of an overlap in the PID file (a service
/// name has no dot).
fn overlap_key(unit: &str) -> String {
    format!("{unit}.overlap")
}

impl Actor {
    /// Spawn the new process of an overlap; it is probed for readiness
    /// apart from the serving one.
    fn start_successor(&mut self, trigger: String) {
        let spec = match self.unit.spawn_spec() {
            Ok(s) => s,
            Err(e) => {
                self.note(format!("reload ({trigger}) failed: {e}"));
                return;
            }
        };
        tracing::info!(unit = %self.unit.spec.name, %trigger, "reload: starting the new process beside the old one");
        let spawner = self.ctx.spawner.clone();
        let (unit, ready_tx, logs, log) = (
            self.unit.clone(),
            self.ready_lines.0.clone(),
            self.ctx.logs.clone(),
            self.log.clone(),
        );
        let registry = self.ctx.registry.clone();
        let started = Instant::now();
        let ctl = Arc::new(BuildCtl::default());
        let ctl2 = ctl.clone();
        let ready: Waiting<_> = Box::pin(async move {
            let mut child = match spawner.spawn(spec).await {
                Ok(c) => c,
                Err(e) => {
                    return (None, Err(format!("cannot run {}: {e}", unit.program())));
                }
            };
            ctl2.pgid.store(child.pgid(), Ordering::SeqCst);
            if ctl2.cancelled.load(Ordering::SeqCst) {
                let _ = process::signal_group(child.pgid(), Signal::SIGKILL);
            }
            let pumps = super::execute::pump_child(&mut child, &unit, &ready_tx, &logs, &log);
            let pid = child.pid;
            let identity = Identity::of(pid)
                .map(|id| Identity { exe: None, ..id })
                .unwrap_or(Identity {
                    pid,
                    pgid: pid,
                    start_time: 0,
                    exe: None,
                });
            registry.set(&overlap_key(&unit.spec.name), Some(identity.clone()));
            let r = until_ready(&mut child, &identity, &unit, started).await;
            (Some((child, identity, pumps)), r)
        });
        self.snap.overlap = Some(Overlap {
            pid: 0,
            role: "starting".into(),
            since_unix_ms: unix_now_ms(),
        });
        self.dev.successor = Some(Successor {
            ctl,
            trigger,
            ready,
        });
    }

    async fn successor_done(&mut self, done: SuccessorOutcome) -> Vec<Event> {
        let Some(s) = self.dev.successor.take() else {
            return vec![];
        };
        let (proc_, result) = done;
        match (proc_, result) {
            (Some((child, identity, pumps)), Ok(())) => {
                let pid = child.pid;
                let spawned = child.spawned_at;
                let Some(old) = self.live.take() else {
                    // The old one ended meanwhile: the new one just runs.
                    self.adopt_successor(child, identity, pumps);
                    return vec![];
                };
                let old_pid = old.child.pid;
                tracing::info!(unit = %self.unit.spec.name, old = old_pid, new = pid, "reload: the new process is ready; stopping the old one");
                self.retire(old);
                self.adopt_successor(child, identity, pumps);
                vec![Event::Replaced {
                    old: old_pid,
                    pid,
                    spawned,
                    trigger: s.trigger,
                }]
            }
            (proc_, result) => {
                let why = result.err().unwrap_or_default();
                if let Some((mut child, _, _)) = proc_ {
                    let pgid = child.pgid();
                    let _ = process::signal_group(pgid, Signal::SIGKILL);
                    let _ = child.wait().await;
                    process::wait_group_gone(pgid, Instant::now() + Duration::from_secs(5)).await;
                }
                self.ctx
                    .registry
                    .set(&overlap_key(&self.unit.spec.name), None);
                self.snap.overlap = None;
                self.note(format!(
                    "reload ({}) failed, the old process keeps running: {why}",
                    s.trigger
                ));
                vec![]
            }
        }
    }

    fn adopt_successor(
        &mut self,
        child: Spawned,
        identity: Identity,
        pumps: Vec<crate::logfile::Pump>,
    ) {
        let pid = child.pid;
        // The old process's pumps copy on until its pipes close.
        self.pumps = pumps;
        // Verdicts belong to the process they measured: the new one's
        // readiness is known, its health not yet.
        self.snap.health.clear();
        self.snap.process = Some(crate::supervisor::ProcessInfo {
            pid,
            pgid: child.pgid(),
            start_time_ticks: identity.start_time,
            exe: None,
            spawned_at_unix_ms: unix_now_ms()
                .saturating_sub(child.spawned_at.elapsed().as_millis() as u64),
            serving_since_unix_ms: None,
        });
        self.live = Some(Live { child, identity });
        self.write_pid_file();
        self.probe_at = Some(Instant::now());
        // Old notes of failed reloads are history now.
        self.snap.notes.retain(|n| !n.starts_with("reload ("));
    }

    /// Stop the old process of an overlap apart, with its stop signal and
    /// grace, so it finishes what it has in hand.
    fn retire(&mut self, old: Live) {
        let Live {
            mut child,
            identity,
        } = old;
        let (signal, grace) = (self.unit.stop_signal(), self.unit.spec.stop_grace);
        let registry = self.ctx.registry.clone();
        let key = overlap_key(&self.unit.spec.name);
        registry.set(&key, Some(identity));
        self.snap.overlap = Some(Overlap {
            pid: child.pid,
            role: "stopping".into(),
            since_unix_ms: unix_now_ms(),
        });
        let done = self.dev.retired.0.clone();
        let name = self.unit.spec.name.clone();
        self.dev.retiring.push(tokio::spawn(async move {
            let pid = child.pid;
            let pgid = child.pgid();
            let _ = process::signal_group(pgid, signal);
            let _ = process::signal_group(pgid, Signal::SIGCONT);
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                tracing::warn!(unit = %name, pid, "the old process outlived its stop grace: SIGKILL");
                let _ = process::signal_group(pgid, Signal::SIGKILL);
                let _ = child.wait().await;
            }
            if process::group::group_alive(pgid) {
                let _ = process::signal_group(pgid, Signal::SIGKILL);
                process::wait_group_gone(pgid, Instant::now() + Duration::from_secs(5)).await;
            }
            tracing::info!(unit = %name, pid, "the old process has stopped");
            registry.set(&key, None);
            let _ = done.send(pid);
        }));
    }

    /// Supervision ends (stop, or a handover): a new process that is not
    /// ready yet is killed, and the old ones being stopped are waited for.
    pub(super) async fn end_develop(&mut self) {
        if let Some(b) = self.dev.build.take() {
            b.ctl.cancel();
            let _ = b.wait.await;
        }
        if let Some(s) = self.dev.successor.take() {
            // Killed, it ends its readiness wait at once; then reaped.
            s.ctl.cancel();
            if let (Some((mut child, ..)), _) = s.ready.await {
                let pgid = child.pgid();
                let _ = child.wait().await;
                process::wait_group_gone(pgid, Instant::now() + Duration::from_secs(5)).await;
            }
        }
        for t in self.dev.retiring.drain(..) {
            let _ = t.await;
        }
        self.snap.overlap = None;
        self.ctx
            .registry
            .set(&overlap_key(&self.unit.spec.name), None);
    }
}

/// A successor's process (none if it could not be spawned) and whether it
/// got ready.
type SuccessorOutcome = (
    Option<(Spawned, Identity, Vec<crate::logfile::Pump>)>,
    Result<(), String>,
);

/// Probe `child` for readiness, as a start does, until ready, its ready
/// timeout, or its exit.
async fn until_ready(
    child: &mut Spawned,
    identity: &Identity,
    unit: &crate::supervisor::unit::Unit,
    started: Instant,
) -> Result<(), String> {
    let deadline = started + unit.spec.rules.start_timeout;
    loop {
        tokio::select! {
            st = child.wait() => {
                return Err(match st {
                    Ok(st) => format!("the new process exited ({})", st.describe()),
                    Err(e) => format!("waiting for the new process: {e}"),
                });
            }
            () = tokio::time::sleep(unit.spec.timing.startup_interval) => {}
        }
        let round = health::round(Target {
            files: None,
            identity: Some(identity.clone()),
            plan: unit.ready_plan(),
            timeout: unit.spec.timing.health_timeout,
            pressure: false,
        })
        .await;
        if round.failed().is_none() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let why = round
                .checks
                .iter()
                .find(|c| !c.ok)
                .map(|c| format!("{}: {}", c.layer.as_str(), c.reason))
                .unwrap_or_default();
            return Err(format!(
                "the new process was not ready within {} s ({why})",
                unit.spec.rules.start_timeout.as_secs_f64()
            ));
        }
    }
}
