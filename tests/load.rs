//! Issue #14: no false restarts. Default supervision settings, two
//! CPU-burning processes and a steady workflow load for
//! `STIGMER_LOAD_SECS` seconds (CI: 60; the 10-minute run reported in the
//! README: 600), and not one restart. Issue #24: the same with the daemon
//! itself starved (every core busy at a higher priority than the daemon),
//! since the health checks' timeout now adapts to what it sees.
//!
//! Also issue #24: a check that times out while the host's CPUs are
//! contended gets one more look before it counts, and a hang is still
//! replaced under that pressure.
//!
//! A test binary of its own (cargo runs test binaries one after another),
//! so its CPU burners never slow the integration suite's tests.

#[path = "integration/common.rs"]
mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds of load when `STIGMER_LOAD_SECS` is not set.
const DEFAULT_SECS: u64 = 60;

/// One load at a time: each sizes its burners to the machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A busy loop in a shell, carrying the test's marker, killed on drop.
struct Burner(Child);

impl Burner {
    /// A burner at nice `nice`.
    fn nice(marker: &std::path::Path, nice: i32) -> Burner {
        let b = Burner::start(marker);
        // SAFETY: setpriority on a process this test started.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, b.0.id() as libc::id_t, nice) };
        assert_eq!(r, 0, "renice the burner");
        b
    }

    fn start(marker: &std::path::Path) -> Burner {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done", "burner"])
            .arg(marker)
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Burner(child)
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_false_restarts_under_cpu_and_workflow_load() {
    load(false);
}

#[test]
fn no_false_restarts_when_the_daemon_itself_is_starved() {
    load(true);
}

/// The load run; `starve`: the daemon runs at nice 19 under a burner per
/// core at nice 0.
fn load(starve: bool) {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let secs: u64 = std::env::var("STIGMER_LOAD_SECS")
        .ok()
        .map(|v| v.parse().expect("STIGMER_LOAD_SECS is a number"))
        .unwrap_or(DEFAULT_SECS);
    let h = TestHome::new();
    h.start_ok();
    let pid = h.serving_pid().unwrap();
    let n = if starve {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        2
    };
    if starve {
        let daemon = h.daemon_pid().unwrap();
        // SAFETY: setpriority on a process this test started.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, daemon as libc::id_t, 19) };
        assert_eq!(r, 0, "renice the daemon");
    }
    let burners: Vec<Burner> = (0..n).map(|_| Burner::start(h.dir.path())).collect();
    let t0 = Instant::now();
    let mut started = 0u64;
    let mut refused = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        // The workload: workflows started back to back by the real CLI.
        if h.start_workflow(&format!("load-{started}"))
            .status
            .success()
        {
            started += 1;
        } else {
            refused += 1;
        }
    }
    drop(burners);
    let (_, v) = h.status_json();
    let metrics = scrape(&h);
    let failed_checks = sample(
        &metrics,
        "stigmer_temporal_health_check_failures_total{layer=\"grpc\"}",
    );
    let timeout = sample(&metrics, "stigmer_temporal_health_check_timeout_seconds");
    let retries = |reason: &str| {
        sample(
            &metrics,
            &format!("stigmer_temporal_health_check_retries_total{{reason=\"{reason}\"}}"),
        )
    };
    let (late, pressured) = (retries("late_timer"), retries("cpu_pressure"));
    let buckets: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("stigmer_temporal_health_check_duration_seconds_bucket{layer=\"grpc\"")
        })
        .collect();
    eprintln!(
        "load: {secs} s, {n} CPU burners{}, {started} workflows started ({refused} refused); \
         restarts {}, failed gRPC checks {failed_checks}, check timeout now {timeout} s, \
         checks asked again: {late} late timer, {pressured} CPU pressure\n\
         gRPC check durations: {buckets:#?}",
        if starve { " (daemon at nice 19)" } else { "" },
        v["restarts"]["count"]
    );
    assert_eq!(v["restarts"]["count"], 0, "no restart: {v}");
    assert_eq!(h.serving_pid(), Some(pid), "the same Temporal throughout");
    assert!(
        started * 2 > secs,
        "a steady load: {started} workflows in {secs} s"
    );
    assert!(
        refused * 100 <= started,
        "the server kept accepting work: {refused} refused"
    );
}

/// The daemon's `/metrics`.
fn scrape(h: &TestHome) -> String {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], h.http_port));
    stigmer::http_client::get_from(addr, "/metrics", Duration::from_secs(5))
        .expect("metrics")
        .body
}

/// The value of `series` in a scrape (0 when absent).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

/// A series' value from the daemon's `/metrics` now.
fn metric(h: &TestHome, series: &str) -> f64 {
    sample(&scrape(h), series)
}

/// Issue #24: a health check that times out while tasks on the host wait
/// for a CPU (PSI, /proc/pressure/cpu) is asked once more, with the cap,
/// before it counts. A service whose /healthz turns slow (0.4 s, four
/// times its learned timeout): on a quiet host that is a failed check; with
/// more busy loops than cores (at nice 19, so they starve no one, yet
/// queue) it is a second look that passes. Then Temporal is stopped
/// (SIGSTOP) under the same pressure: its checks get their second looks
/// too, time out again, and the hang is still replaced.
#[test]
fn checks_under_cpu_pressure_get_a_second_look_and_a_hang_is_still_replaced() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        std::path::Path::new("/proc/pressure/cpu").exists(),
        "this kernel reports no CPU pressure (PSI): the behaviour under test is off"
    );
    let h = TestHome::new();
    let port = free_port();
    let slow = h.dir.path().join("slow");
    h.write_config(&format!(
        "[services.api]\n\
         command = ['python3', {script:?}, '{port}', {marker:?}]\n\
         env = {{ SLOW_FILE = {slow:?} }}\n\
         ready = {{ http = 'http://127.0.0.1:{port}/healthz' }}\n\
         health = {{ http = 'http://127.0.0.1:{port}/healthz', interval = 0.5, failure_threshold = 1000 }}\n",
        script = asset("http_service.py").display().to_string(),
        marker = h.dir.path().display().to_string(),
        slow = slow.display().to_string(),
    ));
    h.start_ok();
    let failures = |h: &TestHome| {
        metric(
            h,
            "stigmer_service_health_check_failures_total{layer=\"http\",service=\"api\"}",
        )
    };
    let retries = |h: &TestHome, unit: &str| {
        metric(
            h,
            &if unit == "temporal" {
                "stigmer_temporal_health_check_retries_total{reason=\"cpu_pressure\"}".to_string()
            } else {
                format!(
                    "stigmer_service_health_check_retries_total{{reason=\"cpu_pressure\",service=\"{unit}\"}}"
                )
            },
        )
    };
    // The detector has learned the fast answers: a timeout well under 0.4 s.
    wait_until("the api's timeout learned from its answers", || {
        let t = metric(
            &h,
            "stigmer_service_health_check_timeout_seconds{service=\"api\"}",
        );
        t > 0.0 && t < 0.3
    });
    // A quiet host: the slow answer is a failed check.
    std::fs::write(&slow, "0.4").unwrap();
    wait_until("a slow answer counted as a failure on a quiet host", || {
        failures(&h) >= 1.0
    });
    std::fs::remove_file(&slow).unwrap();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let burners: Vec<Burner> = (0..=cores)
        .map(|_| Burner::nice(h.dir.path(), 19))
        .collect();
    // Any check that still times out now (a late answer of the slow
    // phase) is a second look; the count of failures is taken after.
    let before = failures(&h);
    let looks = retries(&h, "api");
    std::fs::write(&slow, "0.4").unwrap();
    wait_until("a second look at the slow api under pressure", || {
        retries(&h, "api") > looks
    });
    // A few more rounds under pressure, then nothing counted.
    let rounds = |h: &TestHome| {
        metric(
            h,
            "stigmer_service_health_check_duration_seconds_count{layer=\"http\",service=\"api\"}",
        )
    };
    let seen = rounds(&h);
    wait_until("more rounds of the slow api", || rounds(&h) >= seen + 4.0);
    assert_eq!(
        failures(&h),
        before,
        "no slow answer under pressure counted as a failure"
    );
    // A hang under pressure: second looks, then the restart.
    let old = h.serving_pid().unwrap();
    signal(old, nix::sys::signal::Signal::SIGSTOP);
    let new = h.wait_serving_new_pid(old);
    drop(burners);
    let (_, v) = h.status_json();
    assert_eq!(
        v["restarts"]["last_reason"],
        serde_json::json!({"kind": "unhealthy", "layer": "grpc"}),
        "{v}"
    );
    assert!(
        retries(&h, "temporal") >= 1.0,
        "Temporal's timed-out checks got second looks"
    );
    // Every failed check of the hung server was a timeout, whichever of
    // the three timers (ours, tonic's grpc-timeout, the server's) fired
    // first: tonic's used to win four times in five and read as an error
    // answer, which neither the late-timer rule nor a second look covers.
    let failed = || -> Vec<String> {
        h.daemon_log()
            .lines()
            .filter(|l| l.contains("health check failed") && l.contains("grpc"))
            .map(String::from)
            .collect()
    };
    wait_until("the failed gRPC checks in the daemon's log", || {
        !failed().is_empty()
    });
    let failed = failed();
    assert!(
        failed.iter().all(|l| l.contains("no answer within")),
        "{failed:#?}"
    );
    assert_eq!(h.temporals(), vec![new]);
}
