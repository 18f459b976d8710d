//! Prometheus metrics, registered in one place and moved by the
//! supervisor through the [`Observer`](crate::supervisor::Observer) hooks, so an event that logs also
//! counts: one [`UnitMetrics`] per unit over its kind's families
//! (Temporal's `stigmer_temporal_*`, the services' `stigmer_service_*`,
//! see [`unit`]), the supervisor's own `stigmer_supervisor_*`, and each
//! log's dropped bytes. Process figures are read from `/proc` at scrape
//! time; counters and histograms continue across an upgrade ([`carry`]).
//!
//! Every metric, its type and exact meaning is listed in the README.

pub mod carry;
pub mod unit;

pub use carry::Carried;
use carry::{CarriedSeries, CarriedValue, NOT_CARRIED, add_carried, labels_of};
pub use unit::UnitMetrics;

use crate::model::{Kind as UnitKind, TEMPORAL};
use crate::process::proc;

use prometheus::{
    Encoder, Gauge, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use unit::{Families, Kind};

/// Buckets from 1 ms to 60 s: probe latencies, detection, start and recovery.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
    5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0,
];

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    temporal: Arc<Families>,
    services: Arc<Families>,
    internal: Arc<unit::Internal>,
    /// Each unit's metrics, by name.
    units: Mutex<Vec<(String, Arc<UnitMetrics>)>>,
    sup_cpu: prometheus::Counter,
    sup_rss: IntGauge,
    sup_fds: IntGauge,
    sup_threads: IntGauge,
    /// The supervisor's CPU already counted.
    sup_cpu_seen: Mutex<f64>,
    log_dropped: IntCounterVec,
    /// Each unit's log stats, with what of its dropped bytes is counted.
    logs: Mutex<Vec<(String, Arc<crate::disk::LogStats>, u64)>>,
    started: Gauge,
    /// What a previous daemon's counters and histograms had reached, and
    /// the CPU it had counted.
    carried: Vec<CarriedSeries>,
    carried_cpu: BTreeMap<String, (i32, f64)>,
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
        let r = &registry;
        let gauge = |name: &str, help: &str| reg(r, IntGauge::new(name, help)?);
        let m = Metrics {
            temporal: Arc::new(Families::new(r, Kind::TEMPORAL)?),
            services: Arc::new(Families::new(r, Kind::SERVICE)?),
            internal: Arc::new(unit::Internal::new(r)?),
            units: Mutex::new(Vec::new()),
            sup_cpu: reg(
                r,
                prometheus::Counter::new(
                    "stigmer_supervisor_cpu_seconds_total",
                    "CPU time used by the supervisor",
                )?,
            )?,
            sup_rss: gauge(
                "stigmer_supervisor_resident_memory_bytes",
                "Resident memory of the supervisor",
            )?,
            sup_fds: gauge(
                "stigmer_supervisor_open_fds",
                "Open file descriptors of the supervisor",
            )?,
            sup_threads: gauge("stigmer_supervisor_threads", "Threads of the supervisor")?,
            sup_cpu_seen: Mutex::new(0.0),
            log_dropped: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "stigmer_log_dropped_bytes_total",
                        "Bytes of a unit's output dropped because its log could not take them",
                    ),
                    &["service"],
                )?,
            )?,
            logs: Mutex::new(Vec::new()),
            started: reg(
                r,
                Gauge::new(
                    "stigmer_supervisor_start_time_seconds",
                    "Start time of the supervisor (Unix seconds)",
                )?,
            )?,
            carried: Vec::new(),
            carried_cpu: BTreeMap::new(),
            registry,
        };
        let build = prometheus::IntGaugeVec::new(
            Opts::new("stigmer_build_info", "Build information; always 1"),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.registry.register(Box::new(build))?;
        m.started.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        Ok(m)
    }

    /// Everything registered, with what a previous daemon carried added.
    pub fn with_carried(carried: Carried) -> prometheus::Result<Self> {
        let mut m = Metrics::new()?;
        m.started.set(carried.started_at_seconds);
        m.carried_cpu = carried.cpu_seen;
        if let Some(t) = carried.temporal_cpu_seen {
            m.carried_cpu.entry(TEMPORAL.to_string()).or_insert(t);
        }
        m.carried = carried.series;
        Ok(m)
    }

    /// The observer that moves unit `name`'s series: its kind's
    /// families (Temporal's, or a service's labelled by its name).
    pub fn observer(&self, name: &str, kind: UnitKind) -> Arc<UnitMetrics> {
        let families = if kind.is_temporal() {
            &self.temporal
        } else {
            &self.services
        };
        let unit = Arc::new(UnitMetrics::new(
            families.clone(),
            self.internal.clone(),
            name,
            self.carried_cpu.get(name).copied(),
        ));
        let mut units = self.units.lock().unwrap_or_else(|p| p.into_inner());
        units.retain(|(n, _)| n != name);
        units.push((name.to_string(), unit.clone()));
        unit
    }

    /// Count what unit `name`'s log drops (`service` label; Temporal's is
    /// `temporal`), from the start.
    pub fn watch_log(&self, name: &str, stats: Arc<crate::disk::LogStats>) {
        self.log_dropped.with_label_values(&[name]);
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.push((name.to_string(), stats, 0));
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
        let units = self.units.lock().unwrap_or_else(|p| p.into_inner());
        Carried {
            series,
            cpu_seen: units
                .iter()
                .filter_map(|(n, u)| Some((n.clone(), u.cpu_seen()?)))
                .collect(),
            temporal_cpu_seen: None,
            started_at_seconds: self.started.get(),
        }
    }

    /// Sample process figures and encode everything in the text format.
    pub fn render(&self) -> prometheus::Result<String> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    fn sample(&self) {
        for (name, stats, counted) in self
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter_mut()
        {
            let now = stats.dropped_bytes();
            if now > *counted {
                self.log_dropped
                    .with_label_values(&[name.as_str()])
                    .inc_by(now - *counted);
                *counted = now;
            }
        }
        let units: Vec<Arc<UnitMetrics>> = self
            .units
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, u)| u.clone())
            .collect();
        units.iter().for_each(|u| u.sample());
        let me = std::process::id() as i32;
        if let Some(u) = proc::stat(me) {
            let mut seen = self.sup_cpu_seen.lock().unwrap_or_else(|p| p.into_inner());
            let cpu = u.cpu_seconds();
            if cpu > *seen {
                self.sup_cpu.inc_by(cpu - *seen);
                *seen = cpu;
            }
            self.sup_rss.set(u.rss_bytes() as i64);
            self.sup_threads.set(u.threads as i64);
        }
        self.sup_fds.set(proc::open_fds(me).map_or(0, |n| n as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExitStatus, Layer, RestartReason, StateName};
    use crate::supervisor::{Observer, RestartInfo};
    use std::time::Duration;

    #[test]
    fn services_have_series_of_their_own() {
        let m = Metrics::new().unwrap();
        m.observer(TEMPORAL, UnitKind::Temporal);
        let api = m.observer("api", UnitKind::Service);
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
        let t = m.observer(TEMPORAL, UnitKind::Temporal);
        let info = RestartInfo {
            reason: RestartReason::Signaled { signal: 9 },
            attempt: 1,
            backoff: Duration::ZERO,
            detection: Some(Duration::from_millis(2)),
        };
        t.restart(&info);
        t.exited(1, ExitStatus::Signal(9));
        t.serving(
            2,
            Duration::from_millis(90),
            Some(Duration::from_millis(120)),
        );
        let carried = m.carry();
        let json = serde_json::to_string(&carried).unwrap();
        let next = Metrics::with_carried(serde_json::from_str(&json).unwrap()).unwrap();
        let next_t = next.observer(TEMPORAL, UnitKind::Temporal);
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
        next_t.restart(&info);
        assert!(
            next.render()
                .unwrap()
                .contains("stigmer_temporal_restarts_total{reason=\"signaled\"} 2")
        );
    }

    #[test]
    fn renders_every_family() {
        let m = Metrics::new().unwrap();
        let t = m.observer(TEMPORAL, UnitKind::Temporal);
        t.state_changed(StateName::Stopped, StateName::Running);
        t.restart(&RestartInfo {
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
            "stigmer_temporal_pid 0",
            "stigmer_temporal_cpu_seconds_total 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
