//! One type for the metrics of every unit: the same families are built
//! twice, once for Temporal (`stigmer_temporal_*`, no unit label) and once
//! for the services (`stigmer_service_*`, labelled `service`), and each
//! unit gets a [`UnitMetrics`] over its kind's families and its label.
//! The names and labels are those the README documents (the dashboards
//! and alert rules use them).

use super::{histogram, reg};
use crate::health::Check;
use crate::model::{ExitStatus, Layer, RestartKind, StateName};
use crate::process::proc;
use crate::supervisor::{Observer, RestartInfo};
use prometheus::{CounterVec, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::sync::Mutex;
use std::time::Duration;

/// Which units a family set is for.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// Metric name prefix (`stigmer_temporal`, `stigmer_service`).
    prefix: &'static str,
    /// The label naming the unit, if the family has one.
    label: Option<&'static str>,
    /// How help texts name the unit.
    what: &'static str,
    /// The health layers a unit of this kind has.
    layers: &'static [Layer],
}

impl Kind {
    /// Temporal's families: `stigmer_temporal_*`, no unit label.
    pub const TEMPORAL: Kind = Kind {
        prefix: "stigmer_temporal",
        label: None,
        what: "Temporal",
        layers: &Layer::TEMPORAL,
    };
    /// The services': `stigmer_service_*{service}`.
    pub const SERVICE: Kind = Kind {
        prefix: "stigmer_service",
        label: Some("service"),
        what: "a service",
        layers: &Layer::SERVICE,
    };
}

/// The families of one kind of unit.
pub struct Families {
    kind: Kind,
    up: IntGaugeVec,
    state: IntGaugeVec,
    restarts: IntCounterVec,
    exits: IntCounterVec,
    detection: HistogramVec,
    recovery: HistogramVec,
    start: HistogramVec,
    probe_failures: IntCounterVec,
    probe_retries: IntCounterVec,
    probe_duration: HistogramVec,
    pid: IntGaugeVec,
    cpu: CounterVec,
    rss: IntGaugeVec,
    pollers: IntGaugeVec,
    check_timeout: GaugeVec,
    last_poll: GaugeVec,
    last_heartbeat: GaugeVec,
}

impl Families {
    /// Create and register the families of `kind` in `r`.
    pub fn new(r: &Registry, kind: Kind) -> prometheus::Result<Families> {
        let name = |suffix: &str| format!("{}_{suffix}", kind.prefix);
        let labels = |extra: &[&'static str]| -> Vec<&'static str> {
            kind.label
                .into_iter()
                .chain(extra.iter().copied())
                .collect()
        };
        let what = kind.what;
        let gauge = |suffix: &str, help: String, extra: &[&'static str]| {
            reg(
                r,
                IntGaugeVec::new(Opts::new(name(suffix), help), &labels(extra))?,
            )
        };
        let counter = |suffix: &str, help: String, extra: &[&'static str]| {
            reg(
                r,
                IntCounterVec::new(Opts::new(name(suffix), help), &labels(extra))?,
            )
        };
        let hist = |suffix: &str, help: String, extra: &[&'static str]| {
            reg(
                r,
                HistogramVec::new(histogram(&name(suffix), &help), &labels(extra))?,
            )
        };
        Ok(Families {
            kind,
            up: gauge("up", format!("1 while {what} is ready (state running)"), &[])?,
            state: gauge(
                "state",
                format!("1 for the current supervisor state of {what}, 0 for the others"),
                &["state"],
            )?,
            restarts: counter("restarts_total", format!("Restarts of {what} by reason"), &["reason"])?,
            exits: counter(
                "exits_total",
                format!("Exits of processes of {what} by how they ended (code or signal)"),
                &["how"],
            )?,
            detection: hist(
                "failure_detection_seconds",
                "exit: kernel exit notification to restart decision; hang: first failed health check to restart decision".into(),
                &["kind"],
            )?,
            recovery: hist(
                "recovery_seconds",
                format!("Failure detected to {what} ready again"),
                &[],
            )?,
            start: hist(
                "start_duration_seconds",
                format!("Spawn of a process of {what} to ready"),
                &[],
            )?,
            probe_failures: counter(
                "health_check_failures_total",
                format!("Failed health checks of {what} by layer"),
                &["layer"],
            )?,
            probe_retries: counter(
                "health_check_retries_total",
                format!("Timed-out health checks of {what} asked again instead of counted, by reason: late_timer (the daemon was not running when the timer was due), cpu_pressure (the host's CPUs were contended; asked again with the cap)"),
                &["reason"],
            )?,
            probe_duration: hist(
                "health_check_duration_seconds",
                format!("Duration of health checks of {what} by layer"),
                &["layer"],
            )?,
            pid: gauge("pid", format!("Pid of the current process of {what} (0 when none)"), &[])?,
            cpu: reg(
                r,
                CounterVec::new(
                    Opts::new(name("cpu_seconds_total"), format!("CPU time used by the processes of {what}")),
                    &labels(&[]),
                )?,
            )?,
            rss: gauge("resident_memory_bytes", format!("Resident memory of {what}"), &[])?,
            check_timeout: reg(
                r,
                GaugeVec::new(
                    Opts::new(
                        name("health_check_timeout_seconds"),
                        format!("The timeout of the next health checks of {what}: adaptive (4 x p99 of recent answers, with a floor and a cap, widened by the daemon's timer lag) or the fixed --health-timeout"),
                    ),
                    &labels(&[]),
                )?,
            )?,
            pollers: gauge(
                "task_queue_pollers",
                format!("Pollers of {what} on its Temporal task queue (task_queue checks)"),
                &[],
            )?,
            last_poll: reg(
                r,
                GaugeVec::new(
                    Opts::new(
                        name("task_queue_last_poll_timestamp_seconds"),
                        format!("When a poller of {what} last polled its task queue (Temporal's clock)"),
                    ),
                    &labels(&[]),
                )?,
            )?,
            last_heartbeat: reg(
                r,
                GaugeVec::new(
                    Opts::new(
                        name("worker_last_heartbeat_timestamp_seconds"),
                        format!("When a worker of {what} last sent Temporal a heartbeat (the worker's clock)"),
                    ),
                    &labels(&[]),
                )?,
            )?,
        })
    }
}

/// Counters of the supervisor's own health, labelled by unit whatever
/// its kind (for internal counters, one family for every unit is the
/// useful cut).
pub struct Internal {
    stale: IntCounterVec,
    errors: IntCounterVec,
}

impl Internal {
    /// Create and register them in `r`.
    pub fn new(r: &Registry) -> prometheus::Result<Internal> {
        Ok(Internal {
            stale: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "stigmer_stale_events_total",
                        "Events about an earlier process or backoff (a late timer, the exit or probe result of a replaced process), ignored, by unit and event",
                    ),
                    &["unit", "event"],
                )?,
            )?,
            errors: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "stigmer_internal_errors_total",
                        "Failures of a unit's supervisor (a bug), each contained and the supervisor rebuilt around its process",
                    ),
                    &["unit"],
                )?,
            )?,
        })
    }
}

/// The metrics of one unit: its kind's families, curried with its label.
pub struct UnitMetrics {
    internal: std::sync::Arc<Internal>,
    /// Its name (the `unit` label of the internal counters).
    name: String,
    f: std::sync::Arc<Families>,
    /// Its label value (none for Temporal's unlabelled families).
    unit: Option<String>,
    /// CPU already counted: (pid, CPU seconds).
    cpu_seen: Mutex<Option<(i32, f64)>>,
}

impl UnitMetrics {
    /// The metrics of unit `name` over `f`, every label value exported
    /// from the start (so rates and alerts work before the first event),
    /// continuing from `cpu_seen` (carried across an upgrade).
    pub fn new(
        f: std::sync::Arc<Families>,
        internal: std::sync::Arc<Internal>,
        name: &str,
        cpu_seen: Option<(i32, f64)>,
    ) -> Self {
        for event in crate::supervisor::state::Event::NAMES
            .iter()
            .chain(&[crate::supervisor::OBSERVED])
        {
            internal.stale.with_label_values(&[name, event]);
        }
        internal.errors.with_label_values(&[name]);
        let m = UnitMetrics {
            internal,
            name: name.to_string(),
            unit: f.kind.label.map(|_| name.to_string()),
            f,
            cpu_seen: Mutex::new(cpu_seen),
        };
        m.f.up.with_label_values(&m.labels(&[])).set(0);
        m.set_state(StateName::Stopped);
        for r in RestartKind::ALL {
            m.f.restarts.with_label_values(&m.labels(&[r.as_str()]));
        }
        for kind in ["exit", "hang"] {
            m.f.detection.with_label_values(&m.labels(&[kind]));
        }
        // Histograms too: a series that first appears already counting two
        // recoveries (both between two scrapes) shows no increase to rate().
        m.f.recovery.with_label_values(&m.labels(&[]));
        m.f.start.with_label_values(&m.labels(&[]));
        for l in m.f.kind.layers {
            m.f.probe_failures
                .with_label_values(&m.labels(&[l.as_str()]));
        }
        for r in crate::health::Retry::ALL {
            m.f.probe_retries
                .with_label_values(&m.labels(&[r.as_str()]));
        }
        m.f.pid.with_label_values(&m.labels(&[])).set(0);
        m.f.cpu.with_label_values(&m.labels(&[]));
        m.f.rss.with_label_values(&m.labels(&[])).set(0);
        m
    }

    /// Its label values followed by `extra`.
    fn labels<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        self.unit
            .as_deref()
            .into_iter()
            .chain(extra.iter().copied())
            .collect()
    }

    fn set_state(&self, state: StateName) {
        for s in StateName::ALL {
            self.f
                .state
                .with_label_values(&self.labels(&[s.as_str()]))
                .set(i64::from(s == state));
        }
        self.f
            .up
            .with_label_values(&self.labels(&[]))
            .set(i64::from(state == StateName::Running));
    }

    /// Sample its process's CPU and memory (at scrape time).
    pub fn sample(&self) {
        let pid = self.f.pid.with_label_values(&self.labels(&[])).get() as i32;
        let rss = self.f.rss.with_label_values(&self.labels(&[]));
        let mut seen = self.cpu_seen.lock().unwrap_or_else(|p| p.into_inner());
        let Some(u) = (pid > 0).then(|| proc::stat(pid)).flatten() else {
            rss.set(0);
            return;
        };
        let base = match *seen {
            Some((p, cpu)) if p == pid => cpu,
            _ => 0.0,
        };
        let cpu = u.cpu_seconds();
        if cpu > base {
            self.f
                .cpu
                .with_label_values(&self.labels(&[]))
                .inc_by(cpu - base);
        }
        *seen = Some((pid, cpu.max(base)));
        rss.set(u.rss_bytes() as i64);
    }

    /// The CPU already counted, to carry across an upgrade.
    pub fn cpu_seen(&self) -> Option<(i32, f64)> {
        *self.cpu_seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Observer for UnitMetrics {
    fn stale(&self, event: &'static str) {
        self.internal
            .stale
            .with_label_values(&[&self.name, event])
            .inc();
    }
    fn internal_error(&self) {
        self.internal.errors.with_label_values(&[&self.name]).inc();
    }
    fn state_changed(&self, from: StateName, to: StateName) {
        self.f
            .state
            .with_label_values(&self.labels(&[from.as_str()]))
            .set(0);
        self.f
            .state
            .with_label_values(&self.labels(&[to.as_str()]))
            .set(1);
        self.f
            .up
            .with_label_values(&self.labels(&[]))
            .set(i64::from(to == StateName::Running));
    }

    fn adopted(&self, state: StateName, pid: Option<i32>) {
        self.set_state(state);
        self.f
            .pid
            .with_label_values(&self.labels(&[]))
            .set(pid.map_or(0, i64::from));
    }

    fn check_retried(&self, why: crate::health::Retry) {
        self.f
            .probe_retries
            .with_label_values(&self.labels(&[why.as_str()]))
            .inc();
    }

    fn probe(&self, c: &Check) {
        let l = c.layer.as_str();
        self.f
            .probe_duration
            .with_label_values(&self.labels(&[l]))
            .observe(c.latency.as_secs_f64());
        if !c.ok {
            self.f
                .probe_failures
                .with_label_values(&self.labels(&[l]))
                .inc();
        }
        if let Some(q) = &c.queue {
            let none = self.labels(&[]);
            self.f
                .pollers
                .with_label_values(&none)
                .set(i64::from(q.pollers));
            if let Some(t) = q.last_poll_unix_ms {
                self.f
                    .last_poll
                    .with_label_values(&none)
                    .set(t as f64 / 1e3);
            }
            if let Some(t) = q.last_heartbeat_unix_ms {
                self.f
                    .last_heartbeat
                    .with_label_values(&none)
                    .set(t as f64 / 1e3);
            }
        }
    }

    fn check_timeout(&self, timeout: Duration) {
        self.f
            .check_timeout
            .with_label_values(&self.labels(&[]))
            .set(timeout.as_secs_f64());
    }

    fn spawned(&self, pid: i32, _attempt: u32) {
        self.f
            .pid
            .with_label_values(&self.labels(&[]))
            .set(i64::from(pid));
    }

    fn exited(&self, _pid: i32, status: ExitStatus) {
        let how = match status {
            ExitStatus::Code(c) => format!("code_{c}"),
            ExitStatus::Signal(s) => format!("signal_{s}"),
        };
        self.f.exits.with_label_values(&self.labels(&[&how])).inc();
        self.f.pid.with_label_values(&self.labels(&[])).set(0);
    }

    fn restart(&self, info: &RestartInfo) {
        self.f
            .restarts
            .with_label_values(&self.labels(&[info.reason.label()]))
            .inc();
        if let Some(d) = info.detection {
            let kind = if info.reason.is_hang() {
                "hang"
            } else {
                "exit"
            };
            self.f
                .detection
                .with_label_values(&self.labels(&[kind]))
                .observe(d.as_secs_f64());
        }
    }

    fn serving(&self, _pid: i32, start: Duration, recovery: Option<Duration>) {
        self.f
            .start
            .with_label_values(&self.labels(&[]))
            .observe(start.as_secs_f64());
        if let Some(r) = recovery {
            self.f
                .recovery
                .with_label_values(&self.labels(&[]))
                .observe(r.as_secs_f64());
        }
    }
}
