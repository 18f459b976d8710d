//! Counters and histograms across an upgrade: the daemon that hands over
//! writes their values into the handover ([`Carried`]); the next one adds
//! them to its own at every scrape, so no counter resets.

use serde::{Deserialize, Serialize};

/// The counters and histograms of a daemon that hands over to the next
/// one on an upgrade. (The supervisor's CPU counter needs nothing: the
/// process, and its CPU time, continue across the exec.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Carried {
    /// Every counter and histogram series.
    pub series: Vec<CarriedSeries>,
    /// Each unit's CPU already counted, by name: (pid, CPU seconds).
    #[serde(default)]
    pub cpu_seen: std::collections::BTreeMap<String, (i32, f64)>,
    /// Temporal's, as 0.1.0 carried it (read, never written).
    #[serde(default, skip_serializing)]
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
pub(super) const NOT_CARRIED: &[&str] = &["stigmer_supervisor_cpu_seconds_total"];

pub(super) fn labels_of(m: &prometheus::proto::Metric) -> Vec<(String, String)> {
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
pub(super) fn add_carried(
    families: &mut Vec<prometheus::proto::MetricFamily>,
    carried: &[CarriedSeries],
) {
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
