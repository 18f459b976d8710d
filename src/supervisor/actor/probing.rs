//! Probing: when health rounds run (every startup interval until ready,
//! then every health interval, on a fixed cadence), what they check, and
//! how a finished round becomes a snapshot update and state-machine events.

use super::{Actor, ProbeFuture};
use crate::health::{self, Round, Target};
use crate::model::StateName;
use crate::model::clock::unix_now_ms;
use crate::supervisor::fold_checks;
use crate::supervisor::state::Event;
use std::time::{Duration, Instant};

impl Actor {
    pub(super) fn wants_probes(&self) -> bool {
        self.live.is_some()
            && matches!(
                self.life.state.name(),
                StateName::Starting | StateName::Running | StateName::Unhealthy
            )
    }

    /// Every startup interval until ready, every health interval while
    /// ready; once a check has failed (unhealthy), at once: a hang is
    /// confirmed by back-to-back short checks, not whole intervals.
    pub(super) fn probe_interval(&self) -> Duration {
        match self.life.state.name() {
            StateName::Starting => self.unit.spec.timing.startup_interval,
            StateName::Unhealthy => Duration::ZERO,
            _ => self.unit.spec.timing.health_interval,
        }
    }

    /// Does the adaptive detector set the next round's timeout (not a
    /// fixed timeout, nor a fixed confirmation timeout)?
    fn adaptive_now(&self) -> bool {
        let confirming = self.life.state.name() == StateName::Unhealthy;
        self.unit.detector.is_adaptive() && (self.unit.spec.timing.adaptive_confirm || !confirming)
    }

    /// The detector's timeout (adaptive, or the fixed one); while
    /// confirming a failure, the confirmation timeout when that is fixed;
    /// for a second look under CPU pressure, the detector's cap.
    pub(super) fn probe_timeout(&self) -> Duration {
        let confirming = self.life.state.name() == StateName::Unhealthy;
        if confirming && !self.unit.spec.timing.adaptive_confirm {
            return self.unit.spec.timing.confirm_timeout;
        }
        let lag = self.ctx.heartbeat.lag();
        if self.second_look {
            return self.unit.detector.widened(lag);
        }
        self.unit.detector.timeout(lag)
    }

    pub(super) fn start_round(&self) -> Option<ProbeFuture> {
        let live = self.live.as_ref()?;
        let plan = if self.life.state.name() == StateName::Starting {
            self.unit.ready_plan()
        } else {
            self.unit.health.clone()
        };
        let timeout = self.probe_timeout();
        let target = Target {
            files: self.files.clone(),
            identity: Some(live.identity.clone()),
            plan,
            timeout,
            // Measured only where a timeout could earn a second look.
            pressure: self.adaptive_now()
                && !self.second_look
                && self.life.state.name() != StateName::Starting,
        };
        Some(Box::pin(health::round(target)))
    }

    /// Fold a finished round into the snapshot; turn it into an event if it
    /// is about the current child; a tampered lock or PID file is an event
    /// of its own.
    pub(super) fn absorb(&mut self, round: Round) -> Vec<Event> {
        let quiet_startup = self.life.state.name() == StateName::Starting;
        let second_look = std::mem::take(&mut self.second_look);
        // The detector learns from the answers of the server itself while
        // it serves (Temporal's port layer is a TCP connect, not an
        // answer). Not while it starts: a server warming up answers many
        // times slower, and with a few restarts in its window those
        // answers would set the p99 and hold the threshold up for minutes.
        let answers =
            |c: &&health::Check| c.ok && c.layer.answers() && c.layer != crate::model::Layer::Port;
        if !quiet_startup {
            for c in round.checks.iter().filter(answers) {
                self.unit.detector.observe(c.latency);
            }
        }
        // A timeout that fired far later than asked: the daemon was not
        // running, so the check says nothing about the server. Asked
        // again at once; not counted.
        if round
            .checks
            .iter()
            .any(|c| !c.ok && c.timed_out && health::detector::late(c.latency, round.timeout))
        {
            tracing::info!(unit = %self.unit.spec.name, "a check's timer fired late (the daemon was starved): not counted");
            self.out.observer.check_retried(health::Retry::LateTimer);
            self.probe_at = Some(Instant::now());
            return vec![];
        }
        // A check that timed out while tasks on the host queued for a CPU
        // (ten log floods, a build) may only have found the server
        // starved, not hung: one more look, with the cap, before it
        // counts. A stopped or deadlocked server makes no pressure, so a
        // hang on a quiet host is confirmed as fast as ever; on a busy
        // one, the second look costs at most the cap.
        let contended = round
            .pressure
            .filter(|&share| self.unit.detector.contended(share));
        if let Some(share) = contended.filter(|_| !second_look && !quiet_startup) {
            tracing::info!(
                unit = %self.unit.spec.name,
                cpu_pressure = format_args!("{:.0} %", share * 100.0),
                "a check timed out while the host's CPUs were contended: asked again with the cap, not counted"
            );
            self.out.observer.check_retried(health::Retry::CpuPressure);
            self.second_look = true;
            self.probe_at = Some(Instant::now());
            return vec![];
        }
        // The process has exited but its exit event is not here yet (a
        // multi-threaded leader is a zombie a few ms before the pidfd
        // turns readable): a crash, reported as one by that event, not a
        // hang to confirm with checks back to back.
        let own_child = self.live.as_ref().map(|l| l.child.pid) == Some(round.pid);
        if own_child && round.checks.iter().any(|c| !c.ok && c.exiting) {
            let pause = match self.probe_interval() {
                d if d.is_zero() => self.unit.spec.timing.health_interval,
                d => d,
            };
            self.probe_at = Some(Instant::now() + pause);
            return vec![];
        }
        let timeout = self.probe_timeout();
        self.snap.check_timeout_ms = Some(timeout.as_secs_f64() * 1e3);
        self.out.observer.check_timeout(timeout);
        fold_checks(&mut self.snap.health, &round.checks, unix_now_ms());
        for c in &round.checks {
            // The application not answering yet while it starts is
            // expected; that is not a health-check failure.
            let expected = quiet_startup && !c.ok && c.layer.answers();
            if !expected {
                self.out.observer.probe(c);
            }
            if !c.ok && !quiet_startup {
                tracing::warn!(unit = %self.unit.spec.name, layer = c.layer.as_str(), reason = %c.reason, "health check failed");
            }
        }
        let mut events: Vec<Event> = round
            .tampered()
            .map(|layer| Event::Tampered { layer })
            .collect();
        if self.live.as_ref().map(|l| l.child.pid) != Some(round.pid) {
            return events;
        }
        events.push(match round.failed() {
            None => {
                if !quiet_startup {
                    self.timers.first_failed_probe = None;
                }
                Event::ProbeOk { pid: round.pid }
            }
            Some(layer) => {
                if !quiet_startup && self.timers.first_failed_probe.is_none() {
                    self.timers.first_failed_probe = Some(Instant::now());
                }
                Event::ProbeFailed {
                    pid: round.pid,
                    layer,
                }
            }
        });
        events
    }
}
