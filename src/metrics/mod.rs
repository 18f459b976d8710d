//! Prometheus metrics, registered in one place and moved by the
//! supervisor through the [`Observer`] hooks, so an event that logs also
//! counts: Temporal's `stigmer_temporal_*` series here, the services'
//! `stigmer_service_*` in [`service`]. Process resource figures are read
//! from `/proc` at scrape time.
//!
//! Every metric, its type and exact meaning is listed in the README.

pub mod service;

use crate::health::Check;
use crate::model::{ExitStatus, Layer, RestartReason, StateName};
use crate::process::proc;

use crate::supervisor::{Observer, RestartInfo};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Buckets from 1 ms to 60 s: probe latencies, detection, start and recovery.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
    5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0,
];

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    up: IntGauge,
    state: prometheus::IntGaugeVec,
    restarts: IntCounterVec,
    exits: IntCounterVec,
    detection: HistogramVec,
    recovery: Histogram,
    start: Histogram,
    probe_failures: IntCounterVec,
    probe_duration: HistogramVec,
    temporal_cpu: prometheus::Counter,
    temporal_rss: IntGauge,
    temporal_pid: IntGauge,
    sup_cpu: prometheus::Counter,
    sup_rss: IntGauge,
    sup_fds: IntGauge,
    sup_threads: IntGauge,
    services: service::ServiceMetrics,
    log_dropped: IntCounterVec,
    /// Each unit's log stats, with what of its dropped bytes is counted.
    logs: Mutex<Vec<(String, Arc<crate::disk::LogStats>, u64)>>,
    cpu_seen: Mutex<CpuSeen>,
    started: Gauge,
    /// What a previous daemon's counters and histograms had reached.
    carried: Vec<CarriedSeries>,
}

#[derive(Default)]
struct CpuSeen {
    temporal: Option<(i32, f64)>,
    supervisor: f64,
}

/// The counters and histograms of a daemon that hands over to the next
/// one on an upgrade: the next one adds them to its own at every scrape,
/// so no counter resets. (The supervisor's CPU counter needs nothing: the
/// process, and its CPU time, continue across the exec.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Carried {
    /// Every counter and histogram series.
    pub series: Vec<CarriedSeries>,
    /// The Temporal CPU already counted: (pid, CPU seconds).
    pub temporal_cpu_seen: Option<(i32, f64)>,
    /// When the supervisor started (Unix seconds).
    pub started_at_seconds: f64,
}

/// One counter or histogram series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedSeries {
    /// Family name.
    pub name: String,
    /// Family help (a family without series of its own yet is re-created).
    #[serde(default)]
    pub help: String,
    /// Label pairs, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Its values.
    pub value: CarriedValue,
}

/// A carried series' values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CarriedValue {
    /// A counter.
    Counter {
        /// Its value.
        value: f64,
    },
    /// A histogram.
    Histogram {
        /// Observations.
        count: u64,
        /// Their sum.
        sum: f64,
        /// Cumulative count per upper bound.
        buckets: Vec<(f64, u64)>,
    },
}

/// Not carried: the process's own CPU time continues by itself.
const NOT_CARRIED: &[&str] = &["stigmer_supervisor_cpu_seconds_total"];

fn labels_of(m: &prometheus::proto::Metric) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m
        .get_label()
        .iter()
        .map(|l| (l.name().to_string(), l.value().to_string()))
        .collect();
    v.sort();
    v
}

/// Add `c`'s values to the gathered families (a series the families lack
/// is added as it was).
fn add_carried(families: &mut Vec<prometheus::proto::MetricFamily>, carried: &[CarriedSeries]) {
    use prometheus::proto::{
        Bucket, Counter, Histogram, LabelPair, Metric, MetricFamily, MetricType,
    };
    for c in carried {
        let fam = match families.iter().position(|f| f.name() == c.name) {
            Some(i) => &mut families[i],
            None => {
                // A labelled family exports nothing until its first series.
                let mut f = MetricFamily::default();
                f.set_name(c.name.clone());
                f.set_help(c.help.clone());
                f.set_field_type(match c.value {
                    CarriedValue::Counter { .. } => MetricType::COUNTER,
                    CarriedValue::Histogram { .. } => MetricType::HISTOGRAM,
                });
                families.push(f);
                families.last_mut().expect("just pushed")
            }
        };
        let metrics = fam.mut_metric();
        let i = match metrics.iter().position(|m| labels_of(m) == c.labels) {
            Some(i) => i,
            None => {
                let labels = c
                    .labels
                    .iter()
                    .map(|(k, v)| {
                        let mut p = LabelPair::default();
                        p.set_name(k.clone());
                        p.set_value(v.clone());
                        p
                    })
                    .collect();
                metrics.push(Metric::from_label(labels));
                metrics.len() - 1
            }
        };
        let m = &mut metrics[i];
        match &c.value {
            CarriedValue::Counter { value } => {
                let mut counter = Counter::default();
                counter.set_value(m.get_counter().get_value() + value);
                m.set_counter(counter);
            }
            CarriedValue::Histogram {
                count,
                sum,
                buckets,
            } => {
                let mine = m.get_histogram().clone();
                let mut h = Histogram::default();
                h.set_sample_count(mine.get_sample_count() + count);
                h.set_sample_sum(mine.get_sample_sum() + sum);
                let merged = buckets
                    .iter()
                    .map(|&(bound, n)| {
                        let own = mine
                            .get_bucket()
                            .iter()
                            .find(|b| b.upper_bound() == bound)
                            .map_or(0, |b| b.cumulative_count());
                        let mut b = Bucket::default();
                        b.set_upper_bound(bound);
                        b.set_cumulative_count(own + n);
                        b
                    })
                    .collect();
                h.set_bucket(merged);
                m.set_histogram(h);
            }
        }
    }
}

/// Register `metric` and hand it back: each metric is written once.
fn reg<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> prometheus::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn histogram(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(BUCKETS.to_vec())
}

impl Metrics {
    /// Create and register everything.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let m = Metrics {
            up: reg(
                &registry,
                IntGauge::new(
                    "stigmer_temporal_up",
                    "1 when Temporal answers its gRPC health check",
                )?,
            )?,
            state: reg(
                &registry,
                prometheus::IntGaugeVec::new(
                    Opts::new(
                        "stigmer_temporal_state",
                        "1 for the supervisor's current state, 0 for the others",
                    ),
                    &["state"],
                )?,
            )?,
            restarts: reg(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "stigmer_temporal_restarts_total",
                        "Restarts of Temporal by reason",
                    ),
                    &["reason"],
                )?,
            )?,
            exits: reg(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "stigmer_temporal_exits_total",
                        "Exits of Temporal processes by how they ended (code or signal)",
                    ),
                    &["how"],
                )?,
            )?,
            detection: reg(
                &registry,
                HistogramVec::new(
                    histogram(
                        "stigmer_temporal_failure_detection_seconds",
                        "exit: kernel exit notification to restart decision; hang: first failed health check to restart decision",
                    ),
                    &["kind"],
                )?,
            )?,
            recovery: reg(
                &registry,
                Histogram::with_opts(histogram(
                    "stigmer_temporal_recovery_seconds",
                    "Failure detected to Temporal serving again",
                ))?,
            )?,
            start: reg(
                &registry,
                Histogram::with_opts(histogram(
                    "stigmer_temporal_start_duration_seconds",
                    "Spawn of a Temporal process to its first SERVING health answer",
                ))?,
            )?,
            probe_failures: reg(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "stigmer_temporal_health_check_failures_total",
                        "Failed health checks by layer",
                    ),
                    &["layer"],
                )?,
            )?,
            probe_duration: reg(
                &registry,
                HistogramVec::new(
                    histogram(
                        "stigmer_temporal_health_check_duration_seconds",
                        "Duration of health checks by layer",
                    ),
                    &["layer"],
                )?,
            )?,
            temporal_cpu: reg(
                &registry,
                prometheus::Counter::new(
                    "stigmer_temporal_cpu_seconds_total",
                    "CPU time used by supervised Temporal processes",
                )?,
            )?,
            temporal_rss: reg(
                &registry,
                IntGauge::new(
                    "stigmer_temporal_resident_memory_bytes",
                    "Resident memory of Temporal",
                )?,
            )?,
            temporal_pid: reg(
                &registry,
                IntGauge::new(
                    "stigmer_temporal_pid",
                    "Pid of the current Temporal process (0 when none)",
                )?,
            )?,
            sup_cpu: reg(
                &registry,
                prometheus::Counter::new(
                    "stigmer_supervisor_cpu_seconds_total",
                    "CPU time used by the supervisor",
                )?,
            )?,
            sup_rss: reg(
                &registry,
                IntGauge::new(
                    "stigmer_supervisor_resident_memory_bytes",
                    "Resident memory of the supervisor",
                )?,
            )?,
            sup_fds: reg(
                &registry,
                IntGauge::new(
                    "stigmer_supervisor_open_fds",
                    "Open file descriptors of the supervisor",
                )?,
            )?,
            sup_threads: reg(
                &registry,
                IntGauge::new("stigmer_supervisor_threads", "Threads of the supervisor")?,
            )?,
            services: service::ServiceMetrics::new(&registry)?,
            log_dropped: reg(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "stigmer_log_dropped_bytes_total",
                        "Bytes of a unit's output dropped because its log could not take them",
                    ),
                    &["service"],
                )?,
            )?,
            logs: Mutex::new(Vec::new()),
            cpu_seen: Mutex::new(CpuSeen::default()),
            started: Gauge::new(
                "stigmer_supervisor_start_time_seconds",
                "Start time of the supervisor (Unix seconds)",
            )?,
            carried: Vec::new(),
            registry,
        };
        let build = prometheus::IntGaugeVec::new(
            Opts::new("stigmer_build_info", "Build information; always 1"),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.started.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        let r = &m.registry;
        r.register(Box::new(build))?;
        r.register(Box::new(m.started.clone()))?;
        // Export every label value from the start, so rates and alerts work
        // before the first event.
        for s in StateName::ALL {
            m.state
                .with_label_values(&[s.as_str()])
                .set(i64::from(s == StateName::Stopped));
        }
        for l in Layer::TEMPORAL {
            m.probe_failures.with_label_values(&[l.as_str()]);
        }
        for reason in [
            "exited",
            "signaled",
            "unhealthy",
            "start_timeout",
            "manual",
            "spawn_failed",
        ] {
            m.restarts.with_label_values(&[reason]);
        }
        for kind in ["exit", "hang"] {
            m.detection.with_label_values(&[kind]);
        }
        Ok(m)
    }

    /// Everything registered, with what a previous daemon carried added.
    pub fn with_carried(carried: Carried) -> prometheus::Result<Self> {
        let mut m = Metrics::new()?;
        m.started.set(carried.started_at_seconds);
        m.cpu_seen
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .temporal = carried.temporal_cpu_seen;
        m.carried = carried.series;
        Ok(m)
    }

    /// Every series now (process figures sampled, carried values added).
    fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.sample();
        let mut families = self.registry.gather();
        add_carried(&mut families, &self.carried);
        families
    }

    /// What the next daemon continues from (see [`Carried`]).
    pub fn carry(&self) -> Carried {
        use prometheus::proto::MetricType;
        let mut series = Vec::new();
        for fam in self.gather() {
            if NOT_CARRIED.contains(&fam.name()) {
                continue;
            }
            for m in fam.get_metric() {
                let value = match fam.get_field_type() {
                    MetricType::COUNTER => CarriedValue::Counter {
                        value: m.get_counter().get_value(),
                    },
                    MetricType::HISTOGRAM => {
                        let h = m.get_histogram();
                        CarriedValue::Histogram {
                            count: h.get_sample_count(),
                            sum: h.get_sample_sum(),
                            buckets: h
                                .get_bucket()
                                .iter()
                                .map(|b| (b.upper_bound(), b.cumulative_count()))
                                .collect(),
                        }
                    }
                    _ => continue,
                };
                series.push(CarriedSeries {
                    name: fam.name().to_string(),
                    help: fam.help().to_string(),
                    labels: labels_of(m),
                    value,
                });
            }
        }
        let seen = self.cpu_seen.lock().unwrap_or_else(|p| p.into_inner());
        Carried {
            series,
            temporal_cpu_seen: seen.temporal,
            started_at_seconds: self.started.get(),
        }
    }

    /// Sample process figures and encode everything in the text format.
    pub fn render(&self) -> prometheus::Result<String> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// Count what unit `name`'s log drops (`service` label; Temporal's is
    /// `temporal`), from the start.
    pub fn watch_log(&self, name: &str, stats: Arc<crate::disk::LogStats>) {
        self.log_dropped.with_label_values(&[name]);
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.push((name.to_string(), stats, 0));
    }

    fn sample(&self) {
        {
            let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            for (name, stats, counted) in logs.iter_mut() {
                let now = stats.dropped_bytes();
                if now > *counted {
                    self.log_dropped
                        .with_label_values(&[name.as_str()])
                        .inc_by(now - *counted);
                    *counted = now;
                }
            }
        }
        let mut seen = self.cpu_seen.lock().unwrap_or_else(|p| p.into_inner());
        let pid = self.temporal_pid.get() as i32;
        if pid > 0
            && let Some(u) = proc::stat(pid)
        {
            let base = match seen.temporal {
                Some((p, cpu)) if p == pid => cpu,
                _ => 0.0,
            };
            let cpu = u.cpu_seconds();
            if cpu > base {
                self.temporal_cpu.inc_by(cpu - base);
            }
            seen.temporal = Some((pid, cpu.max(base)));
            self.temporal_rss.set(u.rss_bytes() as i64);
        } else {
            self.temporal_rss.set(0);
        }
        let me = std::process::id() as i32;
        if let Some(u) = proc::stat(me) {
            let cpu = u.cpu_seconds();
            if cpu > seen.supervisor {
                self.sup_cpu.inc_by(cpu - seen.supervisor);
                seen.supervisor = cpu;
            }
            self.sup_rss.set(u.rss_bytes() as i64);
            self.sup_threads.set(u.threads as i64);
        }
        self.sup_fds.set(proc::open_fds(me).map_or(0, |n| n as i64));
    }
}

impl Metrics {
    /// The observer that moves unit `name`'s series.
    pub fn observer(self: &Arc<Self>, name: &str) -> Arc<dyn Observer> {
        if name == crate::model::TEMPORAL {
            self.clone()
        } else {
            Arc::new(self.services.observer(name))
        }
    }
}

impl Observer for Metrics {
    fn state_changed(&self, from: StateName, to: StateName) {
        self.state.with_label_values(&[from.as_str()]).set(0);
        self.state.with_label_values(&[to.as_str()]).set(1);
        self.up.set(i64::from(to == StateName::Running));
    }

    fn adopted(&self, state: StateName, pid: Option<i32>) {
        for s in StateName::ALL {
            self.state
                .with_label_values(&[s.as_str()])
                .set(i64::from(s == state));
        }
        self.up.set(i64::from(state == StateName::Running));
        self.temporal_pid.set(pid.map_or(0, i64::from));
    }

    fn probe(&self, c: &Check) {
        let l = c.layer.as_str();
        self.probe_duration
            .with_label_values(&[l])
            .observe(c.latency.as_secs_f64());
        if !c.ok {
            self.probe_failures.with_label_values(&[l]).inc();
        }
    }

    fn spawned(&self, pid: i32, _attempt: u32) {
        self.temporal_pid.set(i64::from(pid));
    }

    fn exited(&self, _pid: i32, status: ExitStatus) {
        let how = match status {
            ExitStatus::Code(c) => format!("code_{c}"),
            ExitStatus::Signal(s) => format!("signal_{s}"),
        };
        self.exits.with_label_values(&[&how]).inc();
        self.temporal_pid.set(0);
    }

    fn restart(&self, info: &RestartInfo) {
        self.restarts
            .with_label_values(&[info.reason.label()])
            .inc();
        if let Some(d) = info.detection {
            let kind = if matches!(info.reason, RestartReason::Unhealthy { .. }) {
                "hang"
            } else {
                "exit"
            };
            self.detection
                .with_label_values(&[kind])
                .observe(d.as_secs_f64());
        }
    }

    fn serving(&self, _pid: i32, start: Duration, recovery: Option<Duration>) {
        self.start.observe(start.as_secs_f64());
        if let Some(r) = recovery {
            self.recovery.observe(r.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_have_series_of_their_own() {
        let m = Arc::new(Metrics::new().unwrap());
        let api = m.observer("api");
        api.state_changed(StateName::Waiting, StateName::Running);
        api.restart(&RestartInfo {
            reason: RestartReason::Unhealthy { layer: Layer::Http },
            attempt: 1,
            backoff: Duration::ZERO,
            detection: Some(Duration::from_millis(5)),
        });
        let text = m.render().unwrap();
        for series in [
            "stigmer_service_up{service=\"api\"} 1",
            "stigmer_service_state{service=\"api\",state=\"running\"} 1",
            "stigmer_service_restarts_total{reason=\"unhealthy\",service=\"api\"} 1",
            "stigmer_service_failure_detection_seconds_count{kind=\"hang\",service=\"api\"} 1",
            "stigmer_service_health_check_failures_total{layer=\"http\",service=\"api\"} 0",
            "stigmer_temporal_up 0",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
    }

    #[test]
    fn carried_counters_and_histograms_continue_in_the_next_daemon() {
        let m = Metrics::new().unwrap();
        let info = RestartInfo {
            reason: RestartReason::Signaled { signal: 9 },
            attempt: 1,
            backoff: Duration::ZERO,
            detection: Some(Duration::from_millis(2)),
        };
        m.restart(&info);
        m.exited(1, ExitStatus::Signal(9));
        m.serving(
            2,
            Duration::from_millis(90),
            Some(Duration::from_millis(120)),
        );
        let carried = m.carry();
        let json = serde_json::to_string(&carried).unwrap();
        let next = Metrics::with_carried(serde_json::from_str(&json).unwrap()).unwrap();
        let before = m.render().unwrap();
        let after = next.render().unwrap();
        for series in [
            "stigmer_temporal_restarts_total{reason=\"signaled\"} 1",
            "stigmer_temporal_exits_total{how=\"signal_9\"} 1",
            "stigmer_temporal_recovery_seconds_count 1",
            "stigmer_temporal_recovery_seconds_bucket{le=\"0.15\"} 1",
            "stigmer_temporal_failure_detection_seconds_count{kind=\"exit\"} 1",
        ] {
            assert!(before.contains(series), "{series} before");
            assert!(after.contains(series), "{series} after:\n{after}");
        }
        // And they keep counting.
        next.restart(&info);
        assert!(
            next.render()
                .unwrap()
                .contains("stigmer_temporal_restarts_total{reason=\"signaled\"} 2")
        );
    }

    #[test]
    fn renders_every_family() {
        let m = Metrics::new().unwrap();
        m.state_changed(StateName::Stopped, StateName::Running);
        m.restart(&RestartInfo {
            reason: RestartReason::Signaled { signal: 9 },
            attempt: 1,
            backoff: Duration::ZERO,
            detection: Some(Duration::from_millis(2)),
        });
        let text = m.render().unwrap();
        for name in [
            "stigmer_temporal_up 1",
            "stigmer_temporal_state{state=\"running\"} 1",
            "stigmer_temporal_restarts_total{reason=\"signaled\"} 1",
            "stigmer_temporal_failure_detection_seconds_count{kind=\"exit\"} 1",
            "stigmer_build_info{version=",
            "stigmer_supervisor_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
