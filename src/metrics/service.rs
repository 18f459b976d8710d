//! The services' series: `stigmer_service_*`, labelled `service`, moved
//! by one [`ServiceObserver`] per service. Temporal keeps its own
//! `stigmer_temporal_*` series.

use super::{histogram, reg};
use crate::health::Check;
use crate::model::{Layer, RestartReason, StateName};

use crate::supervisor::{Observer, RestartInfo};
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::time::Duration;

/// Restart reasons, exported from the start.
const REASONS: [&str; 6] = [
    "exited",
    "signaled",
    "unhealthy",
    "start_timeout",
    "manual",
    "spawn_failed",
];

/// Every service series.
#[derive(Clone)]
pub struct ServiceMetrics {
    up: IntGaugeVec,
    state: IntGaugeVec,
    restarts: IntCounterVec,
    detection: HistogramVec,
    recovery: HistogramVec,
    start: HistogramVec,
    probe_failures: IntCounterVec,
    probe_duration: HistogramVec,
}

impl ServiceMetrics {
    /// Create and register the families in `r`.
    pub fn new(r: &Registry) -> prometheus::Result<Self> {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            reg(r, IntGaugeVec::new(Opts::new(name, help), labels)?)
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(r, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let hist = |name: &str, help: &str, labels: &[&str]| {
            reg(r, HistogramVec::new(histogram(name, help), labels)?)
        };
        Ok(ServiceMetrics {
            up: vec(
                "stigmer_service_up",
                "1 when the service is ready",
                &["service"],
            )?,
            state: vec(
                "stigmer_service_state",
                "1 for the service's current supervisor state, 0 for the others",
                &["service", "state"],
            )?,
            restarts: counter(
                "stigmer_service_restarts_total",
                "Restarts of a service by reason",
                &["service", "reason"],
            )?,
            detection: hist(
                "stigmer_service_failure_detection_seconds",
                "exit: kernel exit notification to restart decision; hang: first failed health check to restart decision",
                &["service", "kind"],
            )?,
            recovery: hist(
                "stigmer_service_recovery_seconds",
                "Failure detected to the service ready again",
                &["service"],
            )?,
            start: hist(
                "stigmer_service_start_duration_seconds",
                "Spawn of a service process to ready",
                &["service"],
            )?,
            probe_failures: counter(
                "stigmer_service_health_check_failures_total",
                "Failed health checks of a service by layer",
                &["service", "layer"],
            )?,
            probe_duration: hist(
                "stigmer_service_health_check_duration_seconds",
                "Duration of a service's health checks by layer",
                &["service", "layer"],
            )?,
        })
    }

    /// The observer of service `name`, its label values exported from the
    /// start so rates and alerts work before the first event.
    pub fn observer(&self, name: &str) -> ServiceObserver {
        self.up.with_label_values(&[name]).set(0);
        for s in StateName::ALL {
            self.state
                .with_label_values(&[name, s.as_str()])
                .set(i64::from(s == StateName::Waiting));
        }
        for reason in REASONS {
            self.restarts.with_label_values(&[name, reason]);
        }
        for kind in ["exit", "hang"] {
            self.detection.with_label_values(&[name, kind]);
        }
        // Histograms too: a series that first appears already counting two
        // recoveries (both between two scrapes) shows no increase to rate().
        self.recovery.with_label_values(&[name]);
        self.start.with_label_values(&[name]);
        for l in Layer::SERVICE {
            self.probe_failures.with_label_values(&[name, l.as_str()]);
        }
        ServiceObserver {
            m: self.clone(),
            name: name.to_string(),
        }
    }
}

/// Moves one service's series.
pub struct ServiceObserver {
    m: ServiceMetrics,
    name: String,
}

impl Observer for ServiceObserver {
    fn state_changed(&self, from: StateName, to: StateName) {
        let n = self.name.as_str();
        self.m.state.with_label_values(&[n, from.as_str()]).set(0);
        self.m.state.with_label_values(&[n, to.as_str()]).set(1);
        self.m
            .up
            .with_label_values(&[n])
            .set(i64::from(to == StateName::Running));
    }

    fn adopted(&self, state: StateName, _pid: Option<i32>) {
        let n = self.name.as_str();
        for s in StateName::ALL {
            self.m
                .state
                .with_label_values(&[n, s.as_str()])
                .set(i64::from(s == state));
        }
        self.m
            .up
            .with_label_values(&[n])
            .set(i64::from(state == StateName::Running));
    }

    fn probe(&self, c: &Check) {
        let labels = [self.name.as_str(), c.layer.as_str()];
        self.m
            .probe_duration
            .with_label_values(&labels)
            .observe(c.latency.as_secs_f64());
        if !c.ok {
            self.m.probe_failures.with_label_values(&labels).inc();
        }
    }

    fn restart(&self, info: &RestartInfo) {
        let n = self.name.as_str();
        self.m
            .restarts
            .with_label_values(&[n, info.reason.label()])
            .inc();
        if let Some(d) = info.detection {
            let kind = if matches!(info.reason, RestartReason::Unhealthy { .. }) {
                "hang"
            } else {
                "exit"
            };
            self.m
                .detection
                .with_label_values(&[n, kind])
                .observe(d.as_secs_f64());
        }
    }

    fn serving(&self, _pid: i32, start: Duration, recovery: Option<Duration>) {
        let n = self.name.as_str();
        self.m
            .start
            .with_label_values(&[n])
            .observe(start.as_secs_f64());
        if let Some(r) = recovery {
            self.m
                .recovery
                .with_label_values(&[n])
                .observe(r.as_secs_f64());
        }
    }
}
