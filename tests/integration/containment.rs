//! Issue #20: the supervisor never takes the stack down. Whatever a child
//! writes, whatever happens to its log, whatever a stale record or a web
//! page or a stranger's file says, the daemon (and with it Temporal and
//! every service) keeps running, and says what it could not do.

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Resident memory of `pid`, in bytes.
fn rss(pid: i32) -> u64 {
    stigmer::process::proc::stat(pid)
        .map(|s| s.rss_bytes())
        .unwrap_or(0)
}

/// A metric's value in `/metrics`, 0 when the series is absent.
fn metric(h: &TestHome, series: &str) -> f64 {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], h.http_port));
    let body = stigmer::http_client::get_from(addr, "/metrics", Duration::from_secs(5))
        .expect("metrics")
        .body;
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A tmpfs of `size` mounted at `at`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "mounting a tmpfs needs root (tests run as root)"
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_gigabyte_without_a_newline_leaves_the_daemon_flat_and_everyone_running() {
    let h = TestHome::new();
    h.write_config(
        "[services.dump]\n\
         command = ['sh', '-c', 'head -c 1100000000 /dev/zero; echo; echo dump-done; exec sleep 3600']\n\
         depends_on = ['temporal']\n",
    );
    h.start_ok();
    let daemon = h.daemon_pid().unwrap();
    let temporal = h.serving_pid().unwrap();
    let service = h.ready_service_pid("dump").unwrap();
    let before = rss(daemon);
    let log = h.home().join("logs").join("dump.log");
    wait_until_for(Duration::from_secs(300), "the dump reached the log", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("dump-done"))
    });
    let after = rss(daemon);
    assert!(
        after < before + 16 * 1024 * 1024,
        "daemon RSS grew from {before} to {after} bytes"
    );
    assert_eq!(h.serving_pid(), Some(temporal), "Temporal untouched");
    assert_eq!(
        h.ready_service_pid("dump"),
        Some(service),
        "the service runs"
    );
    assert_eq!(h.daemon_pid(), Some(daemon));
    // The log was written in pieces of at most 64 KiB, rotated as usual.
    let pieces = std::fs::read(&log).unwrap();
    assert!(
        pieces.split(|&b| b == b'\n').all(|l| l.len() <= 64 * 1024),
        "no line past the cap"
    );
    let out = run_for(
        h.cmd(&["local", "logs", "dump", "-n", "5"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .ends_with("dump-done"),
        "{}",
        text(&out)
    );
    assert_eq!(
        metric(&h, "stigmer_log_dropped_bytes_total{service=\"dump\"}"),
        0.0
    );
}

/// A service that prints a numbered line every 5 ms.
fn chatty(h: &TestHome) {
    h.write_config(
        "[services.chatty]\n\
         command = ['sh', '-c', 'i=0; while :; do echo chatty line $i; i=$((i+1)); sleep 0.005; done']\n\
         depends_on = ['temporal']\n",
    );
}

#[test]
fn a_log_path_taken_by_a_directory_drops_counts_and_comes_back() {
    let h = TestHome::new();
    chatty(&h);
    h.start_ok();
    let pid = h.ready_service_pid("chatty").unwrap();
    let temporal = h.serving_pid().unwrap();
    let log = h.home().join("logs").join("chatty.log");
    wait_until("the service logs", || log.exists());
    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    let dropped = "stigmer_log_dropped_bytes_total{service=\"chatty\"}";
    wait_until("output is dropped and counted", || {
        metric(&h, dropped) > 0.0
    });
    let warned = h.service("chatty")["warnings"].to_string();
    assert!(warned.contains("dropped"), "{warned}");
    // Some 10 s of output (~2,000 lines of ~20 bytes) dropped; the child
    // never noticed.
    wait_until_for(Duration::from_secs(90), "10 s of output dropped", || {
        metric(&h, dropped) > 20_000.0
    });
    assert_eq!(h.ready_service_pid("chatty"), Some(pid), "same process");
    assert_eq!(h.serving_pid(), Some(temporal));
    std::fs::remove_dir(&log).unwrap();
    wait_until("the log comes back by itself", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("chatty line"))
    });
    wait_until("the warning says it is writable again", || {
        h.service("chatty")["warnings"]
            .to_string()
            .contains("writable again")
    });
    assert_eq!(h.ready_service_pid("chatty"), Some(pid));
}

#[test]
fn a_full_log_directory_drops_and_recovers_without_touching_anyone() {
    let h = TestHome::new();
    chatty(&h);
    h.start_ok();
    let pid = h.ready_service_pid("chatty").unwrap();
    let temporal = h.serving_pid().unwrap();
    let logs = h.home().join("logs");
    // Mounted over the log directory while running: the daemon notices
    // its paths name new files, and the new filesystem is full.
    let _fs = Tmpfs::mount(&logs, "256k");
    let filler = logs.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let _ = f.write_all(&vec![0u8; 512 * 1024]);
    drop(f);
    let dropped = "stigmer_log_dropped_bytes_total{service=\"chatty\"}";
    wait_until("output is dropped while the disk is full", || {
        metric(&h, dropped) > 5_000.0
    });
    assert_eq!(h.ready_service_pid("chatty"), Some(pid));
    assert_eq!(h.serving_pid(), Some(temporal));
    std::fs::remove_file(&filler).unwrap();
    let log = logs.join("chatty.log");
    wait_until("lines are written again", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.lines().filter(|l| l.starts_with("chatty line")).count() > 10)
    });
    assert_eq!(h.ready_service_pid("chatty"), Some(pid));
    let out = h.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_symlink_where_a_log_belongs_is_refused_at_start_and_never_followed_later() {
    let h = TestHome::new();
    chatty(&h);
    let logs = h.home().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::set_permissions(h.home(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let elsewhere = h.dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "").unwrap();
    std::os::unix::fs::symlink(&elsewhere, logs.join("chatty.log")).unwrap();
    let out = h.start();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(text(&out).contains("symlink"), "{}", text(&out));
    assert!(h.processes().is_empty(), "nothing started");
    std::fs::remove_file(logs.join("chatty.log")).unwrap();
    h.start_ok();
    // Planted while running: the daemon's next look finds it and never
    // writes through it.
    let log = logs.join("chatty.log");
    wait_until("the service logs", || log.exists());
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &log).unwrap();
    wait_until("output is dropped", || {
        metric(&h, "stigmer_log_dropped_bytes_total{service=\"chatty\"}") > 0.0
    });
    assert_eq!(
        std::fs::read(&elsewhere).unwrap(),
        b"",
        "the target is untouched"
    );
    assert!(
        h.service("chatty")["warnings"]
            .to_string()
            .contains("symlink")
    );
}

#[test]
fn a_record_naming_a_strangers_group_never_aims_a_signal() {
    let h = TestHome::new();
    // A stranger: the leader of a session and group of its own.
    let mut sleep = {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new("sleep");
        c.arg("300");
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                Ok(())
            })
        };
        c.spawn().unwrap()
    };
    let sleep_pid = sleep.id() as i32;
    wait_until("the stranger runs", || {
        stigmer::process::proc::stat(sleep_pid).is_some_and(|s| s.pgrp == sleep_pid)
    });
    // A pid that is gone (for the dead daemon and Temporal).
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id() as i32;
    gone.wait().unwrap();
    let identity = |pid: i32, pgid: i32| serde_json::json!({"pid": pid, "pgid": pgid, "start_time": 1, "exe": "/bin/stigmer"});
    let record = serde_json::json!({
        "version": 1,
        "daemon": identity(gone_pid, gone_pid),
        "temporal": identity(gone_pid, sleep_pid),
        "services": {"api": identity(sleep_pid, sleep_pid)},
        "frontend": format!("127.0.0.1:{}", h.port),
        "ui_url": null,
        "http_addr": format!("127.0.0.1:{}", h.http_port),
        "db_file": "/nowhere/temporal.db",
        "temporal_bin": "/bin/temporal",
        "started_at": 1,
    });
    std::fs::create_dir_all(h.home()).unwrap();
    std::fs::set_permissions(h.home(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let write = |r: &Value| {
        std::fs::write(h.home().join("stigmer.pid"), serde_json::to_vec(r).unwrap()).unwrap()
    };
    write(&record);
    let out = h.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        alive(sleep_pid),
        "stop left the stranger alone: {}",
        text(&out)
    );
    write(&record);
    h.start_ok();
    assert!(alive(sleep_pid), "start left the stranger alone");
    h.stop();
    // A record of another boot names nothing of this one, even a pid whose
    // start time matches.
    let mut other_boot = record.clone();
    let start = stigmer::process::proc::stat(sleep_pid).unwrap().start_time;
    other_boot["temporal"] =
        serde_json::json!({"pid": sleep_pid, "pgid": sleep_pid, "start_time": start, "exe": null});
    other_boot["boot_id"] = "00000000-0000-0000-0000-000000000000".into();
    write(&other_boot);
    let out = h.stop();
    assert!(text(&out).contains("earlier boot"), "{}", text(&out));
    assert!(alive(sleep_pid), "a record of another boot aims nothing");
    signal(sleep_pid, Signal::SIGKILL);
    let _ = sleep.wait();
}

/// GET `path` from the daemon with `Host: host`: the status code.
fn status_with_host(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

#[test]
fn a_rebound_host_gets_nothing_and_keep_alive_clients_starve_no_probe() {
    let h = TestHome::new();
    h.start_ok();
    for path in ["/status", "/metrics", "/"] {
        let (code, body) = status_with_host(h.http_port, path, "evil.example");
        assert_eq!(code, 403, "{path}");
        assert!(body.is_empty() || body == "0\r\n\r\n", "{path}: {body}");
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            let host = format!("{host}:{}", h.http_port);
            assert_eq!(
                status_with_host(h.http_port, path, &host).0,
                200,
                "{path} {host}"
            );
        }
    }
    assert_eq!(
        status_with_host(h.http_port, "/livez", "evil.example").0,
        200
    );
    // 200 keep-alive clients, each asking every 4 s on its connection.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = h.http_port;
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    return;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 4096];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if s.write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                    let _ = s.read(&mut buf);
                    for _ in 0..20 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            return;
                        }
                        std::thread::park_timeout(Duration::from_millis(200));
                    }
                }
            })
        })
        .collect();
    wait_until("the keep-alive clients hold their connections", || {
        stigmer::process::proc::open_fds(h.daemon_pid().unwrap()).unwrap_or(0) > 100
    });
    // A fresh client (a kubelet's probe) is answered within its timeout.
    for _ in 0..5 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let answer = stigmer::http_client::get_from(addr, "/livez", Duration::from_secs(1))
            .expect("a fresh /livez is answered within 1 s");
        assert_eq!(answer.status, 200);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.thread().unpark();
        let _ = c.join();
    }
}

#[test]
fn a_config_others_can_write_is_refused_and_its_service_never_runs() {
    let h = TestHome::new();
    let marker = h.dir.path().join("ran");
    h.write_config(&format!(
        "[services.planted]\ncommand = ['touch', {:?}]\n",
        marker.display().to_string()
    ));
    std::fs::set_permissions(h.home(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = h.home().join("stigmer.toml");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = h.start();
    assert_eq!(out.status.code(), Some(13), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("chmod"), "says what to do: {err}");
    assert!(!marker.exists(), "its service never ran");
    assert!(h.processes().is_empty());
    // A home others can write is refused, not repaired.
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(h.home(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = h.start();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let mode = std::fs::metadata(h.home()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o777, "not repaired behind the user's back");
    assert!(!marker.exists());
}

#[test]
fn logs_follow_survives_any_bytes_and_says_how_it_ended() {
    let h = TestHome::new();
    h.write_config(
        "[services.bytes]\n\
         command = ['sh', '-c', 'while :; do printf \"bad \\\\377\\\\376 bytes\\\\n\"; sleep 0.05; done']\n\
         depends_on = ['temporal']\n",
    );
    h.start_ok();
    let follow = |h: &TestHome| {
        let mut c = h.cmd(&["local", "logs", "bytes", "-f", "-n", "1"]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    // Lines keep coming past invalid UTF-8, each as it is written.
    let mut f = follow(&h);
    let mut lines = std::io::BufReader::new(f.stdout.take().unwrap()).lines();
    for _ in 0..5 {
        let l = lines.next().unwrap().unwrap();
        assert_eq!(l, "bad \u{fffd}\u{fffd} bytes");
    }
    signal(f.id() as i32, Signal::SIGTERM);
    assert_eq!(f.wait().unwrap().code(), Some(143), "SIGTERM");
    let mut f = follow(&h);
    let mut first = String::new();
    std::io::BufReader::new(f.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    signal(f.id() as i32, Signal::SIGINT);
    assert_eq!(f.wait().unwrap().code(), Some(130), "Ctrl-C");
    // Its reader goes away (`| head -1`): a quiet exit 0.
    let mut f = follow(&h);
    let mut out = f.stdout.take().unwrap();
    let mut one = [0u8; 1];
    out.read_exact(&mut one).unwrap();
    drop(out);
    let end = f.wait_with_output().unwrap();
    assert_eq!(
        end.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&end.stderr)
    );
    assert!(
        end.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&end.stderr)
    );
    // The instance stops: it says so, exit 3.
    let f = follow(&h);
    h.stop();
    let end = f.wait_with_output().unwrap();
    assert_eq!(
        end.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&end.stderr)
    );
}
