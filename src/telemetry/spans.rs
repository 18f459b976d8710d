//! Supervisor events as spans (exported when OTLP is on); a service's are
//! named `service.*` instead of `temporal.*` and carry `service`:
//!
//! - `temporal.process`: one Temporal process, spawn → exit; health-check
//!   failures are events on it; `exit.code` / `exit.signal` when it ends.
//! - `temporal.start`: spawn → first SERVING (child of the process span).
//! - `temporal.restart`: restart decision → serving again, with the cause
//!   (`reason`, `exit.code`, `exit.signal`, `failed_layer`, `attempt`,
//!   `backoff_ms`, `detection_ms`), linked to the process span that failed.
//! - `temporal.stop`: shutdown requested → supervision over.
//!
//! The log lines these emit carry `trace_id` so logs and traces join up.

use crate::health::Check;
use crate::model::ExitStatus;
use crate::model::RestartReason;
use crate::supervisor::{Observer, RestartInfo};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use std::sync::Mutex;
use std::time::Duration;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[derive(Default)]
struct Open {
    process: Option<Span>,
    start: Option<Span>,
    restart: Option<Span>,
    stop: Option<Span>,
    failed: Option<SpanContext>,
}

/// Turns one unit's supervisor events into spans: `temporal.*` for
/// Temporal, `service.*` (with a `service` attribute) for a service.
#[derive(Default)]
pub struct SpanObserver {
    open: Mutex<Open>,
    /// The service, or `None` for Temporal.
    service: Option<String>,
}

/// A root or child span named `temporal.SUFFIX` or `service.SUFFIX`.
macro_rules! unit_span {
    ($obs:expr, parent: $parent:expr, $suffix:literal $(, $($fields:tt)*)?) => {
        match &$obs.service {
            None => tracing::info_span!(parent: $parent, concat!("temporal.", $suffix) $(, $($fields)*)?),
            Some(name) => tracing::info_span!(parent: $parent, concat!("service.", $suffix), service = %name $(, $($fields)*)?),
        }
    };
}

fn ids(span: &Span) -> (String, String) {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.trace_id().to_string(), sc.span_id().to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl SpanObserver {
    /// Spans of unit `name`, of `kind` (Temporal's spans are
    /// `temporal.*`; a service's `service.*`, with its name).
    pub fn new(name: &str, kind: crate::model::Kind) -> Self {
        SpanObserver {
            open: Mutex::default(),
            service: (!kind.is_temporal()).then(|| name.to_string()),
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Observer for SpanObserver {
    fn spawned(&self, pid: i32, attempt: u32) {
        let mut o = self.open();
        let process = unit_span!(self, parent: None, "process", pid, attempt, exit.code = Empty, exit.signal = Empty);
        let start = unit_span!(self, parent: &process, "start", pid, attempt, start_ms = Empty, outcome = Empty);
        let (trace_id, _) = ids(&start);
        tracing::debug!(parent: &start, pid, trace_id, "start span opened");
        o.process = Some(process);
        o.start = Some(start);
    }

    fn serving(&self, pid: i32, start: Duration, recovery: Option<Duration>) {
        let mut o = self.open();
        if let Some(s) = o.start.take() {
            s.record("start_ms", ms(start));
            s.record("outcome", "serving");
        }
        if let Some(r) = o.restart.take() {
            r.record("new_pid", pid);
            if let Some(rec) = recovery {
                r.record("recovery_ms", ms(rec));
            }
            let (trace_id, _) = ids(&r);
            tracing::info!(parent: &r, pid, trace_id, "recovered");
        }
    }

    fn probe(&self, c: &Check) {
        if c.ok {
            return;
        }
        let o = self.open();
        if let Some(p) = &o.process {
            tracing::warn!(parent: p, layer = c.layer.as_str(), reason = %c.reason, latency_ms = ms(c.latency), "health check failed");
        }
    }

    fn exited(&self, _pid: i32, status: ExitStatus) {
        let mut o = self.open();
        if let Some(p) = o.process.take() {
            match status {
                ExitStatus::Code(c) => p.record("exit.code", c),
                ExitStatus::Signal(s) => p.record("exit.signal", s),
            };
            o.failed = Some(p.context().span().span_context().clone());
        }
        if let Some(s) = o.start.take() {
            s.record("outcome", "exited");
        }
    }

    fn restart(&self, info: &RestartInfo) {
        let mut o = self.open();
        let span = unit_span!(
            self,
            parent: None,
            "restart",
            reason = info.reason.label(),
            attempt = info.attempt,
            backoff_ms = ms(info.backoff),
            detection_ms = Empty,
            exit.code = Empty,
            exit.signal = Empty,
            failed_layer = Empty,
            new_pid = Empty,
            recovery_ms = Empty,
        );
        match &info.reason {
            RestartReason::Exited { code } => {
                span.record("exit.code", code);
            }
            RestartReason::Signaled { signal } => {
                span.record("exit.signal", signal);
            }
            RestartReason::Unhealthy { layer } => {
                span.record("failed_layer", layer.as_str());
            }
            _ => {}
        }
        if let Some(d) = info.detection {
            span.record("detection_ms", ms(d));
        }
        if let Some(cx) = o.failed.take() {
            span.add_link(cx);
        }
        let (trace_id, _) = ids(&span);
        tracing::info!(parent: &span, reason = info.reason.label(), trace_id, "restart span opened");
        o.restart = Some(span);
    }

    fn stopping(&self) {
        let mut o = self.open();
        // A restart in progress will not complete.
        if let Some(r) = o.restart.take() {
            r.record("new_pid", -1);
        }
        let span = unit_span!(self, parent: None, "stop");
        let (trace_id, _) = ids(&span);
        tracing::info!(parent: &span, trace_id, "stopping");
        o.stop = Some(span);
    }

    fn stopped(&self) {
        let mut o = self.open();
        o.start = None;
        o.process = None;
        o.restart = None;
        o.stop = None;
    }
}
