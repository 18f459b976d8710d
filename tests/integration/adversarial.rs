//! Issue #7: faults, bad input and security. Each test names the row of
//! the README's "Adversarial behaviour" table it proves.

use crate::common::*;
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

/// Documented exit codes (README "Exit codes").
const DOCUMENTED: [i32; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 70];

/// The end state is coherent: nothing, or exactly one daemon + Temporal
/// with the lock held and the PID file naming them.
fn assert_coherent(h: &TestHome) {
    // Let in-flight transitions settle: the lock and processes agree.
    wait_until("lock and processes agree", || {
        let procs = h.processes();
        if h.lock_free() {
            procs.is_empty()
        } else {
            h.daemons().len() == 1 && h.temporals().len() <= 1
        }
    });
    if !h.lock_free() {
        wait_until("one serving instance", || h.serving_pid().is_some());
        let rec = h.pid_record();
        assert_eq!(
            rec["daemon"]["pid"].as_i64().map(|p| p as i32),
            h.daemons().first().copied()
        );
        assert_eq!(h.temporals().len(), 1);
        assert_eq!(
            rec["temporal"]["pid"].as_i64().map(|p| p as i32),
            h.temporals().first().copied()
        );
    }
}

#[test]
fn thirty_two_concurrent_starts_then_command_storms_stay_coherent() {
    let h = TestHome::new();
    let outs = concurrent_starts(&h, 32);
    for o in &outs {
        assert_eq!(o.status.code(), Some(0), "{}", text(o));
    }
    assert_eq!(h.daemons().len(), 1);
    assert_eq!(h.temporals().len(), 1);

    // Interleaved start/stop/restart from several processes.
    let ops = [
        ["start", "stop", "restart", "start", "status"],
        ["stop", "start", "start", "restart", "stop"],
        ["restart", "restart", "stop", "start", "status"],
        ["start", "status", "stop", "stop", "restart"],
    ];
    let codes: Vec<Vec<(String, std::process::Output)>> = std::thread::scope(|s| {
        let hs: Vec<_> = ops
            .iter()
            .map(|seq| {
                let h = &h;
                s.spawn(move || {
                    seq.iter()
                        .map(|op| {
                            let out = match *op {
                                "start" => h.start(),
                                "stop" => h.stop(),
                                // A restart that finds nothing running
                                // starts: with this home's ports, never
                                // the defaults another instance may hold.
                                "restart" => {
                                    let mut args = h.start_args();
                                    args[1] = "restart".into();
                                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                                    run(h.cmd(&refs))
                                }
                                other => run(h.cmd(&["local", other])),
                            };
                            (op.to_string(), out)
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    for (op, out) in codes.iter().flatten() {
        let c = out.status.code().unwrap_or(-1);
        assert!(
            DOCUMENTED.contains(&c),
            "{op}: undocumented exit {c}: {}",
            text(out)
        );
        if op == "start" || op == "stop" || op == "restart" {
            assert_eq!(c, 0, "{op} in a storm: {}", text(out));
        }
    }
    assert_coherent(&h);
    assert_eq!(h.stop().status.code(), Some(0));
    h.assert_nothing_left();
}

/// A stop whose daemon is succeeded at once by racing starts still reports
/// success: it waits for its own daemon's exit, not for the lock to be free
/// (which one of several waiting starts takes again within milliseconds).
#[test]
fn stop_racing_start_loops_succeeds() {
    let h = TestHome::new();
    h.start_ok();
    let first = h.daemons();
    let stopped = std::sync::atomic::AtomicBool::new(false);
    let stop_out = std::thread::scope(|s| {
        let starters: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                        h.start_ok();
                    }
                })
            })
            .collect();
        let out = h.stop();
        stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in starters {
            t.join().unwrap();
        }
        h.start_ok();
        out
    });
    assert_eq!(stop_out.status.code(), Some(0), "{}", text(&stop_out));
    assert_coherent(&h);
    assert_eq!(h.daemons().len(), 1);
    assert_ne!(h.daemons(), first, "the last start launched a new daemon");
    assert_eq!(h.stop().status.code(), Some(0));
    h.assert_nothing_left();
}

fn sigkill_daemon_then_recover(h: &TestHome, mut daemon: std::process::Child) {
    signal(daemon.id() as i32, Signal::SIGKILL);
    daemon.wait().unwrap();
    wait_until("nothing of the dead daemon remains", || {
        h.processes().is_empty()
    });
    wait_until("lock released", || h.lock_free());
    h.start_ok();
    assert_coherent(h);
    assert_eq!(h.daemons().len(), 1);
    assert_eq!(h.temporals().len(), 1);
}

#[test]
fn sigkill_daemon_while_temporal_starts() {
    let h = TestHome::new();
    let wrapper = h.gated_wrapper();
    let daemon = h.foreground(&["--temporal-bin", wrapper.to_str().unwrap()]);
    wait_until("Temporal's launcher is waiting at its gate", || {
        h.dir.path().join("launches").exists()
    });
    sigkill_daemon_then_recover(&h, daemon);
}

#[test]
fn sigkill_daemon_during_backoff() {
    let h = TestHome::new();
    let crasher = script(h.dir.path(), "crasher", "exit 1");
    let daemon = h.foreground(&["--temporal-bin", crasher.to_str().unwrap()]);
    wait_until("in a backoff wait", || {
        let (_, v) = h.status_json();
        v["backoff"]["delay_ms"].as_f64().unwrap_or(0.0) > 300.0
    });
    sigkill_daemon_then_recover(&h, daemon);
}

#[test]
fn sigkill_daemon_during_stop() {
    let h = TestHome::new();
    let daemon = h.foreground(&[]);
    wait_until("serving", || h.serving_pid().is_some());
    let temporal = h.serving_pid().unwrap();
    signal(daemon.id() as i32, Signal::SIGTERM);
    wait_until("stopping", || {
        h.status_json().1["temporal"]["state"] == "stopping"
    });
    assert!(alive(temporal), "Temporal still shutting down");
    sigkill_daemon_then_recover(&h, daemon);
    assert!(!alive(temporal));
}

#[test]
fn lock_and_pid_file_tampering_never_makes_two_instances() {
    let h = TestHome::new();
    h.start_ok();
    let pid = h.serving_pid().unwrap();
    let lock = h.home().join("stigmer.lock");
    let pid_file = h.home().join("stigmer.pid");
    // Lock file deleted: a start meanwhile defers to the running daemon.
    std::fs::remove_file(&lock).unwrap();
    let out = h.start_ok();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already running"),
        "{}",
        text(&out)
    );
    wait_until("daemon re-creates and holds the lock file", || {
        lock.exists() && !h.lock_free()
    });
    // Lock file replaced by another file.
    std::fs::remove_file(&lock).unwrap();
    std::fs::write(&lock, "").unwrap();
    h.start_ok();
    wait_until("lock repaired again", || !h.lock_free());
    // PID file deleted, then corrupted: rewritten by the daemon.
    std::fs::remove_file(&pid_file).unwrap();
    h.start_ok();
    wait_until("PID file rewritten", || {
        h.pid_record()["temporal"]["pid"].as_i64() == Some(pid as i64)
    });
    std::fs::write(&pid_file, "{garbage").unwrap();
    wait_until("PID file repaired", || {
        h.pid_record()["temporal"]["pid"].as_i64() == Some(pid as i64)
    });
    assert_eq!(h.serving_pid(), Some(pid), "Temporal untouched by all this");
    assert_eq!(h.daemons().len(), 1);
    assert_eq!(h.temporals(), vec![pid]);
    let (_, v) = h.status_json();
    assert_eq!(v["health"]["lock"]["ok"], true, "{v}");
}

#[test]
fn hostile_pid_files_never_get_anything_signalled() {
    let h = TestHome::new();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let spid = sleeper.id() as i32;
    let st = start_time(spid).unwrap();
    let me = std::process::id();
    let record = |pid: i64| {
        format!(
            r#"{{"version":1,"daemon":{{"pid":{pid},"pgid":{pid},"start_time":1,"exe":null}},"temporal":{{"pid":{pid},"pgid":{pid},"start_time":1,"exe":null}},"frontend":"127.0.0.1:1","ui_url":null,"http_addr":"127.0.0.1:1","db_file":"/x","temporal_bin":"/x","started_at":1}}"#
        )
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("garbage", b"\x00\xffnot a pid file".to_vec()),
        (
            "truncated JSON",
            record(spid as i64).as_bytes()[..40].to_vec(),
        ),
        ("huge", vec![b'7'; 5 << 20]),
        ("pid 1", record(1).into_bytes()),
        ("negative pid", record(-5).into_bytes()),
        ("zero pid", record(0).into_bytes()),
        (
            "another program's live process",
            record(spid as i64).into_bytes(),
        ),
        ("our own pid", record(me as i64).into_bytes()),
        ("bare pid of a live process", format!("{spid}").into_bytes()),
        ("bare pid 1", b"1".to_vec()),
    ];
    std::fs::create_dir_all(h.home()).unwrap();
    for (name, bytes) in cases {
        std::fs::write(h.home().join("stigmer.pid"), &bytes).unwrap();
        // `stop` with no daemon reads the same file and reclaims orphans.
        let out = h.stop();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        assert_eq!(start_time(spid), Some(st), "{name}: sleeper signalled");
        std::fs::write(h.home().join("stigmer.pid"), &bytes).unwrap();
        let out = h.start();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("note:"), "{name}: says what it did: {said}");
        assert_eq!(start_time(spid), Some(st), "{name}: sleeper signalled");
        assert_eq!(h.stop().status.code(), Some(0));
    }
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

#[test]
fn symlinks_in_the_state_dir_are_refused() {
    let h = TestHome::new();
    let elsewhere = h.dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "precious").unwrap();
    // The state dir itself.
    let real = h.dir.path().join("real-home");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, h.home()).unwrap();
    let out = h.start();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symlink"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(h.home()).unwrap();
    // Files inside it.
    for file in ["stigmer.pid", "logs/temporal.log", "stigmer.lock"] {
        h.start_ok();
        assert_eq!(h.stop().status.code(), Some(0));
        let p = h.home().join(file);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(&elsewhere, &p).unwrap();
        let out = h.start();
        assert_eq!(out.status.code(), Some(6), "{file}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("symlink"),
            "{file}: {}",
            text(&out)
        );
        assert_eq!(
            std::fs::read_to_string(&elsewhere).unwrap(),
            "precious",
            "{file}: target untouched"
        );
        assert!(h.processes().is_empty() && h.lock_free());
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn unusable_state_dirs_fail_cleanly() {
    let h = TestHome::new();
    // Under a regular file: cannot be created.
    let file = h.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let mut c = h.start_cmd(&[]);
    c.env("STIGMER_HOME", file.join("home"));
    let out = run(c);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1,
        "one line: {}",
        text(&out)
    );
    // Owned by another user.
    std::fs::create_dir_all(h.home()).unwrap();
    nix::unistd::chown(&h.home(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let out = h.start();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("owned by uid 65534"),
        "{}",
        text(&out)
    );
    nix::unistd::chown(&h.home(), Some(nix::unistd::getuid()), None).unwrap();
    // Writable by others: refused and left as it is; readable by others
    // is the user's choice. Files are private either way.
    std::fs::set_permissions(h.home(), std::fs::Permissions::from_mode(0o757)).unwrap();
    let out = h.start();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(text(&out).contains("chmod o-w"), "{}", text(&out));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&h.home()), 0o757, "not repaired");
    std::fs::set_permissions(h.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    h.start_ok();
    assert_eq!(mode(&h.home()), 0o755);
    for f in [
        "stigmer.lock",
        "stigmer.pid",
        "logs/temporal.log",
        "logs/daemon.log",
    ] {
        assert_eq!(mode(&h.home().join(f)), 0o600, "{f}");
    }
}

#[test]
fn disk_full_while_writing_the_pid_file_leaves_nothing_half_written() {
    let h = TestHome::new();
    let mnt = h.dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(
        ok.success(),
        "mounting a small tmpfs needs root (tests run as root)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _u = Unmount(mnt.clone());
    let home = mnt.join("home");
    for d in ["", "logs", "temporal-data"] {
        std::fs::create_dir_all(home.join(d)).unwrap();
    }
    // Fill the filesystem.
    let mut f = std::fs::File::create(mnt.join("filler")).unwrap();
    let _ = f.write_all(&vec![0u8; 1 << 20]);
    drop(f);
    let mut c = h.start_cmd(&[]);
    c.env("STIGMER_HOME", &home);
    let out = run(c);
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 6 || code == 8, "clear failure, got {}", text(&out));
    assert!(
        !home.join("stigmer.pid").exists(),
        "no half-written PID file"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    wait_until("nothing left running", || {
        let mnt = mnt.to_string_lossy().to_string();
        stigmer::process::proc::pids()
            .into_iter()
            .all(|p| !stigmer::process::proc::cmdline(p).join(" ").contains(&mnt))
    });
}

#[test]
fn bad_temporal_binaries_fail_fast_with_clear_errors() {
    let h = TestHome::new();
    let not_exec = h.dir.path().join("not-exec");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    for (bin, want) in [
        (not_exec.display().to_string(), 4),
        (h.dir.path().display().to_string(), 4),
        ("/bin/true".into(), 8),
    ] {
        let out = run(h.start_cmd(&["--temporal-bin", &bin]));
        assert_eq!(out.status.code(), Some(want), "{bin}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error:"),
            "{}",
            text(&out)
        );
        h.assert_nothing_left();
    }
    // Never opens the port: bounded by --timeout, and what was started is stopped.
    let silent = script(h.dir.path(), "silent", "exec sleep 3600");
    let out = run(h.start_cmd(&["--temporal-bin", silent.to_str().unwrap(), "--timeout", "3"]));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    h.assert_nothing_left();
}

#[test]
fn port_held_by_our_orphaned_temporal_is_reclaimed() {
    let h = TestHome::new();
    std::fs::create_dir_all(h.home().join("temporal-data")).unwrap();
    std::fs::create_dir_all(h.home().join("logs")).unwrap();
    // A Temporal of "ours" whose daemon died without a trace: we start it
    // and record its identity as a dead daemon would have.
    use std::os::unix::process::CommandExt;
    let mut orphan = std::process::Command::new(temporal_bin())
        .args([
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--headless",
            "--port",
        ])
        .arg(h.port.to_string())
        .arg("--db-filename")
        .arg(h.home().join("temporal-data/temporal.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let opid = orphan.id() as i32;
    wait_until("orphan listens", || !port_free(h.port));
    let exe = stigmer::process::proc::exe(opid).unwrap();
    let rec = serde_json::json!({
        "version": 1,
        "daemon": {"pid": 999_999, "pgid": 999_999, "start_time": 1, "exe": null},
        "temporal": {"pid": opid, "pgid": opid, "start_time": start_time(opid).unwrap(), "exe": exe},
        "frontend": format!("127.0.0.1:{}", h.port), "ui_url": null,
        "http_addr": format!("127.0.0.1:{}", h.http_port),
        "db_file": h.home().join("temporal-data/temporal.db"), "temporal_bin": temporal_bin(), "started_at": 1
    });
    std::fs::write(h.home().join("stigmer.pid"), rec.to_string()).unwrap();
    let out = h.start_ok();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("orphaned Temporal"),
        "{}",
        text(&out)
    );
    let reaped = orphan.wait().unwrap();
    assert!(
        !reaped.success() || reaped.code() == Some(0),
        "orphan stopped"
    );
    assert_ne!(h.serving_pid(), Some(opid));
}

#[test]
fn out_of_range_flags_are_all_reported_at_once() {
    let h = TestHome::new();
    let out = run(h.cmd(&[
        "local",
        "start",
        "--health-interval",
        "0",
        "--health-timeout",
        "-1",
        "--failure-threshold",
        "0",
        "--timeout",
        "0",
        "--stop-grace",
        "-3",
        "--http-addr",
        "not-an-address",
        "--temporal-ip",
        "localhost:7233",
    ]));
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for flag in [
        "--health-interval",
        "--health-timeout",
        "--failure-threshold",
        "--timeout",
        "--stop-grace",
        "--http-addr",
        "--temporal-ip",
    ] {
        assert!(err.contains(flag), "{flag} reported: {err}");
    }
    assert!(!h.home().exists(), "nothing created");
    // Environment too.
    let mut c = h.cmd(&["local", "start"]);
    c.env("STIGMER_HEALTH_INTERVAL", "-2")
        .env("STIGMER_PORT", "0");
    let out = run(c);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
}

#[test]
fn http_is_loopback_read_only_and_sheds_abuse_without_disturbing_supervision() {
    let h = TestHome::new();
    // Non-loopback needs the explicit flag.
    let mut args = h.start_args();
    let i = args.iter().position(|a| a == "--http-addr").unwrap();
    args[i + 1] = format!("0.0.0.0:{}", h.http_port);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(h.cmd(&refs));
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote-http"));

    h.start_ok();
    let p = h.http_port;
    let raw = |req: &[u8]| -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(req);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).to_string()
    };
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = raw(format!(
            "{method} /status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes());
        assert!(r.starts_with("HTTP/1.1 405"), "{method}: {r}");
    }
    assert!(
        raw(b"GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .starts_with("HTTP/1.1 404")
    );
    let huge = format!(
        "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let r = raw(huge.as_bytes());
    assert!(
        r.is_empty() || r.starts_with("HTTP/1.1 431"),
        "oversized head cut off: {}",
        &r[..r.len().min(80)]
    );

    // Slow clients hold connections open while we crash Temporal: it is
    // still restarted, and the server still answers.
    let mut slow: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", p)).ok())
        .collect();
    for s in &mut slow {
        let _ = s.write_all(b"GET /status HTTP/1.1\r\nHo");
    }
    // (More than the server's connection cap: the excess is shed, so the
    // daemon's own status may be briefly unreachable; supervision is not.)
    let temporal_pid = |h: &TestHome| h.pid_record()["temporal"]["pid"].as_i64().map(|p| p as i32);
    let pid = temporal_pid(&h).unwrap();
    signal(pid, Signal::SIGKILL);
    wait_until("restarted while the HTTP server is flooded", || {
        temporal_pid(&h).is_some_and(|p| p != pid)
            && h.temporal(&["operator", "cluster", "health"])
                .status
                .success()
    });
    // The slow ones are cut off by the header timeout.
    let mut cut = vec![false; slow.len()];
    wait_until_for(Duration::from_secs(20), "slow clients cut off", || {
        for (s, done) in slow.iter_mut().zip(cut.iter_mut()) {
            if *done {
                continue;
            }
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            let mut b = [0u8; 256];
            *done = match s.read(&mut b) {
                Ok(0) => true,                                               // closed
                Ok(n) => String::from_utf8_lossy(&b[..n]).contains(" 408 "), // timed out
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            };
        }
        cut.iter().all(|c| *c)
    });
    assert_eq!(code_of(p, "/healthz"), 200, "still serving");
}

fn code_of(port: u16, path: &str) -> u16 {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    stigmer::http_client::get_from(addr, path, Duration::from_secs(5)).map_or(0, |a| a.status)
}
