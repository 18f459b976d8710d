//! Issue #31: nothing a unit does can stop the stack. The ordinary moments
//! of a developer's day, on real processes: fixing a crash-looping
//! service, a service that exits at once, a hung Temporal replaced, a
//! signal during an upgrade, a storm of commands on a busy machine, a bug
//! in one unit's supervisor.

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `[services.NAME]`: a shell command, ready when it says `up`.
fn sh_service(name: &str, script: &str) -> String {
    format!("[services.{name}]\ncommand = ['sh', '-c', {script:?}]\nready = {{ log = '^up$' }}\n")
}

/// A crash-looping service is fixed and restarted by hand: it runs, and
/// nothing else notices. Its backoff timer, due after the restart, used
/// to reach the running service as an illegal transition and stop every
/// unit, Temporal included.
#[test]
fn fixing_a_crash_looping_service_and_restarting_it_keeps_the_stack() {
    let h = TestHome::new();
    let broken = h.dir.path().join("BROKEN");
    h.write_config(&sh_service(
        "svc",
        &format!(
            "if [ -f {} ]; then echo broken; exit 1; fi; echo up; exec sleep 3600",
            broken.display()
        ),
    ));
    h.start_ok();
    let daemon = h.daemon_pid().unwrap();
    let temporal = h.serving_pid().unwrap();
    let first = h.ready_service_pid("svc").unwrap();
    std::fs::write(&broken, "").unwrap();
    signal(first, Signal::SIGKILL);
    // A crash loop whose next attempt is seconds away.
    let mut due = 0;
    wait_until("svc in crash_loop with a long backoff", || {
        let s = h.service("svc");
        due = s["backoff"]["next_attempt_at_unix_ms"]
            .as_u64()
            .unwrap_or(0);
        s["state"] == "crash_loop" && due > now_ms() + 1000
    });
    assert_eq!(h.service("svc")["ready"], false);
    std::fs::remove_file(&broken).unwrap();
    let out = run(h.cmd(&["local", "restart", "svc"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let fixed = h.ready_service_pid("svc").expect("svc ready after the fix");
    // Past the moment the old backoff's timer was due.
    wait_until("the old backoff's due time has passed", || {
        now_ms() > due + 1500
    });
    assert_eq!(h.daemon_pid(), Some(daemon), "the daemon still runs");
    assert_eq!(h.serving_pid(), Some(temporal), "Temporal kept its pid");
    assert_eq!(h.ready_service_pid("svc"), Some(fixed), "svc kept its pid");
    assert!(!h.daemon_log().contains("stopping the stack"));
    h.stop();
    h.assert_nothing_left();
}

/// A service that exits at once (a typo away: `sleep 600 NAME`) fails
/// `start` (exit 8) and, added by a reload, backs off into `crash_loop`
/// instead of being respawned thousands of times and reported ready.
#[test]
fn a_service_that_exits_at_once_is_backed_off_and_never_ready() {
    let h = TestHome::new();
    // Its min_uptime well above what Python takes to start and exit on a
    // busy machine (the default, 1 s, is what a quiet one needs).
    h.write_config(
        "[services.oops]\ncommand = ['python3', '-c', 'import sys; sys.exit(1)']\nmin_uptime = 10\n",
    );
    let out = h.start();
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    assert!(text(&out).contains("oops"), "{}", text(&out));
    h.assert_nothing_left();
    // Started without it, then added by a reload.
    h.write_config("");
    h.start_ok();
    h.write_config("[services.typo]\ncommand = ['sleep', '600', 'typo']\n");
    let out = run(h.cmd(&["local", "reload", "--timeout", "3"]));
    assert_ne!(out.status.code(), Some(0), "never ready: {}", text(&out));
    wait_until("typo in crash_loop", || {
        h.service("typo")["state"] == "crash_loop"
    });
    let count = |h: &TestHome| h.service("typo")["restarts"]["count"].as_u64().unwrap();
    let (before, t0) = (count(&h), Instant::now());
    // The policy's own pace: the delays double from 0.1 s; over the next
    // three seconds of a crash loop, a handful of spawns at most.
    wait_until("three seconds of crash loop", || {
        t0.elapsed() > Duration::from_secs(3)
    });
    let spawned = count(&h) - before;
    assert!(spawned <= 5, "{spawned} restarts in 3 s: a hot loop");
    let s = h.service("typo");
    assert_eq!(s["ready"], false, "{s}");
    assert!(s["backoff"].is_object(), "{s}");
    assert_eq!(h.http("/healthz").0, 503);
    let (code, _) = h.status_json();
    assert_eq!(code, Some(1), "status: not ready");
    h.stop();
    h.assert_nothing_left();
}

/// A hung Temporal is replaced and serves again; `/healthz` follows at
/// once: the write check's failure, taken while the old process was being
/// killed, belonged to that process. The new one's write check runs within
/// a second of it serving.
#[test]
fn a_recovered_temporal_is_healthy_again_as_soon_as_it_serves() {
    let h = TestHome::new();
    h.start_ok();
    wait_until("the first write check", || {
        h.status_json().1["health"]["persistence"]["ok"] == true
    });
    let old = h.serving_pid().unwrap();
    signal(old, Signal::SIGSTOP);
    let new = h.wait_serving_new_pid(old);
    let seen = Instant::now();
    wait_until_for(Duration::from_secs(2), "/healthz 200 within 2 s", || {
        h.http("/healthz").0 == 200
    });
    let healthy_after = seen.elapsed();
    let mut doc = Value::Null;
    wait_until("the new process's write check", || {
        doc = h.status_json().1;
        let checked = doc["health"]["persistence"]["last_checked_unix_ms"].as_u64();
        let serving = doc["temporal"]["ready_since_unix_ms"].as_u64();
        checked.zip(serving).is_some_and(|(c, s)| c >= s)
    });
    let checked = doc["health"]["persistence"]["last_checked_unix_ms"]
        .as_u64()
        .unwrap();
    let serving = doc["temporal"]["ready_since_unix_ms"].as_u64().unwrap();
    assert!(
        checked - serving <= 1000,
        "write check {} ms after serving: {doc}",
        checked - serving
    );
    assert_eq!(doc["health"]["persistence"]["ok"], true, "{doc}");
    assert_eq!(h.serving_pid(), Some(new));
    eprintln!("healthy {healthy_after:?} after the new pid was seen serving");
    h.stop();
    h.assert_nothing_left();
}

/// A bug in one unit's supervisor (a panic, injected in the test-faults
/// build) is contained to that unit: it is rebuilt around its process,
/// which keeps running and stays the one in the PID file; the others keep
/// their pids; the stack runs on and the error is counted.
#[test]
fn a_panic_in_one_units_supervisor_is_contained_to_it() {
    let h = TestHome::new();
    let bin = h.faulty_binary("none");
    let fault = bin.with_file_name("stigmer.fault");
    // A sleep of its own (this test's port in it), to count exactly.
    let sleep = format!("sleep {}0", h.port);
    h.write_config(&format!(
        "{}{}",
        sh_service("svc", &format!("echo up; exec {sleep}")),
        sh_service("other", "echo up; exec sleep 3601")
    ));
    let mut start = h.cmd_of(&bin, &["local", "start"]);
    start.args(&h.start_args()[2..]);
    let out = run(start);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let temporal = h.serving_pid().unwrap();
    let svc = h.ready_service_pid("svc").unwrap();
    let other = h.ready_service_pid("other").unwrap();
    std::fs::write(&fault, "actor-panic:svc").unwrap();
    let errors = r#"stigmer_internal_errors_total{unit="svc"}"#;
    wait_until("the panic was contained and counted", || {
        metric(&h.metrics(), errors) >= 1.0
    });
    std::fs::remove_file(&fault).unwrap();
    wait_until("svc supervised and ready again", || {
        h.service("svc")["ready"] == true
    });
    assert_eq!(h.ready_service_pid("svc"), Some(svc), "rebuilt around it");
    assert_eq!(h.ready_service_pid("other"), Some(other));
    assert_eq!(h.serving_pid(), Some(temporal));
    assert_eq!(h.pid_record()["services"]["svc"]["pid"], svc);
    let sleepers = h
        .processes_matching(&sleep)
        .into_iter()
        .filter(|(_, c)| *c == sleep)
        .count();
    assert_eq!(sleepers, 1, "exactly one process of svc");
    assert_eq!(
        metric(
            &h.metrics(),
            r#"stigmer_internal_errors_total{unit="other"}"#
        ),
        0.0
    );
    // Still supervised: a restart works, and the stack stops when asked.
    let out = run(h.cmd_of(&bin, &["local", "restart", "svc"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_ne!(h.ready_service_pid("svc"), Some(svc));
    assert_eq!(
        run(h.cmd_of(&bin, &["local", "stop"])).status.code(),
        Some(0)
    );
    h.assert_nothing_left();
}

/// 64 commands at once while every core is busy: each gets its answer, or
/// "busy, try again" (16) for a restart or a reload, and never a reset
/// connection. A restart whose daemon goes away meanwhile starts again.
#[test]
fn sixty_four_concurrent_commands_on_a_busy_machine_each_get_an_answer() {
    let h = TestHome::new();
    h.write_config(&sh_service("svc", "echo up; exec sleep 3600"));
    h.start_ok();
    let temporal = h.serving_pid().unwrap();
    let _burners = Burners::per_core();
    let kinds = ["status", "restart", "reload"];
    let outs: Vec<(&str, std::process::Output)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..64)
            .map(|i| {
                let kind = kinds[i % 3];
                let h = &h;
                s.spawn(move || {
                    let args: &[&str] = match kind {
                        "status" => &["local", "status"],
                        "restart" => &["local", "restart", "svc"],
                        _ => &["local", "reload", "--dry-run"],
                    };
                    (kind, run(h.cmd(args)))
                })
            })
            .collect();
        hs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    for (kind, out) in &outs {
        let code = out.status.code();
        // A status answers 0 or, while a restart is under way, 1 (not
        // everything ready): an answer either way.
        let ok = match *kind {
            "status" => code == Some(0) || code == Some(1),
            _ => code == Some(0) || code == Some(16),
        };
        assert!(ok, "{kind}: {}", text(out));
        assert!(
            !text(out).contains("reset by peer"),
            "{kind}: {}",
            text(out)
        );
    }
    assert!(
        outs.iter()
            .any(|(k, o)| *k == "restart" && o.status.success()),
        "at least one restart went through"
    );
    assert_eq!(h.serving_pid(), Some(temporal));
    assert!(h.ready_service_pid("svc").is_some());
    h.stop();
    h.assert_nothing_left();
}

/// Signals to the daemon while an upgrade execs the new binary: a SIGHUP
/// every 2 ms used to kill the daemon, Temporal and every service (the
/// exec resets handlers to "terminate"). They are blocked across the exec
/// and read by the new image.
#[test]
fn a_sighup_flood_during_an_upgrade_kills_nothing() {
    let h = TestHome::new();
    h.write_config(&sh_service("svc", "echo up; exec sleep 3600"));
    h.start_ok();
    let daemon = h.daemon_pid().unwrap();
    let temporal = h.serving_pid().unwrap();
    let svc = h.ready_service_pid("svc").unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                signal(daemon, Signal::SIGHUP);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let out = run(h.cmd(&["local", "upgrade"]));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        out
    });
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    wait_until("the reloads settle and the stack is ready", || {
        h.status_json().0 == Some(0)
    });
    assert_eq!(h.daemon_pid(), Some(daemon));
    assert_eq!(h.serving_pid(), Some(temporal));
    assert_eq!(h.ready_service_pid("svc"), Some(svc));
    h.stop();
    h.assert_nothing_left();
}

/// Upgrade to a test-faults build that stops right after the exec until
/// told to go, and signal the daemon meanwhile.
fn paused_upgrade(h: &TestHome, signals: &[Signal]) -> std::process::Output {
    let bin = h.faulty_binary("takeover-pause");
    let paused = bin.with_file_name("stigmer.paused");
    let go = bin.with_file_name("stigmer.go");
    let daemon = h.daemon_pid().unwrap();
    std::thread::scope(|s| {
        let upgrade = s.spawn(|| run(h.cmd_of(&bin, &["local", "upgrade"])));
        wait_until("the new image paused before it adopts anything", || {
            paused.exists()
        });
        for &sig in signals {
            signal(daemon, sig);
        }
        std::fs::write(&go, "").unwrap();
        upgrade.join().unwrap()
    })
}

/// SIGHUPs sent while the new image has not taken over yet wait for it,
/// and are one reload (a signal is pending once); the stack runs on.
#[test]
fn sighups_during_a_takeover_are_one_reload_by_the_new_daemon() {
    let h = TestHome::new();
    h.write_config(&sh_service("svc", "echo up; exec sleep 3600"));
    h.start_ok();
    let temporal = h.serving_pid().unwrap();
    let out = paused_upgrade(&h, &[Signal::SIGHUP; 20]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let reloads = || h.daemon_log().matches("SIGHUP: reloading").count();
    wait_until("the new daemon reloaded", || reloads() >= 1);
    assert_eq!(reloads(), 1, "{}", h.daemon_log());
    assert_eq!(h.serving_pid(), Some(temporal));
    h.stop();
    h.assert_nothing_left();
}

/// A SIGTERM sent while the new image has not taken over yet stops the
/// stack cleanly once it has; the upgrade says truthfully what is left.
#[test]
fn a_sigterm_during_a_takeover_stops_the_stack_cleanly() {
    let h = TestHome::new();
    h.write_config(&sh_service("svc", "echo up; exec sleep 3600"));
    h.start_ok();
    let out = paused_upgrade(&h, &[Signal::SIGTERM]);
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(20),
        "upgraded, or nothing supervises: {}",
        text(&out)
    );
    if code == Some(20) {
        assert!(text(&out).contains("stigmer local start"), "{}", text(&out));
    }
    wait_until("the stack stopped", || h.lock_free());
    h.assert_nothing_left();
    assert!(h.daemon_log().contains("stopping"), "{}", h.daemon_log());
}

impl TestHome {
    /// Live processes whose command line contains `needle`.
    fn processes_matching(&self, needle: &str) -> Vec<(i32, String)> {
        let me = std::process::id() as i32;
        stigmer::process::proc::pids()
            .into_iter()
            .filter(|&pid| pid != me && alive(pid))
            .map(|pid| (pid, stigmer::process::proc::cmdline(pid).join(" ")))
            .filter(|(_, c)| c.contains(needle))
            .collect()
    }
}
