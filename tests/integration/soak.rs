//! The soak: mixed SIGKILL / SIGSTOP / SIGTERM cycles under a workflow
//! workload. `STIGMER_SOAK_CYCLES` sets the count (CI: the short default;
//! `STIGMER_SOAK_CYCLES=1000 cargo test --test integration soak` for the
//! long run reported in docs/soak.md). It prints one report line and, with
//! `STIGMER_SOAK_REPORT=PATH`, writes the report as JSON.

use crate::common::*;
use nix::sys::signal::Signal;
use std::time::Instant;
use stigmer::process::proc;

/// Cycles when `STIGMER_SOAK_CYCLES` is not set: a short run for CI.
const DEFAULT_CYCLES: usize = 12;

/// Daemon fds, threads and RSS (KiB).
fn usage(pid: i32) -> (usize, u64, u64) {
    let fds = proc::open_fds(pid).expect("daemon fds");
    let (rss, threads) = proc::memory_and_threads(pid).expect("daemon status");
    (fds, threads, rss / 1024)
}

#[test]
fn soak_mixed_faults_under_workload() {
    let cycles: usize = std::env::var("STIGMER_SOAK_CYCLES")
        .ok()
        .map(|v| v.parse().expect("STIGMER_SOAK_CYCLES is a number"))
        .unwrap_or(DEFAULT_CYCLES);
    let mut h = TestHome::new();
    h.extra.extend(
        [
            "--health-interval",
            "0.25",
            "--health-timeout",
            "0.5",
            "--failure-threshold",
            "2",
        ]
        .map(String::from),
    );
    h.start_ok();
    let t0 = Instant::now();
    let daemon = h.daemon_pid().unwrap();
    // Warm up one cycle before taking the baseline.
    let mut pid = h.serving_pid().unwrap();
    signal(pid, Signal::SIGKILL);
    pid = h.wait_serving_new_pid(pid);
    let before = usage(daemon);
    let mut acknowledged = Vec::new();
    let mut failed_recoveries = 0;
    for i in 0..cycles {
        // Workload: a workflow per cycle; keep the acknowledged ones.
        let id = format!("soak-{i}");
        if h.start_workflow(&id).status.success() {
            acknowledged.push(id);
        }
        wait_until("stable run", || {
            h.status_json().1["restarts"]["consecutive_failures"] == 0
        });
        let sig = [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGTERM][i % 3];
        signal(pid, sig);
        let mut new = None;
        let recovered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            new = Some(h.wait_serving_new_pid(pid));
        }));
        match (recovered, new) {
            (Ok(()), Some(p)) if h.temporals() == vec![p] => pid = p,
            _ => {
                failed_recoveries += 1;
                eprintln!("cycle {i} ({sig}): no single new Temporal serving");
                break;
            }
        }
    }
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !h.workflow_found(id).status.success())
        .collect();
    let after = usage(daemon);
    let report = serde_json::json!({
        "cycles": cycles,
        "seconds": t0.elapsed().as_secs_f64().round(),
        "workflows_acknowledged": acknowledged.len(),
        "workflows_lost": lost.len(),
        "failed_recoveries": failed_recoveries,
        "daemon_before": {"fds": before.0, "threads": before.1, "rss_kib": before.2},
        "daemon_after": {"fds": after.0, "threads": after.1, "rss_kib": after.2},
    });
    eprintln!("soak report: {report}");
    if let Ok(path) = std::env::var("STIGMER_SOAK_REPORT") {
        std::fs::write(&path, format!("{report:#}\n")).expect("write the soak report");
    }
    assert_eq!(failed_recoveries, 0, "{report}");
    assert!(lost.is_empty(), "acknowledged workflows lost: {lost:?}");
    assert!(
        acknowledged.len() + cycles / 20 + 1 >= cycles,
        "workload mostly acknowledged: {report}"
    );
    assert!(after.0 <= before.0 + 3, "fds grew: {report}");
    assert!(after.1 <= before.1 + 2, "threads grew: {report}");
    assert!(
        after.2 <= before.2 + 8 * 1024,
        "RSS grew by 8 MiB: {report}"
    );
    assert_eq!(h.daemons().len(), 1);
}
