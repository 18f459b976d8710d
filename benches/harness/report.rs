//! Results: every sample, statistics (median, p95, min–max), ratios, and
//! the Markdown table / JSON file.

use crate::harness::load::LoadResult;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Unit of a figure (samples are stored in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Ms,
    MiB,
    Pct,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::MiB => "MiB",
            Unit::Pct => "% of a core",
        }
    }

    fn fmt(self, v: f64) -> String {
        match self {
            Unit::Ms if v < 10.0 => format!("{v:.2}"),
            Unit::Ms if v < 100.0 => format!("{v:.1}"),
            Unit::Ms => format!("{v:.0}"),
            Unit::MiB => format!("{v:.1}"),
            Unit::Pct => format!("{v:.2}"),
        }
    }
}

/// A measured figure.
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: Unit,
}

/// Every figure, in table order.
pub const FIGURES: [Figure; 13] = [
    Figure {
        key: "kill_spawned",
        label: "SIGKILL → new Temporal process",
        unit: Unit::Ms,
    },
    Figure {
        key: "kill_recorded",
        label: "SIGKILL → new pid in PID file",
        unit: Unit::Ms,
    },
    Figure {
        key: "kill_serving",
        label: "SIGKILL → serving again",
        unit: Unit::Ms,
    },
    Figure {
        key: "hang_spawned",
        label: "SIGSTOP → new Temporal process",
        unit: Unit::Ms,
    },
    Figure {
        key: "hang_recorded",
        label: "SIGSTOP → new pid in PID file",
        unit: Unit::Ms,
    },
    Figure {
        key: "hang_serving",
        label: "SIGSTOP → serving again",
        unit: Unit::Ms,
    },
    Figure {
        key: "start_idem",
        label: "idempotent start while serving",
        unit: Unit::Ms,
    },
    Figure {
        key: "status",
        label: "status command",
        unit: Unit::Ms,
    },
    Figure {
        key: "stop",
        label: "stop → process gone, port free",
        unit: Unit::Ms,
    },
    Figure {
        key: "cold_serving",
        label: "cold start → serving",
        unit: Unit::Ms,
    },
    Figure {
        key: "cold_cli",
        label: "cold start → start command returns",
        unit: Unit::Ms,
    },
    Figure {
        key: "rss",
        label: "supervisor RSS, idle",
        unit: Unit::MiB,
    },
    Figure {
        key: "cpu",
        label: "supervisor CPU, idle",
        unit: Unit::Pct,
    },
];

/// One contender's results.
#[derive(Default)]
pub struct ContenderResult {
    pub name: String,
    pub describe: String,
    /// figure key → samples in the figure's unit; `None` = never (within the bound).
    pub samples: BTreeMap<&'static str, Vec<Option<f64>>>,
    /// Bound used for "never" samples, per figure (seconds).
    pub bounds: BTreeMap<&'static str, f64>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
    pub skipped: Option<String>,
    pub loadavg_before: String,
    pub loadavg_after: String,
    pub seconds: f64,
}

impl ContenderResult {
    pub fn push(&mut self, key: &'static str, v: Option<f64>) {
        self.samples.entry(key).or_default().push(v);
    }

    /// Add a note once: with `--rounds` every round measures again and
    /// would otherwise repeat the same command lines.
    pub fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// Statistics of one figure for one contender.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub ok: usize,
    pub median: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

/// Percentile `p` (0–100) of sorted `v`, linear interpolation between
/// closest ranks.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

/// Stats of the samples that completed (`ok` of `n`).
pub fn stats(samples: &[Option<f64>]) -> Option<Stats> {
    if samples.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = samples.iter().flatten().copied().collect();
    v.sort_by(f64::total_cmp);
    let nan = f64::NAN;
    Some(Stats {
        n: samples.len(),
        ok: v.len(),
        median: percentile(&v, 50.0).unwrap_or(nan),
        p95: percentile(&v, 95.0).unwrap_or(nan),
        min: v.first().copied().unwrap_or(nan),
        max: v.last().copied().unwrap_or(nan),
    })
}

/// A figure is comparable only when every sample completed (a "never"
/// has no median to divide by).
fn median_of(r: &ContenderResult, key: &str) -> Option<f64> {
    let s = stats(r.samples.get(key)?)?;
    (s.ok == s.n).then_some(s.median)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

/// Everything about the run.
pub struct Run {
    pub meta: Value,
    pub contenders: Vec<ContenderResult>,
    pub load: Vec<LoadResult>,
}

impl Run {
    fn find(&self, name: &str) -> Option<&ContenderResult> {
        self.contenders.iter().find(|c| c.name == name)
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.meta;
        let _ = writeln!(
            s,
            "Run {} on {} cores ({}), kernel {}, load average before/after: {} / {}; {:.0} s in all.\n",
            m["date"].as_str().unwrap_or(""),
            m["nproc"],
            m["cpu"].as_str().unwrap_or(""),
            m["kernel"].as_str().unwrap_or(""),
            m["loadavg_start"].as_str().unwrap_or(""),
            m["loadavg_end"].as_str().unwrap_or(""),
            m["seconds"].as_f64().unwrap_or(0.0),
        );
        let _ = writeln!(
            s,
            "Temporal {}: `{}`\n\nstigmer: `{}` ({})\n\nFlags: `{}`\n",
            m["temporal_version"].as_str().unwrap_or(""),
            m["temporal_command"].as_str().unwrap_or(""),
            m["stigmer_binary"].as_str().unwrap_or(""),
            m["stigmer_linkage"].as_str().unwrap_or(""),
            m["flags"].as_str().unwrap_or(""),
        );
        let ours = self.find("stigmer");
        let floor = self.find("floor");
        s.push_str(
            "| figure | contender | n | median | p95 | min–max | × floor | ours ÷ this |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for f in &FIGURES {
            for c in &self.contenders {
                let Some(samples) = c.samples.get(f.key) else {
                    continue;
                };
                let Some(st) = stats(samples) else { continue };
                let unit = f.unit;
                let n = if st.ok == st.n {
                    st.n.to_string()
                } else {
                    format!("{}/{} served", st.ok, st.n)
                };
                let (median, p95, range) = if st.ok == 0 {
                    let bound = c.bounds.get(f.key).copied().unwrap_or(0.0);
                    (
                        format!("never (> {bound:.0} s)"),
                        "never".to_string(),
                        "—".to_string(),
                    )
                } else if st.ok < st.n {
                    (
                        format!("{} (of those served)", unit.fmt(st.median)),
                        unit.fmt(st.p95),
                        format!("{}–{}", unit.fmt(st.min), unit.fmt(st.max)),
                    )
                } else {
                    (
                        unit.fmt(st.median),
                        unit.fmt(st.p95),
                        format!("{}–{}", unit.fmt(st.min), unit.fmt(st.max)),
                    )
                };
                let this = median_of(c, f.key);
                let x_floor = ratio(this, floor.and_then(|fl| median_of(fl, f.key)));
                let ours_div = ratio(ours.and_then(|o| median_of(o, f.key)), this);
                let _ = writeln!(
                    s,
                    "| {} ({}) | {} | {n} | {median} | {p95} | {range} | {x_floor} | {ours_div} |",
                    f.label,
                    unit.name(),
                    c.name,
                );
            }
        }
        if !self.load.is_empty() {
            s.push_str(
                "\nHTTP endpoints under load (loopback, fixed duration):\n\n\
                 | contender | endpoint | tool | seconds | requests | req/s | p50 ms | p99 ms | max ms | errors |\n\
                 |---|---|---|---|---|---|---|---|---|---|\n",
            );
            for l in &self.load {
                let _ = writeln!(
                    s,
                    "| {} | `{}` | {} | {:.0} | {} | {:.0} | {:.3} | {:.3} | {:.2} | {} |",
                    l.contender,
                    l.path,
                    l.tool,
                    l.seconds,
                    l.requests,
                    l.rps,
                    l.p50_ms,
                    l.p99_ms,
                    l.max_ms,
                    l.errors
                );
            }
        }
        s.push_str("\nContenders:\n\n");
        for c in &self.contenders {
            let _ = write!(s, "- **{}**: {}", c.name, c.describe);
            if let Some(why) = &c.skipped {
                let _ = write!(s, " — **skipped**: {why}");
            } else {
                let _ = write!(
                    s,
                    " ({:.0} s, load average {} → {})",
                    c.seconds, c.loadavg_before, c.loadavg_after
                );
            }
            s.push('\n');
            for e in &c.errors {
                let _ = writeln!(s, "  - **error**: {e}");
            }
            for n in &c.notes {
                let _ = writeln!(s, "  - {n}");
            }
        }
        s
    }

    /// Every sample, as JSON.
    pub fn json(&self) -> Value {
        let contenders: Vec<Value> = self
            .contenders
            .iter()
            .map(|c| {
                let figures: serde_json::Map<String, Value> = FIGURES
                    .iter()
                    .filter_map(|f| {
                        let samples = c.samples.get(f.key)?;
                        let st = stats(samples);
                        Some((
                            f.key.to_string(),
                            json!({
                                "label": f.label,
                                "unit": f.unit.name(),
                                "samples": samples,
                                "never_after_seconds": c.bounds.get(f.key),
                                "median": st.filter(|s| s.ok > 0).map(|s| s.median),
                                "p95": st.filter(|s| s.ok > 0).map(|s| s.p95),
                                "min": st.filter(|s| s.ok > 0).map(|s| s.min),
                                "max": st.filter(|s| s.ok > 0).map(|s| s.max),
                                "completed": st.map(|s| s.ok),
                            }),
                        ))
                    })
                    .collect();
                json!({
                    "name": c.name,
                    "describe": c.describe,
                    "skipped": c.skipped,
                    "errors": c.errors,
                    "notes": c.notes,
                    "seconds": c.seconds,
                    "loadavg_before": c.loadavg_before,
                    "loadavg_after": c.loadavg_after,
                    "figures": figures,
                })
            })
            .collect();
        json!({ "meta": self.meta, "contenders": contenders, "load": self.load })
    }
}
