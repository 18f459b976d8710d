//! Carrying out the actions [`step`](super::step) returns: spawn, signal,
//! reap, arm timers, record restarts and readiness, repair files.

use super::{Actor, Live, ms};
use crate::logfile;
use crate::model::Code;
use crate::model::clock::unix_now_ms;
use crate::model::{RestartReason, StateName};
use crate::process::{self, Identity, ports};
use crate::supervisor::Startup;
use crate::supervisor::state::{Action, Event, State};
use crate::supervisor::unit::Ready;
use crate::supervisor::{Backoff, ProcessInfo, RestartInfo};
use nix::sys::signal::Signal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Actor {
    pub(super) async fn execute(&mut self, action: Action, now: Instant, pending: &mut Vec<Event>) {
        match action {
            Action::Spawn => pending.push(self.spawn().await),
            Action::Kill => self.signal(Signal::SIGKILL, "restart"),
            Action::Terminate => {
                if self.life.state.name() == StateName::Stopping {
                    self.out.observer.stopping();
                }
                self.signal(self.unit.stop_signal(), "terminate");
                self.signal(Signal::SIGCONT, "terminate");
                self.timers.kill_at = Some(now + self.unit.spec.stop_grace);
            }
            Action::ReapGroup => self.reap_group().await,
            Action::WakeAt { at, generation } => self.arm_wake(at, generation, now),
            Action::CancelWake => self.timers.wake = None,
            Action::UptimeAt { at, pid } => {
                self.timers.uptime = Some(at);
                self.timers.uptime_pid = pid;
            }
            Action::Ready => self.on_ready(now),
            Action::RecordRestart {
                reason,
                detected_at,
            } => self.record_restart(reason, detected_at, now),
            Action::Repair(layer) => {
                // Off the loop: re-creating the lock file is disk work.
                let registry = self.ctx.registry.clone();
                tokio::task::spawn_blocking(move || match registry.repair(layer) {
                    Ok(done) => tracing::warn!(layer = layer.as_str(), "{done}"),
                    Err(e) => tracing::error!(layer = layer.as_str(), error = %e, "repair failed"),
                });
            }
            Action::Finish => {
                self.out.observer.stopped();
                self.finished = true;
            }
        }
    }

    fn arm_wake(&mut self, t: Instant, generation: u64, now: Instant) {
        self.timers.wake = Some(t);
        self.timers.wake_generation = generation;
        self.snap.backoff = match self.life.state {
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

    fn record_restart(&mut self, reason: RestartReason, detected_at: Instant, now: Instant) {
        let hang = matches!(reason, RestartReason::Unhealthy { .. });
        let detection = if hang {
            self.timers
                .first_failed_probe
                .map(|t| detected_at.saturating_duration_since(t))
        } else {
            self.timers
                .exit_seen_at
                .take()
                .map(|t| now.saturating_duration_since(t))
        };
        let delay = self
            .timers
            .wake
            .map(|w| w.saturating_duration_since(now))
            .unwrap_or_default();
        self.timers.failure_seen_at = Some(detected_at);
        let r = &mut self.snap.restarts;
        r.count += 1;
        r.last_detection_ms = detection.map(ms).or(r.last_detection_ms);
        r.last_reason = Some(reason.clone());
        let failed_pid = self.timers.exited_pid.take();
        r.remember(crate::supervisor::RestartRecord {
            at_unix_ms: unix_now_ms(),
            reason: reason.clone(),
            exit: failed_pid.and(r.last_exit),
            pid: failed_pid,
            detection_ms: detection.map(ms),
            recovery_ms: None,
        });
        tracing::warn!(unit = %self.unit.spec.name, reason = reason.label(), count = r.count, delay_ms = delay.as_millis() as u64, "restarting");
        self.out.observer.restart(&RestartInfo {
            reason: reason.clone(),
            attempt: self.life.state.attempt(),
            backoff: delay,
            detection,
        });
        if let RestartReason::SpawnFailed { error } = &reason {
            self.snap.last_error = Some(error.clone());
        }
        // A service that never got ready in its own time fails the first
        // start at once, naming itself and what it waited for (Temporal's
        // first start is bounded by `start`'s own --timeout).
        if reason == RestartReason::StartTimeout && !self.unit.spec.kind.is_temporal() {
            self.report_startup(Startup::Failed {
                code: Code::StartTimeout,
                message: format!(
                    "{} was not ready within {} s: {}",
                    self.unit.spec.title(),
                    self.unit.spec.rules.start_timeout.as_secs_f64(),
                    self.snap.not_ready_reason()
                ),
            });
        }
    }

    pub(super) fn on_exit(&mut self, status: crate::model::ExitStatus) {
        let Some(live) = &self.live else { return };
        let pid = live.child.pid;
        self.timers.exited_pid = Some(pid);
        let r = &mut self.snap.restarts;
        r.last_exit = Some(status);
        r.last_exit_description = Some(status.describe());
        r.last_exit_at_unix_ms = Some(unix_now_ms());
        if self.life.state.name() == StateName::Stopping {
            tracing::info!(unit = %self.unit.spec.name, pid, status = %status.describe(), "exited");
        } else {
            tracing::warn!(unit = %self.unit.spec.name, pid, status = %status.describe(), "exited");
        }
        self.out.observer.exited(pid, status);
    }

    /// A first start that ended before the process was ever ready: a
    /// failure, unless it was a one-shot that completed (exit 0, and its
    /// restart policy does not start it again).
    pub(super) fn startup_exit(&mut self) {
        let last = self.snap.restarts.last_exit;
        if self.life.state == State::Exited && last == Some(crate::model::ExitStatus::Code(0)) {
            let pid = self.timers.exited_pid.unwrap_or(0);
            self.report_startup(Startup::Ready { pid });
            return;
        }
        let why = self
            .snap
            .restarts
            .last_exit_description
            .clone()
            .unwrap_or_default();
        let what = self.unit.spec.title();
        self.report_startup(Startup::Failed {
            code: Code::StartFailed,
            message: format!("{what} exited during startup ({why})"),
        });
    }

    fn on_ready(&mut self, now: Instant) {
        let exe_in_identity = self.unit.is_temporal();
        let Some(live) = &mut self.live else { return };
        let pid = live.child.pid;
        // The executable is recorded now: a shim may have exec'd the real
        // binary since the spawn, and identity checks compare against that.
        if exe_in_identity {
            live.identity.exe = process::proc::exe(pid);
        }
        let start = now.saturating_duration_since(live.child.spawned_at);
        let recovery = self
            .timers
            .failure_seen_at
            .take()
            .map(|t| now.saturating_duration_since(t));
        self.timers.first_failed_probe = None;
        if let Some(r) = recovery {
            self.snap.restarts.last_recovery_ms = Some(ms(r));
            self.snap.restarts.recovered(ms(r));
        }
        self.snap.backoff = None;
        self.snap.last_error = None;
        // The readiness line is not checked again once seen.
        self.snap.health.remove(&crate::model::Layer::Log);
        let exe = process::proc::exe(pid).map(|p| p.display().to_string());
        if let Some(t) = &mut self.snap.process {
            t.exe = exe;
            t.serving_since_unix_ms = Some(unix_now_ms());
        }
        self.write_pid_file();
        tracing::info!(unit = %self.unit.spec.name, pid, start_ms = ms(start), recovery_ms = ?recovery.map(ms), "ready");
        self.out.observer.serving(pid, start, recovery);
        self.report_startup(Startup::Ready { pid });
    }

    /// Spawn the unit's process (its ports checked free first), with its
    /// output pumped into its log.
    async fn spawn(&mut self) -> Event {
        for &addr in &self.unit.spec.binds {
            if let Err(who) = ports::wait_free(addr, &[], Instant::now()) {
                let error = format!("port {} is in use by {who}", addr.port());
                self.report_startup(Startup::Failed {
                    code: Code::PortInUse,
                    message: error.clone(),
                });
                return Event::SpawnFailed { error };
            }
        }
        let attempt = self.life.state.attempt();
        // A connection kept to the previous process is of no use now.
        self.unit.reset_checks();
        let spec = match self.unit.spawn_spec() {
            Ok(spec) => spec,
            Err(error) => {
                self.report_startup(Startup::Failed {
                    code: Code::StartFailed,
                    message: format!("service {}: {error}", self.unit.spec.name),
                });
                return Event::SpawnFailed { error };
            }
        };
        let mut child = match self.ctx.spawner.spawn(spec).await {
            Ok(child) => child,
            Err(e) => {
                let error = format!("cannot run {}: {e}", self.unit.program());
                self.report_startup(Startup::Failed {
                    code: Code::StartFailed,
                    message: error.clone(),
                });
                return Event::SpawnFailed { error };
            }
        };
        let pid = child.pid;
        // The previous process's pumps have reached EOF (or will).
        self.pumps.clear();
        self.pump_output(&mut child);
        let identity = Identity::of(pid).map_or(
            Identity {
                pid,
                pgid: pid,
                start_time: 0,
                exe: None,
            },
            |id| Identity { exe: None, ..id },
        );
        // Verdicts belong to the process they measured: a new one has none.
        self.snap.health.clear();
        self.snap.process = Some(ProcessInfo {
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
        self.probe_at = Some(Instant::now());
        tracing::info!(unit = %self.unit.spec.name, pid, attempt, "spawned");
        self.out.observer.spawned(pid, attempt);
        Event::Spawned { pid }
    }

    /// Copy the child's stdout and stderr into the unit's log; for a unit
    /// that is ready when it logs a line, watch for that line.
    pub(super) fn pump_output(&mut self, child: &mut process::Spawned) {
        let pumps = pump_child(
            child,
            &self.unit,
            &self.ready_lines.0,
            &self.ctx.logs,
            &self.log,
        );
        self.pumps.extend(pumps);
    }

    /// After the leader's exit: SIGKILL whatever is left in its group and
    /// wait until the group is empty, so one process runs at a time.
    async fn reap_group(&mut self) {
        self.timers.kill_at = None;
        self.probe = None;
        let Some(live) = self.live.take() else { return };
        let pgid = live.child.pgid();
        if process::group::group_alive(pgid) {
            let _ = process::signal_group(pgid, Signal::SIGKILL);
            if !process::wait_group_gone(pgid, Instant::now() + Duration::from_secs(5)).await {
                tracing::error!(unit = %self.unit.spec.name, pgid, "processes of the group survived SIGKILL");
            }
        }
        self.snap.process = None;
        self.write_pid_file();
    }

    /// Signal the child's group. Safe without re-verifying identity: the
    /// child is ours and not yet reaped, so its pid cannot have been reused.
    pub(super) fn signal(&self, sig: Signal, why: &str) {
        let Some(live) = &self.live else { return };
        if live.child.exit_status().is_some() {
            return;
        }
        tracing::debug!(
            unit = %self.unit.spec.name,
            pgid = live.child.pgid(),
            signal = sig.as_str(),
            why,
            "signal group"
        );
        if let Err(e) = process::signal_group(live.child.pgid(), sig) {
            tracing::warn!(unit = %self.unit.spec.name, error = %e, signal = sig.as_str(), "cannot signal the group");
        }
    }

    /// Tell the PID file's writer who runs now.
    pub(super) fn write_pid_file(&self) {
        self.ctx.registry.set(
            &self.unit.spec.name,
            self.live.as_ref().map(|l| l.identity.clone()),
        );
    }

    /// Settle the startup outcome (the first one counts). It is sent from
    /// `publish`, after the snapshot says the same: a `start` that returns
    /// "ready" must find `/status` and `status` saying so too.
    pub(super) fn report_startup(&mut self, outcome: Startup) {
        if self.out.awaits_startup() && self.startup_outcome.is_none() {
            self.startup_outcome = Some(outcome);
        }
    }
}

/// Copy `child`'s stdout and stderr into `log`; for a unit that is ready
/// when it logs a line, watch for that line (its pid goes to `ready_tx`).
pub(super) fn pump_child(
    child: &mut process::Spawned,
    unit: &crate::supervisor::unit::Unit,
    ready_tx: &tokio::sync::mpsc::UnboundedSender<i32>,
    logs: &logfile::Logs,
    log: &crate::disk::LogStream,
) -> Vec<logfile::Pump> {
    let pid = child.pid;
    if let Ready::Log { seen, .. } = &unit.ready {
        seen.store(0, Ordering::Release);
    }
    let mut pumps = Vec::new();
    let pipes = [
        (child.stdout.take(), crate::disk::Stream::Stdout),
        (child.stderr.take(), crate::disk::Stream::Stderr),
    ];
    for (fd, stream) in pipes {
        let Some(fd) = fd else { continue };
        let on_line: Option<logfile::OnLine> = match &unit.ready {
            Ready::Log { regex, seen } => {
                let (regex, seen, tx) = (regex.clone(), seen.clone(), ready_tx.clone());
                Some(Box::new(move |line: &[u8]| {
                    if seen.load(Ordering::Acquire) == pid {
                        return false;
                    }
                    if regex.is_match(&String::from_utf8_lossy(line)) {
                        seen.store(pid, Ordering::Release);
                        let _ = tx.send(pid);
                        return false;
                    }
                    true
                }))
            }
            _ => None,
        };
        match logs.pump(fd, stream, log.clone(), on_line) {
            Ok(p) => pumps.push(p),
            Err(e) => {
                tracing::warn!(unit = %unit.spec.name, error = %e, "cannot read the process's output")
            }
        }
    }
    pumps
}
