//! Dashboards and alert rules against a real Prometheus scraping a real
//! `stigmer local`: after a crash (SIGKILL) and a hang (SIGSTOP) every
//! PromQL expression of dashboards/*.json and dashboards/alerts/*.rules.yml
//! is evaluated through Prometheus' HTTP API; each must parse, every
//! dashboard query must return data with a finite value, every rule must
//! evaluate without error, and every metric a rule names must exist.
//!
//! Needs the `prometheus` server (Debian: `apt-get install prometheus`). It
//! runs on a free loopback port with its own temp data dir and is killed
//! on drop.

use crate::common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Prometheus scrape and rule-evaluation interval in this test.
const SCRAPE_SECS: u64 = 1;
/// Range-query step, as a Grafana panel about this wide would use.
const STEP_SECS: u64 = 1;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn prometheus_bin() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .output()
        .expect("sh");
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !p.is_empty(),
        "`prometheus` not found: apt-get install -y --no-install-recommends prometheus"
    );
    PathBuf::from(p)
}

/// GET http://127.0.0.1:port/path → (status, body).
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    stigmer::http_client::get_from(addr, path, Duration::from_secs(30))
        .map(|a| (a.status, a.body))
        .map_err(|e| e.to_string())
}

/// Percent-encode a query parameter value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A Prometheus server of this test: own temp dir, loopback port.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target_port: u16, rule_files: &[PathBuf]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("stigmer-prom-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let rules: Vec<String> = rule_files
            .iter()
            .map(|p| format!("  - {:?}", p.to_string_lossy()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: {SCRAPE_SECS}s\n  scrape_timeout: {SCRAPE_SECS}s\n  evaluation_interval: {SCRAPE_SECS}s\n\
             rule_files:\n{}\n\
             scrape_configs:\n  - job_name: stigmer\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n",
            rules.join("\n")
        );
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let mut cmd = Command::new(prometheus_bin());
        cmd.arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // If this test thread dies without running Drop, take Prometheus along.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().expect("spawn prometheus");
        let p = Prometheus { child, port, dir };
        wait_until("Prometheus ready", || {
            matches!(http_get(p.port, "/-/ready"), Ok((200, _)))
        });
        p
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// GET an API path; `Ok(data)` on status "success", `Err(text)` else.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (code, body) = http_get(self.port, path).map_err(|e| format!("GET {path}: {e}"))?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {path}: HTTP {code}, not JSON ({e}): {body}"))?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!(
                "GET {path}: HTTP {code}: {} {}",
                v["errorType"], v["error"]
            ))
        }
    }

    fn instant(&self, expr: &str, at: f64) -> Result<Value, String> {
        self.api(&format!("/api/v1/query?query={}&time={at:.3}", enc(expr)))
    }

    fn range(&self, expr: &str, start: f64, end: f64) -> Result<Value, String> {
        self.api(&format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={STEP_SECS}",
            enc(expr)
        ))
    }

    /// The single value of an instant query, if it returned one series.
    fn value(&self, expr: &str) -> Option<f64> {
        let d = self.instant(expr, now()).ok()?;
        let r = d["result"].as_array()?;
        if r.len() != 1 {
            return None;
        }
        r[0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample values of each series of a query result (vector or matrix),
/// with the series' labels.
fn series(data: &Value) -> Vec<(String, Vec<f64>)> {
    let mut out = Vec::new();
    for s in data["result"].as_array().into_iter().flatten() {
        let pts = match s["values"].as_array() {
            Some(values) => values.clone(),
            None => vec![s["value"].clone()],
        };
        let vals = pts
            .iter()
            .filter_map(|p| p[1].as_str().and_then(|x| x.parse::<f64>().ok()))
            .collect();
        out.push((s["metric"].to_string(), vals));
    }
    out
}

/// One dashboard query: where it comes from and how a panel runs it.
struct PanelQuery {
    what: String,
    expr: String,
    instant: bool,
}

fn collect_queries(file: &Path, panels: &Value, out: &mut Vec<PanelQuery>) {
    for p in panels.as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_else(|| {
                panic!(
                    "{}: panel {:?} target without expr",
                    file.display(),
                    p["title"]
                )
            });
            out.push(PanelQuery {
                what: format!(
                    "{} / panel {} / {}",
                    file.file_name().unwrap().to_string_lossy(),
                    p["title"],
                    t["refId"]
                ),
                expr: expr.to_string(),
                instant: t["instant"] == true,
            });
        }
        collect_queries(file, &p["panels"], out);
    }
}

/// Grafana's variable interpolation for a single selected instance:
/// regex-escaped value for `=~`, and the interval variables as Grafana
/// computes them for this scrape interval and step.
fn interpolate(expr: &str, instance: &str, range_secs: u64) -> String {
    let escaped = instance.replace('.', "\\\\.");
    let rate_interval = (STEP_SECS + SCRAPE_SECS).max(4 * SCRAPE_SECS);
    let s = expr
        .replace("${instance}", &escaped)
        .replace("$instance", &escaped)
        .replace("$__rate_interval", &format!("{rate_interval}s"))
        .replace("$__interval", &format!("{STEP_SECS}s"))
        .replace("$__range", &format!("{range_secs}s"));
    assert!(!s.contains('$'), "uninterpolated variable in {s}");
    s
}

/// PromQL keywords followed by a label list.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Metric names an expression selects (identifiers before `{`, `[` or a
/// separator that are not functions, keywords or label names).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    let mut in_braces = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if in_string {
            if c == '\\' {
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => in_braces += 1,
            '}' => in_braces -= 1,
            _ => {}
        }
        if in_braces == 0 && (c.is_ascii_alphabetic() || c == '_') {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            let next = expr[i..].trim_start().chars().next();
            let before = expr[..start].trim_end();
            // A label list: `by (`, `without (`, `on (`, ... right before.
            let is_grouping = before.strip_suffix('(').is_some_and(|b| {
                let prev = b
                    .trim_end()
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("");
                GROUPING.contains(&prev)
            });
            let is_call = next == Some('(');
            let keyword = GROUPING.contains(&word)
                || ["and", "or", "unless", "bool", "offset"].contains(&word);
            if !is_call && !keyword && !is_grouping && !before.ends_with(',') {
                names.push(word.to_string());
            }
            continue;
        }
        i += 1;
    }
    names.retain(|n| n.starts_with("stigmer_") || n == "up");
    names.dedup();
    names
}

#[test]
fn dashboard_and_alert_queries_return_data_from_a_real_prometheus() {
    let mut h = TestHome::new();
    // The queries' windows are seconds here, not minutes: the write check
    // (every 30 s by default) runs every second, so its layer has a rate.
    h.extra.extend(
        [
            "--health-interval",
            "0.5",
            "--health-timeout",
            "0.5",
            "--persistence-interval",
            "1",
        ]
        .map(String::from),
    );
    // One service, so the service panels and rules have series too.
    let api_port = free_port();
    h.write_config(&format!(
        "[services.api]\ncommand = ['python3', {script:?}, '{api_port}', {marker:?}]\n\
         depends_on = ['temporal']\n\
         ready = {{ http = 'http://127.0.0.1:{api_port}/healthz' }}\n\
         health = {{ http = 'http://127.0.0.1:{api_port}/healthz', interval = 0.3, timeout = 0.3, failure_threshold = 2 }}\n",
        script = asset("http_service.py").display().to_string(),
        marker = h.dir.path().display().to_string(),
    ));
    h.start_ok();
    let instance = format!("127.0.0.1:{}", h.http_port);

    let rule_files = files(&repo().join("dashboards/alerts"), ".rules.yml");
    let dashboards = files(&repo().join("dashboards"), ".json");
    assert!(!rule_files.is_empty() && !dashboards.is_empty());
    let prom = Prometheus::start(h.http_port, &rule_files);
    wait_until("Prometheus scrapes the supervisor", || {
        prom.value(r#"up{job="stigmer"}"#) == Some(1.0)
    });
    let range_start = now() - 2.0;

    // A crash: SIGKILL Temporal; the supervisor restarts it.
    let first = h.serving_pid().expect("serving");
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let second = h.wait_serving_new_pid(first);
    // A hang: SIGSTOP; the gRPC layer notices, the supervisor kills and
    // restarts it (health checks every 0.5 s, timeout 0.5 s).
    kill(Pid::from_raw(second), Signal::SIGSTOP).unwrap();
    wait_until_for(Duration::from_secs(30), "hung Temporal replaced", || {
        h.serving_pid().is_some_and(|p| p != second)
    });
    // Prometheus has scraped the result of both events.
    // The service crashes, then hangs.
    let api = h.ready_service_pid("api").expect("api ready");
    kill(Pid::from_raw(api), Signal::SIGKILL).unwrap();
    let api = h.wait_service_new_pid("api", api);
    kill(Pid::from_raw(api), Signal::SIGSTOP).unwrap();
    h.wait_service_new_pid("api", api);
    let after_events = [
        (
            r#"stigmer_service_restarts_total{service="api",reason="signaled"}"#,
            1.0,
        ),
        (
            r#"stigmer_service_restarts_total{service="api",reason="unhealthy"}"#,
            1.0,
        ),
        (
            r#"stigmer_service_recovery_seconds_count{service="api"}"#,
            2.0,
        ),
        (r#"stigmer_service_up{service="api"}"#, 1.0),
        (r#"stigmer_temporal_restarts_total{reason="signaled"}"#, 1.0),
        (
            r#"stigmer_temporal_restarts_total{reason="unhealthy"}"#,
            1.0,
        ),
        ("stigmer_temporal_recovery_seconds_count", 2.0),
        ("stigmer_temporal_up", 1.0),
    ];
    wait_until(
        "Prometheus saw the crash, the hang and the recovery",
        || {
            after_events
                .iter()
                .all(|(expr, min)| prom.value(expr).is_some_and(|v| v >= *min))
        },
    );
    // Let a few more scrapes land, so the range's last evaluation steps
    // (a grid of STEP_SECS from range_start) see the events inside their
    // $__rate_interval windows.
    let seen = now();
    wait_until("Prometheus scraped a few more times", || {
        prom.value(r#"timestamp(up{job="stigmer"})"#)
            .is_some_and(|t| t >= seen + (2 * STEP_SECS + SCRAPE_SECS) as f64)
    });
    let end = now();
    let range_secs = (end - range_start).ceil() as u64;
    let mut failures = Vec::new();

    // --- dashboards ---
    let mut queries = Vec::new();
    for file in &dashboards {
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        collect_queries(file, &dash["panels"], &mut queries);
        // Query variables: label_values(metric, label) must offer our instance.
        for var in dash["templating"]["list"].as_array().into_iter().flatten() {
            if var["type"] != "query" {
                continue;
            }
            let q = var["query"]
                .as_str()
                .or_else(|| var["query"]["query"].as_str())
                .unwrap_or_default();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("unsupported variable query {q}"));
            let (metric, label) = inner.split_once(',').expect("label_values(metric, label)");
            match prom.api(&format!(
                "/api/v1/label/{}/values?match[]={}",
                label.trim(),
                enc(metric.trim())
            )) {
                Ok(d)
                    if d.as_array()
                        .is_some_and(|a| a.contains(&Value::from(instance.as_str()))) => {}
                other => failures.push(format!(
                    "variable {}: {q} does not offer {instance}: {other:?}",
                    var["name"]
                )),
            }
        }
    }
    assert!(queries.len() >= 10, "too few dashboard queries found");
    for q in &queries {
        let expr = interpolate(&q.expr, &instance, range_secs);
        let res = if q.instant {
            prom.instant(&expr, end)
        } else {
            prom.range(&expr, range_start, end)
        };
        match res {
            Err(e) => failures.push(format!("{}: does not evaluate: {e}\n  {expr}", q.what)),
            Ok(data) => {
                let result = series(&data);
                if result.is_empty() {
                    failures.push(format!("{}: returned no data\n  {expr}", q.what));
                }
                // Every series a panel draws has real values somewhere in
                // the range (a histogram quantile of a label value that
                // never saw an event would be NaN throughout).
                for (labels, vals) in result {
                    if !vals.iter().any(|v| v.is_finite()) {
                        failures.push(format!(
                            "{}: series {labels} has no finite value\n  {expr}",
                            q.what
                        ));
                    }
                }
            }
        }
    }

    // --- alert rules ---
    let declared: usize = rule_files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter(|l| l.trim_start().starts_with("- alert:"))
                .count()
        })
        .sum();
    let mut rules = Vec::new();
    wait_until("every rule loaded and evaluated", || {
        rules = prom
            .api("/api/v1/rules")
            .map(|d| {
                d["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                    .collect::<Vec<Value>>()
            })
            .unwrap_or_default();
        rules.len() == declared
            && rules.iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001-"))
            })
    });
    for r in &rules {
        let name = r["name"].as_str().unwrap_or("?");
        let expr = r["query"].as_str().unwrap_or_default();
        if r["health"] != "ok" {
            failures.push(format!(
                "rule {name}: health {} {}",
                r["health"], r["lastError"]
            ));
        }
        if r["type"] != "alerting"
            || r["duration"].as_f64().unwrap_or(0.0) <= 0.0
            || r["labels"]["severity"].as_str().is_none()
            || r["annotations"]["summary"].as_str().is_none()
            || r["annotations"]["runbook"].as_str().is_none()
        {
            failures.push(format!(
                "rule {name}: needs for:, severity, summary and runbook: {r}"
            ));
        }
        if r["state"] == "firing" {
            failures.push(format!(
                "rule {name}: fires after a recovered crash and hang"
            ));
        }
        if let Err(e) = prom.instant(expr, end) {
            failures.push(format!("rule {name}: does not evaluate: {e}"));
        }
        let names = metric_names(expr);
        if names.is_empty() {
            failures.push(format!("rule {name}: selects no known metric: {expr}"));
        }
        for m in names {
            let sel = if m == "up" {
                r#"up{job="stigmer"}"#.to_string()
            } else {
                m.clone()
            };
            match prom.instant(&sel, end) {
                Ok(d) if !series(&d).is_empty() => {}
                other => {
                    failures.push(format!("rule {name}: metric {m} is not scraped: {other:?}"))
                }
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}\n--- prometheus log ---\n{}",
        failures.len(),
        failures.join("\n"),
        prom.log_tail()
    );
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (instance, job, le) (rate(stigmer_temporal_recovery_seconds_bucket[15m]))) > 10"#
        ),
        vec!["stigmer_temporal_recovery_seconds_bucket"]
    );
    assert_eq!(
        metric_names(
            r#"max without (state) (avg_over_time(stigmer_temporal_state{state="crash_loop"}[2m])) > 0.5 or sum without (reason) (increase(stigmer_temporal_restarts_total{reason!="manual"}[15m])) > 5"#
        ),
        vec!["stigmer_temporal_state", "stigmer_temporal_restarts_total"]
    );
    assert_eq!(metric_names(r#"up{job="stigmer"} == 0"#), vec!["up"]);
}
