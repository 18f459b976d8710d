//! The supervisor actor: owns one unit's process (Temporal or a service)
//! and executes what [`step`] decides. Every input is an event source in
//! one `select!`: shutdown (first, so it wins), the child's exit (a pidfd
//! event, not a poll), the grace-period and backoff timers, commands
//! (start, restart), a logged readiness line, and the in-flight probe
//! round. Nothing here decides *what* to do next.
//!
//! [`execute`] carries out actions; [`probing`] decides when rounds run
//! and turns them into events.

mod develop;
mod execute;
mod probing;

use super::frozen::{FrozenActor, FrozenChild, FrozenUnit, Timers};
use super::state::{Event, Life, Outcome, State, step};
use super::unit::Unit;
use super::{Command, Context, Halt, Outlet, Snapshot, UnitHandle};
use crate::disk::LogStream;
use crate::health::{FileChecks, Round};
use crate::model::StateName;
use crate::model::clock::unix_now_ms;
use crate::process::{self, Identity, Spawned};
use crate::supervisor::Startup;
use nix::sys::signal::Signal;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;

/// The running child and what we know of it.
struct Live {
    child: Spawned,
    identity: Identity,
}

type ProbeFuture = Pin<Box<dyn Future<Output = Round> + Send>>;

/// How a turn of the actor's loop ended.
enum Turn {
    /// Go on.
    Again,
    /// Supervision is over (the unit stopped).
    Finished,
    /// Hand over to the next daemon.
    Freeze,
}

/// What woke the actor.
enum Woke {
    /// Events for the state machine (possibly none: a timer or a probe
    /// round started).
    Events(Vec<Event>),
    /// An upgrade: hand everything over.
    Freeze,
}

/// The supervisor task of one unit. Create with [`Actor::new`], run with
/// [`Actor::run`].
pub struct Actor {
    unit: Unit,
    ctx: Context,
    /// The lock and PID file checks of its rounds (Temporal's only).
    files: Option<Arc<dyn FileChecks>>,
    out: Outlet,
    log: LogStream,
    /// The copies of the child's output into the log.
    pumps: Vec<crate::logfile::Pump>,
    status: watch::Sender<Snapshot>,
    commands: mpsc::Receiver<Command>,
    /// Pids whose readiness line the log pump saw.
    ready_lines: (mpsc::UnboundedSender<i32>, mpsc::UnboundedReceiver<i32>),
    /// The startup outcome, sent by `publish` once the snapshot agrees.
    startup_outcome: Option<Startup>,
    // Runtime state.
    life: Life,
    live: Option<Live>,
    timers: Timers,
    /// When the next round starts if not on the cadence: now for a new
    /// child or a round that proved nothing; later for a round that found
    /// the child exiting (so an unhealthy unit, whose cadence is zero,
    /// does not probe back to back until the exit event arrives).
    probe_at: Option<Instant>,
    probe: Option<ProbeFuture>,
    probe_started: Instant,
    /// The next round is the second look at a check that timed out while
    /// the host's CPUs were contended: its timeout is the detector's cap.
    second_look: bool,
    epoch: (Instant, SystemTime),
    snap: Snapshot,
    finished: bool,
    /// Watched files, builds, overlap reloads.
    dev: develop::Dev,
}

impl Actor {
    /// A new actor (not yet running) for `unit`, spawning, writing and
    /// logging through `ctx`, and the handle to talk to it. A unit with
    /// dependencies starts `waiting` for [`Command::Start`]; the others
    /// start at once.
    pub fn new(unit: Unit, ctx: &Context, out: Outlet) -> (Self, UnitHandle) {
        let state = if unit.spec.depends_on.is_empty() {
            State::Stopped
        } else {
            State::Waiting
        };
        let snap = Snapshot {
            state: state.name(),
            ..Snapshot::default()
        };
        let log = ctx
            .logs
            .disk
            .open_log(&unit.log_path(), crate::logfile::DEFAULT_MAX_BYTES);
        let (status, commands, handle) =
            super::unit_channels(&unit.spec, snap.clone(), log.stats(), Some(unit.log_path()));
        let files: Option<Arc<dyn FileChecks>> = unit
            .is_temporal()
            .then(|| Arc::new(ctx.registry.clone()) as Arc<dyn FileChecks>);
        let actor = Actor {
            unit,
            ctx: ctx.clone(),
            files,
            out,
            log,
            pumps: Vec::new(),
            status,
            commands,
            ready_lines: mpsc::unbounded_channel(),
            startup_outcome: None,
            life: Life::new(state),
            live: None,
            timers: Timers::default(),
            probe_at: Some(Instant::now()),
            probe: None,
            probe_started: Instant::now(),
            second_look: false,
            epoch: (Instant::now(), SystemTime::now()),
            snap,
            finished: false,
            dev: develop::Dev::default(),
        };
        (actor, handle)
    }

    /// Continue supervising from what the previous daemon's actor handed
    /// over ([`FrozenActor`]): its state, history, timers and child, whose
    /// exit is watched on a new pidfd and whose output pipes are read
    /// again once it runs.
    pub fn adopt(mut self, f: FrozenActor) -> std::io::Result<Self> {
        self.life = Life {
            state: f.state,
            generation: f.generation,
        };
        self.snap = f.snapshot;
        self.timers = f.timers;
        if let super::unit::Ready::Log { seen, .. } = &self.unit.ready {
            seen.store(f.ready_line_seen, std::sync::atomic::Ordering::Release);
        }
        if let Some(c) = f.child {
            let mut child = Spawned::adopt(c.identity.pid, c.spawned_at)?;
            // Duplicates: the handover's own fds stay for a hand-back
            // until the whole daemon is adopted.
            let mut pipes = c.pipes.into_iter();
            child.stdout = pipes.next().map(process::spawn::dup_cloexec).transpose()?;
            child.stderr = pipes.next().map(process::spawn::dup_cloexec).transpose()?;
            self.live = Some(Live {
                child,
                identity: c.identity,
            });
        }
        self.status.send_replace(self.snap.clone());
        Ok(self)
    }

    /// Stop supervising and hand everything over (for an upgrade): the
    /// process keeps running; its output pipes come back from the log
    /// pumps (what they read is in the log, the rest still in the pipes).
    /// The pipe fds are released into the returned state.
    async fn freeze(mut self) -> FrozenUnit {
        use std::os::fd::IntoRawFd;
        self.probe = None;
        let mut pipes = Vec::new();
        for p in std::mem::take(&mut self.pumps) {
            if let Some(fd) = p.hand_back().await {
                pipes.push(fd.into_raw_fd());
            }
        }
        let ready_line_seen = match &self.unit.ready {
            super::unit::Ready::Log { seen, .. } => seen.load(std::sync::atomic::Ordering::Acquire),
            _ => 0,
        };
        let child = self.live.take().map(|l| FrozenChild {
            identity: l.identity,
            spawned_at: l.child.spawned_at,
            pipes,
        });
        FrozenUnit::Managed(Box::new(FrozenActor {
            state: self.life.state.clone(),
            generation: self.life.generation,
            snapshot: self.snap.clone(),
            child,
            timers: self.timers.clone(),
            ready_line_seen,
        }))
    }

    /// Supervise until `halt` resolves: on [`Halt::Stop`], stop the process
    /// (whole group) and return `None`; on [`Halt::Freeze`], leave it
    /// running and return the state the next daemon continues from.
    ///
    /// Nothing this unit does ends it: a panic in its supervisor (a bug)
    /// is contained here, and the supervisor is rebuilt around its
    /// process ([`Actor::contain`]), so no other unit ever notices.
    pub async fn run(mut self, halt: impl Future<Output = Halt>) -> Option<FrozenUnit> {
        use futures_util::FutureExt;
        // An adopted child's pipes are read again from here, and the
        // gauges show where supervision continues.
        if let Some(mut live) = self.live.take() {
            self.pump_output(&mut live.child);
            self.live = Some(live);
        }
        if !matches!(self.life.state, State::Stopped | State::Waiting) {
            self.out
                .observer
                .adopted(self.life.state.name(), self.life.state.pid());
        }
        self.start_watching();
        tokio::pin!(halt);
        let mut shutdown_seen = false;
        // A new unit starts now (or waits for its dependencies); an
        // adopted one continues where it was.
        let mut pending = match self.life.state {
            State::Stopped => vec![Event::Start],
            _ => vec![],
        };
        let mut panics = 0u32;
        loop {
            let turn = std::panic::AssertUnwindSafe(self.turn(
                &mut halt,
                &mut shutdown_seen,
                &mut pending,
            ))
            .catch_unwind()
            .await;
            match turn {
                Ok(Turn::Again) => panics = 0,
                Ok(Turn::Finished) => return None,
                Ok(Turn::Freeze) => {
                    self.end_develop().await;
                    return Some(self.freeze().await);
                }
                Err(panic) => {
                    panics += 1;
                    let why = panic_message(&*panic);
                    drop(panic);
                    pending = self.contain(why, panics, shutdown_seen).await;
                }
            }
        }
    }

    /// One turn of the loop: handle what is pending, or publish and wait
    /// for what comes next.
    async fn turn(
        &mut self,
        halt: &mut std::pin::Pin<&mut impl Future<Output = Halt>>,
        shutdown_seen: &mut bool,
        pending: &mut Vec<Event>,
    ) -> Turn {
        // Test builds only: a bug in this unit's supervisor, for as long as
        // the fault is named.
        #[cfg(feature = "test-faults")]
        if crate::faults::active(&format!("actor-panic:{}", self.unit.spec.name)) {
            panic!("injected fault: actor-panic:{}", self.unit.spec.name);
        }
        for ev in std::mem::take(pending) {
            self.handle(ev, pending).await;
        }
        // A wake that is already due (a restart with no backoff) is
        // handled now: a timer rounds up to its next millisecond tick.
        if let Some((t, generation)) = self.timers.wake_at()
            && t <= Instant::now()
        {
            self.timers.wake = None;
            pending.push(Event::Wake { generation });
        }
        if !pending.is_empty() {
            return Turn::Again;
        }
        self.publish();
        if self.finished {
            return Turn::Finished;
        }
        match self.next(halt, shutdown_seen).await {
            Woke::Freeze => Turn::Freeze,
            Woke::Events(events) => {
                *pending = events;
                Turn::Again
            }
        }
    }

    /// After a panic in this unit's supervisor (a bug): count it, and
    /// carry on around the process it had. A build or a new process of an
    /// overlap in flight is killed (it would be nobody's); the process
    /// that runs stays and is supervised as running (ready again at its
    /// next check), and is rewritten into the PID file; with none, the
    /// unit backs off and spawns. The events to handle next are returned.
    /// A supervisor that keeps panicking waits longer each time, so a bug
    /// cannot spin the daemon.
    async fn contain(&mut self, why: String, panics: u32, shutdown_seen: bool) -> Vec<Event> {
        tracing::error!(unit = %self.unit.spec.name, panic = %why, "the unit's supervisor failed: rebuilt around its process; every other unit carries on");
        self.out.observer.internal_error();
        let pause = Duration::from_millis(50).saturating_mul(1 << panics.min(7));
        tokio::time::sleep(pause.min(Duration::from_secs(5))).await;
        self.probe = None;
        self.second_look = false;
        self.dev.cancel_in_flight();
        let now = Instant::now();
        let running = self
            .live
            .as_ref()
            .filter(|l| l.child.exit_status().is_none())
            .map(|l| l.child.pid);
        let attempt = self.life.state.attempt();
        self.timers.kill_at = None;
        self.timers.uptime = None;
        self.timers.wake = None;
        let state = match running {
            Some(pid) => State::Running {
                pid,
                since: now,
                attempt,
                proven: true,
            },
            None => {
                self.live = None;
                let attempt = attempt + 1;
                let until = now + self.unit.spec.rules.policy.delay(attempt);
                self.timers.wake = Some(until);
                self.timers.wake_generation = self.life.generation + 1;
                State::Backoff { until, attempt }
            }
        };
        let generation = self.timers.wake_generation.max(self.life.generation);
        self.life = Life { state, generation };
        self.probe_at = Some(now);
        self.write_pid_file();
        if shutdown_seen {
            vec![Event::Shutdown]
        } else {
            vec![]
        }
    }

    /// Wait for whatever comes first: shutdown (first, so it wins), the
    /// child's exit, the grace-period and backoff timers, a command, a
    /// logged readiness line, the in-flight probe round, or the next one
    /// being due.
    async fn next(
        &mut self,
        halt: &mut std::pin::Pin<&mut impl Future<Output = Halt>>,
        shutdown_seen: &mut bool,
    ) -> Woke {
        let probing_due = self.probe.is_none() && self.wants_probes();
        // Rounds start on a fixed cadence (a slow, timing-out round does
        // not push the next one back), computed from the state as it is
        // now: a round that just made the unit unhealthy is confirmed at
        // once, not a whole health interval later.
        let next_probe = self.probe_at.unwrap_or_else(|| {
            let every = self.probe_interval();
            let due = self.probe_started + every;
            match self.life.state.name() {
                // Starting polls and confirming checks go at once.
                StateName::Starting | StateName::Unhealthy => due,
                _ => on_grid(due, every),
            }
        });
        let child_running = self
            .live
            .as_ref()
            .is_some_and(|l| l.child.exit_status().is_none());
        let mut events = Vec::new();
        tokio::select! {
            biased;
            how = halt, if !*shutdown_seen => {
                if how == Halt::Freeze {
                    return Woke::Freeze;
                }
                *shutdown_seen = true;
                self.probe = None; // cancel an in-flight probe at once
                events.push(Event::Shutdown);
            }
            (pid, status) = wait_exit(&mut self.live), if child_running => {
                self.timers.exit_seen_at = Some(Instant::now());
                match status {
                    Ok(status) => events.push(Event::Exited { pid, status }),
                    Err(e) => tracing::error!(unit = %self.unit.spec.name, error = %e, "waiting for the process failed"),
                }
            }
            () = sleep_opt(self.timers.kill_at) => {
                self.timers.kill_at = None;
                self.signal(Signal::SIGKILL, "grace period over");
            }
            () = sleep_opt(self.timers.wake) => {
                self.timers.wake = None;
                events.push(Event::Wake { generation: self.timers.wake_generation });
            }
            () = sleep_opt(self.timers.uptime) => {
                self.timers.uptime = None;
                events.push(Event::Uptime { pid: self.timers.uptime_pid });
            }
            Some(cmd) = self.commands.recv() => events.extend(self.command(cmd)),
            dev = self.dev.next() => events.extend(self.on_dev(dev).await),
            // A process's readiness line is seen once; the machine takes
            // it for the current process only.
            Some(pid) = self.ready_lines.1.recv() => events.push(Event::ProbeOk { pid }),
            round = poll_opt(&mut self.probe) => {
                self.probe = None;
                events.extend(self.absorb(round));
            }
            () = sleep_until(next_probe.into()), if probing_due => {
                self.probe_at = None;
                self.probe_started = Instant::now();
                self.probe = self.start_round();
            }
        }
        Woke::Events(events)
    }

    /// A command as events for the machine.
    fn command(&mut self, cmd: Command) -> Vec<Event> {
        match cmd {
            Command::Start => vec![Event::Start],
            Command::Restart => self.restart_requested(),
            Command::Observed {
                pid,
                check,
                restart,
            } => self.observed(pid, &check, restart),
            Command::Reconfigure(unit) => self.reconfigure(*unit),
        }
    }

    /// A check of its own schedule, made of process `pid`: shown like a
    /// round's and, when its policy says so, a restart once it failed
    /// `failure_threshold` times in a row. A verdict on an earlier process
    /// says nothing of this one: it is dropped, and counted.
    fn observed(&mut self, pid: i32, check: &crate::health::Check, restart: bool) -> Vec<Event> {
        if self.life.state.pid() != Some(pid) {
            tracing::debug!(unit = %self.unit.spec.name, pid, layer = check.layer.as_str(), "a check of an earlier process: ignored");
            self.out.observer.stale(super::OBSERVED);
            return vec![];
        }
        crate::supervisor::fold_checks(
            &mut self.snap.health,
            std::slice::from_ref(check),
            unix_now_ms(),
        );
        self.out.observer.probe(check);
        if !check.ok {
            tracing::warn!(unit = %self.unit.spec.name, layer = check.layer.as_str(), reason = %check.reason, "check failed");
        }
        let failures = self
            .snap
            .health
            .get(&check.layer)
            .map_or(0, |l| l.consecutive_failures);
        if restart && failures >= self.unit.spec.rules.failure_threshold {
            vec![Event::Condemned {
                pid,
                layer: check.layer,
            }]
        } else {
            vec![]
        }
    }

    async fn handle(&mut self, ev: Event, pending: &mut Vec<Event>) {
        let Some(ev) = self.gate_start(ev) else {
            return;
        };
        if ev == Event::Shutdown {
            self.end_develop().await;
        }
        let now = Instant::now();
        let from = self.life.state.name();
        let kind = ev.name();
        let exit = match ev {
            Event::Exited { status, .. } => Some(status),
            _ => None,
        };
        let step = step(&self.life, ev, now, &self.unit.spec.rules);
        match step.outcome {
            Outcome::Applied => {}
            Outcome::Ignored => return,
            Outcome::Stale => {
                tracing::debug!(unit = %self.unit.spec.name, state = from.as_str(), event = kind, "an event of an earlier process or backoff: ignored");
                self.out.observer.stale(kind);
                return;
            }
        }
        tracing::debug!(unit = %self.unit.spec.name, state = from.as_str(), event = kind, "event");
        if let Some(status) = exit {
            self.on_exit(status);
        }
        self.life = step.life;
        if self.life.state.name() != from {
            tracing::info!(unit = %self.unit.spec.name, from = from.as_str(), to = self.life.state.name().as_str(), pid = self.life.state.pid().unwrap_or(0), "state");
            self.out
                .observer
                .state_changed(from, self.life.state.name());
        }
        if exit.is_some() && from == StateName::Starting {
            self.startup_exit();
        }
        for action in step.actions {
            self.execute(action, now, pending).await;
        }
    }

    fn publish(&mut self) {
        self.snap.state = self.life.state.name();
        if self.life.state.name() != StateName::Stopping {
            self.snap.restarts.consecutive_failures = self.life.state.attempt();
        }
        // Ready: serving, or done for good after a clean exit (a one-shot
        // that its restart policy does not start again).
        self.snap.ready = (self.life.state.is_serving() && self.snap.gated().is_none())
            || (self.life.state == State::Exited
                && self.snap.restarts.last_exit == Some(crate::model::ExitStatus::Code(0)));
        if !matches!(
            self.life.state.name(),
            StateName::Backoff | StateName::CrashLoop
        ) {
            self.snap.backoff = None;
        }
        let successor = self.successor_pid();
        if let Some(o) = &mut self.snap.overlap
            && o.pid == 0
        {
            o.pid = successor.unwrap_or(0);
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
        if let Some(outcome) = self.startup_outcome.take() {
            self.out.report_startup(outcome);
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

/// The instant nearest `t` on the grid of multiples of `every` on
/// CLOCK_MONOTONIC, which every unit (and every daemon) shares: units
/// with the same interval are checked together, so the supervisor thread
/// wakes once for all of them rather than once each (with 50 services,
/// waking was a fifth of its idle work). The nearest point, not the next
/// one: a round that started just after its grid point keeps its interval.
/// The first round after a start moves by at most half an interval; a
/// hang is found as soon as before, since the rounds' spacing is
/// unchanged.
fn on_grid(t: Instant, every: Duration) -> Instant {
    let every_ns = every.as_nanos();
    if every_ns == 0 {
        return t;
    }
    let off = crate::model::clock::to_mono(t) % every_ns;
    if off * 2 < every_ns {
        t.checked_sub(Duration::from_nanos(off as u64)).unwrap_or(t)
    } else {
        t + Duration::from_nanos((every_ns - off) as u64)
    }
}

/// What a panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn wait_exit(live: &mut Option<Live>) -> (i32, std::io::Result<crate::model::ExitStatus>) {
    match live {
        Some(l) => (l.child.pid, l.child.wait().await),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_fall_on_a_shared_grid_near_their_time() {
        let every = Duration::from_secs(1);
        let now = Instant::now();
        for k in 0..40u64 {
            let t = now + Duration::from_millis(k * 37);
            let g = on_grid(t, every);
            let moved = if g > t { g - t } else { t - g };
            assert!(moved <= every / 2, "{moved:?}");
            // On the grid, to within the clock readings' own skew.
            let off = crate::model::clock::to_mono(g) % every.as_nanos();
            let skew = off.min(every.as_nanos() - off);
            assert!(skew < 1_000_000, "{skew} ns off the grid");
        }
        // A round that started just past its point keeps its interval.
        let g = on_grid(now, every);
        let next = on_grid(g + Duration::from_micros(300) + every, every);
        let spacing = next - g;
        assert!(
            spacing.abs_diff(every) < Duration::from_millis(1),
            "{spacing:?}"
        );
        assert_eq!(on_grid(now, Duration::ZERO), now);
    }
}
