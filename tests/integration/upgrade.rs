//! Issue #15: `stigmer local upgrade` replaces the daemon in place (an
//! exec from the thread that spawned every child), so Temporal and every
//! service keep running with the same pid and never fail a health check.

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

impl TestHome {
    /// A copy of the built `stigmer` at a new path (the "new version").
    fn new_binary(&self) -> PathBuf {
        let dir = self.dir.path().join("new");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("stigmer");
        std::fs::copy(stigmer_bin(), &p).unwrap();
        p
    }

    pub fn upgrade_with(&self, bin: &Path) -> Output {
        run(self.cmd_of(bin, &["local", "upgrade"]))
    }

    fn daemon_exe(&self) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/exe", self.daemon_pid()?)).ok()
    }
}

/// A gRPC health check of Temporal every 20 ms, each over a new
/// connection, until stopped: (checks, failures).
struct Prober {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, Vec<String>)>>,
    checks: Arc<AtomicU64>,
}

impl Prober {
    fn start(port: u16) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), checks.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let mut failures = Vec::new();
            let mut n = 0;
            while !s.load(Ordering::Acquire) {
                let r = rt.block_on(stigmer::health::grpc_health(
                    addr,
                    stigmer::health::TEMPORAL_SERVICE,
                    Duration::from_secs(1),
                ));
                n += 1;
                c.store(n, Ordering::Release);
                if let Err(e) = r {
                    failures.push(e.to_string());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (n, failures)
        });
        Prober {
            stop,
            thread: Some(thread),
            checks,
        }
    }

    /// Wait until it has made `more` further checks.
    fn wait_checks(&self, more: u64) {
        let target = self.checks.load(Ordering::Acquire) + more;
        wait_until("the prober checked again", || {
            self.checks.load(Ordering::Acquire) >= target
        });
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Release);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn upgrade_keeps_temporal_serving_and_supervised() {
    let h = TestHome::new();
    h.start_ok();
    // A crash first, so there is a restart count and history to keep.
    let first = h.serving_pid().unwrap();
    signal(first, Signal::SIGKILL);
    let temporal = h.wait_serving_new_pid(first);
    let daemon = h.daemon_pid().unwrap();
    let (_, before) = h.status_json();
    let restarts = metric(
        &h.metrics(),
        "stigmer_temporal_restarts_total{reason=\"signaled\"}",
    );
    assert_eq!(restarts, 1.0);

    let new = h.new_binary();
    let prober = Prober::start(h.port);
    prober.wait_checks(5);
    let out = h.upgrade_with(&new);
    prober.wait_checks(10);
    let (checks, failures) = prober.finish();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&new.display().to_string())
            && said.contains(&stigmer_bin().display().to_string())
            && said.contains(" ms"),
        "one line from which binary to which, and how long: {said}"
    );
    assert!(
        failures.is_empty(),
        "{} of {checks} gRPC checks failed: {failures:?}",
        failures.len()
    );

    // The same processes, the new program.
    assert_eq!(h.daemon_pid(), Some(daemon), "the daemon keeps its pid");
    assert_eq!(
        h.daemon_exe(),
        Some(new.clone()),
        "the daemon runs the new binary"
    );
    assert_eq!(
        h.temporals(),
        vec![temporal],
        "Temporal was never restarted"
    );
    assert_eq!(
        stigmer::process::proc::lock_holders(&h.home().join("stigmer.lock")),
        vec![daemon],
        "the lock is the daemon's throughout"
    );
    let (code, after) = h.status_json();
    assert_eq!(code, Some(0), "{after}");
    assert_eq!(after["temporal"]["pid"], temporal);
    assert_eq!(after["supervisor"]["exe"], new.display().to_string());
    assert_eq!(after["restarts"]["count"], before["restarts"]["count"]);
    assert_eq!(
        after["restarts"]["recent"], before["restarts"]["recent"],
        "history kept"
    );
    let m = h.metrics();
    assert_eq!(
        metric(&m, "stigmer_temporal_restarts_total{reason=\"signaled\"}"),
        restarts,
        "counters continue"
    );
    assert_eq!(metric(&m, "stigmer_temporal_up"), 1.0, "gauges too");
    assert_eq!(metric(&m, "stigmer_temporal_pid"), f64::from(temporal));
    assert_eq!(metric(&m, "stigmer_temporal_state{state=\"running\"}"), 1.0);

    // The old binary sees it is not the daemon's.
    let out = run(h.cmd(&["local", "status"]));
    assert!(
        text(&out).contains("stigmer local upgrade")
            && text(&out).contains(&new.display().to_string()),
        "{}",
        text(&out)
    );

    // The new daemon supervises: a crash is seen and repaired.
    signal(temporal, Signal::SIGKILL);
    let third = h.wait_serving_new_pid(temporal);
    assert_eq!(h.temporals(), vec![third]);
    assert_eq!(
        metric(
            &h.metrics(),
            "stigmer_temporal_restarts_total{reason=\"signaled\"}"
        ),
        2.0
    );
    let out = h.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    h.assert_nothing_left();
}

#[test]
fn concurrent_starts_during_an_upgrade_find_the_one_instance() {
    let h = TestHome::new();
    h.start_ok();
    let temporal = h.serving_pid().unwrap();
    let daemon = h.daemon_pid().unwrap();
    let new = h.new_binary();
    let (upgrade, starts) = std::thread::scope(|s| {
        let up = s.spawn(|| h.upgrade_with(&new));
        let starts: Vec<_> = (0..8).map(|_| s.spawn(|| h.start())).collect();
        (
            up.join().unwrap(),
            starts
                .into_iter()
                .map(|j| j.join().unwrap())
                .collect::<Vec<_>>(),
        )
    });
    assert_eq!(upgrade.status.code(), Some(0), "{}", text(&upgrade));
    for out in &starts {
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
    }
    assert_eq!(h.daemons(), vec![daemon], "one daemon");
    assert_eq!(
        h.temporals(),
        vec![temporal],
        "one Temporal, never restarted"
    );
    assert_eq!(h.daemon_exe(), Some(new));
}

#[test]
fn a_failed_takeover_leaves_the_old_daemon_in_charge() {
    let h = TestHome::new();
    h.start_ok();
    let temporal = h.serving_pid().unwrap();
    let daemon = h.daemon_pid().unwrap();
    let old = h.daemon_exe().unwrap();
    // A program that only prints what a check once printed.
    let liar = script(
        h.dir.path(),
        "liar",
        "cat >/dev/null; echo \"ok 9.9.9\"; echo '{\"protocol\":2,\"version\":\"9.9.9\",\"nonce\":\"\",\"units\":[\"temporal\"]}'",
    );
    // Each refused before the exec (its check), or after it (hands back).
    let attempts: Vec<(&str, PathBuf)> = vec![
        ("exits at its check", h.faulty_binary("check-exit")),
        (
            "answers the check with the wrong nonce",
            h.faulty_binary("check-lie"),
        ),
        ("prints a plausible answer", liar),
        (
            "fails in its takeover code after the exec",
            h.faulty_binary("takeover"),
        ),
        (
            "panics in its takeover code after the exec",
            h.faulty_binary("takeover-panic"),
        ),
        ("is not stigmer at all", PathBuf::from("/bin/false")),
    ];
    for (what, bin) in attempts {
        let prober = Prober::start(h.port);
        let out = run(h.cmd(&["local", "upgrade", "--binary", &bin.display().to_string()]));
        prober.wait_checks(3);
        let (_, failures) = prober.finish();
        assert_eq!(out.status.code(), Some(12), "{what}: {}", text(&out));
        assert!(
            text(&out).contains("still supervises"),
            "{what}: {}",
            text(&out)
        );
        assert!(failures.is_empty(), "{what}: {failures:?}");
        assert_eq!(h.daemon_pid(), Some(daemon), "{what}");
        assert_eq!(
            h.daemon_exe(),
            Some(old.clone()),
            "{what}: the old binary runs"
        );
        assert_eq!(h.temporals(), vec![temporal], "{what}: Temporal untouched");
        assert_eq!(h.serving_pid(), Some(temporal), "{what}");
    }
    // And it still supervises.
    signal(temporal, Signal::SIGKILL);
    h.wait_serving_new_pid(temporal);
}

#[test]
fn a_binary_others_can_write_is_refused_before_anything_happens() {
    use std::os::unix::fs::PermissionsExt;
    let h = TestHome::new();
    h.start_ok();
    let temporal = h.serving_pid().unwrap();
    let daemon = h.daemon_pid().unwrap();
    let new = h.new_binary();
    let before = h.metrics();
    for mode in [0o775, 0o757] {
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = h.upgrade_with(&new);
        assert_eq!(out.status.code(), Some(12), "{mode:o}: {}", text(&out));
        assert!(text(&out).contains("writable"), "{mode:o}: {}", text(&out));
    }
    assert_eq!(h.daemon_pid(), Some(daemon));
    assert_eq!(h.temporals(), vec![temporal]);
    // Nothing was frozen or handed over: the counters never paused.
    assert!(h.metrics().contains("stigmer_temporal_up 1"), "{before}");
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = h.upgrade_with(&new);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(h.daemon_exe(), Some(new));
}

#[test]
fn a_service_keeps_its_process_and_not_a_line_of_its_log_is_lost() {
    let h = TestHome::new();
    // A service that counts on stdout every 5 ms.
    h.write_config(
        "[services.counter]\n\
         command = ['sh', '-c', 'i=0; while :; do echo line $i; i=$((i+1)); sleep 0.005; done']\n\
         depends_on = ['temporal']\n\
         ready = { log = 'line 3$' }\n",
    );
    h.start_ok();
    let pid = h.ready_service_pid("counter").unwrap();
    let log = h.home().join("logs").join("counter.log");
    let count = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("line "))
            .count()
    };
    let before = count(&log);
    let out = h.upgrade_with(&h.new_binary());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(h.ready_service_pid("counter"), Some(pid), "same process");
    let target = before + 400;
    wait_until("the service keeps logging after the upgrade", || {
        count(&log) >= target
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let numbers: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    for (i, n) in numbers.iter().enumerate() {
        assert_eq!(*n, i as u64, "line {i} of the log: lost or repeated output");
    }
    let (_, v) = h.status_json();
    assert_eq!(
        v["services"]["counter"]["restarts"]["count"],
        Value::from(0),
        "{v}"
    );
}

#[test]
fn upgrade_with_nothing_running_says_so() {
    let h = TestHome::new();
    let out = run(h.cmd(&["local", "upgrade"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("Nothing runs"), "{}", text(&out));
}

/// The fault switches exist only in the `test-faults` build: the binary
/// under test, given the same fault file as a test-faults build, does
/// not obey it.
#[test]
fn the_shipped_binary_obeys_no_fault_file() {
    let h = TestHome::new();
    let handover = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/compat-0.1.0/upgrade-handover-v1.json"),
    )
    .unwrap();
    let check = |bin: &Path| {
        std::fs::write(bin.with_file_name("stigmer.fault"), "check-exit").unwrap();
        let mut c = Command::new(bin);
        c.args(["local", "start", "--takeover-check"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write as _;
        // The faulty build exits before it reads: a broken pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(&handover);
        child.wait_with_output().unwrap()
    };
    let faulty = check(&h.faulty_binary("check-exit"));
    assert_eq!(
        faulty.status.code(),
        Some(1),
        "the test-faults build obeys: {}",
        text(&faulty)
    );
    let shipped = check(&h.new_binary());
    assert!(shipped.status.success(), "{}", text(&shipped));
    assert!(
        String::from_utf8_lossy(&shipped.stdout).starts_with("ok "),
        "{}",
        text(&shipped)
    );
}
