//! Issue #10: a crashed daemon never blocks the next start or stop, the
//! kernel's lock table names the live daemon, and a foreign listener is
//! named even when its thread-group leader is a zombie.

use crate::common::*;
use nix::sys::signal::Signal;
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stigmer::process::proc;

/// SIGKILL the daemon, then return the moment its Temporal's leader has
/// turned zombie (or is gone), polling `/proc/PID/stat` every millisecond:
/// the instant at which Temporal's other threads may still hold its port.
fn kill_daemon_and_catch_temporal_dying(h: &TestHome) -> i32 {
    let temporal = h.serving_pid().expect("serving");
    let daemon = h.daemon_pid().expect("daemon pid");
    signal(daemon, Signal::SIGKILL);
    let deadline = Instant::now() + WAIT;
    while proc::stat(temporal).is_some_and(|s| !s.leader_exited()) {
        assert!(Instant::now() < deadline, "Temporal never died");
        std::thread::sleep(Duration::from_millis(1));
    }
    temporal
}

/// A home whose starts name the real Temporal binary, as a user with a
/// direct install would: no shim to resolve, so a start reaches the lock
/// within milliseconds of being run.
fn direct_home() -> TestHome {
    let mut h = TestHome::new();
    h.extra.extend([
        "--temporal-bin".into(),
        temporal_bin().display().to_string(),
    ]);
    h
}

#[test]
fn start_right_after_a_daemon_crash_succeeds_twenty_times() {
    let h = direct_home();
    h.start_ok();
    for round in 0..20 {
        let old = kill_daemon_and_catch_temporal_dying(&h);
        let out = h.start();
        assert_eq!(out.status.code(), Some(0), "round {round}: {}", text(&out));
        let pid = h.serving_pid().expect("serving after the start");
        assert_ne!(pid, old);
        assert_eq!(h.temporals(), vec![pid], "round {round}: one Temporal");
        assert_eq!(h.daemons().len(), 1, "round {round}: one daemon");
    }
    assert_eq!(h.stop().status.code(), Some(0));
    h.assert_nothing_left();
}

#[test]
fn stop_right_after_a_daemon_crash_leaves_the_port_free() {
    let h = direct_home();
    for round in 0..5 {
        h.start_ok();
        kill_daemon_and_catch_temporal_dying(&h);
        let out = h.stop();
        assert_eq!(out.status.code(), Some(0), "round {round}: {}", text(&out));
        // stop returns once everything is gone: no waiting here.
        assert!(port_free(h.port), "round {round}: port still held");
        assert!(
            h.processes().is_empty(),
            "round {round}: {:?}",
            h.processes()
        );
        assert!(h.lock_free());
    }
}

/// The pid `lslocks` shows for the file with inode `ino`. lslocks reads
/// `/proc/locks` 1 KiB at a time (stdio on a procfs file; strace shows it),
/// and that table is not a snapshot across reads (`proc::lock_holders`
/// says why): while other tests take and drop their locks, one run can
/// miss our entry (CI saw `None` once). So it runs until it shows the
/// entry; the pid it then shows is returned, and a wrong one fails the
/// caller at once.
fn lslocks_pid(ino: u64) -> i32 {
    let mut shown = None;
    wait_until("lslocks shows the lock", || {
        shown = lslocks_once(ino);
        shown.is_some()
    });
    shown.unwrap()
}

fn lslocks_once(ino: u64) -> Option<i32> {
    let out = Command::new("lslocks")
        .args(["--noheadings", "--raw", "-o", "PID,INODE"])
        .output()
        .expect("lslocks (util-linux)");
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let pid = f.next()?.parse().ok()?;
        (f.next()?.parse::<u64>().ok()? == ino).then_some(pid)
    })
}

#[test]
fn kernel_lock_table_names_the_live_daemon() {
    let h = TestHome::new();
    let lock = h.home().join("stigmer.lock");
    let check = |why: &str| {
        let daemon = h.daemon_pid().expect("daemon pid");
        assert_eq!(
            proc::processes_with_open(&lock),
            vec![daemon],
            "{why}: only the daemon holds the lock file open"
        );
        assert_eq!(
            proc::lock_holders(&lock),
            vec![daemon],
            "{why}: /proc/locks"
        );
        let ino = std::fs::metadata(&lock).unwrap().ino();
        assert_eq!(lslocks_pid(ino), daemon, "{why}: lslocks");
    };
    // Launched by a CLI that took the lock and handed it over.
    h.start_ok();
    check("after start");
    // The lock file replaced under the daemon: it locks the new one.
    std::fs::remove_file(&lock).unwrap();
    wait_until("the daemon re-creates and locks the file", || {
        lock.exists() && !h.lock_free()
    });
    check("after the lock file was replaced");
    assert_eq!(h.stop().status.code(), Some(0));
    // Concurrent starts: the one daemon they leave is the one named.
    for o in concurrent_starts(&h, 8) {
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    check("after 8 concurrent starts");
}

/// A stranger whose main thread has exited (a zombie leader) while a
/// second thread keeps the listening socket: `/proc/PID/fd` is unreadable,
/// the thread's own fd table is not.
const ZOMBIE_LEADER_LISTENER: &str = r#"
import ctypes, os, socket, sys, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
threading.Thread(target=lambda: time.sleep(3600)).start()
print(os.getpid(), flush=True)
ctypes.CDLL(None).pthread_exit(None)
"#;

/// Kills (every thread of) a stand-in when dropped, whatever happened.
struct KillOnDrop(i32, std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        signal(self.0, Signal::SIGKILL);
        let _ = self.1.wait();
    }
}

/// Run [`ZOMBIE_LEADER_LISTENER`] on `port`, in a process group of its
/// own; returns once its leader is a zombie and its second thread listens.
fn zombie_leader_listener(port: u16) -> KillOnDrop {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("python3")
        .args(["-c", ZOMBIE_LEADER_LISTENER, &port.to_string()])
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: i32 = line.trim().parse().expect("the stand-in's pid");
    let guard = KillOnDrop(pid, child);
    wait_until(
        "the stand-in's leader is a zombie with a live thread",
        || proc::stat(pid).is_some_and(|s| s.leader_exited() && !s.exited()),
    );
    assert!(!port_free(port), "the stand-in holds the port");
    guard
}

#[test]
fn foreign_listener_with_a_zombie_leader_is_named() {
    let h = TestHome::new();
    let stranger = zombie_leader_listener(h.port);
    let pid = stranger.0;
    let comm = proc::comm(pid).unwrap();
    let out = h.start();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {pid} ({comm})")),
        "names the stranger: {err}"
    );
    assert!(h.processes().is_empty(), "{:?}", h.processes());
    assert!(h.lock_free());
    assert!(
        proc::stat(pid).is_some_and(|s| !s.exited()),
        "the stranger was left alone"
    );
}

/// The same zombie-leader listener, but recorded in the PID file as the
/// Temporal of a daemon that died: it is ours, still exiting, so the start
/// waits for it to be gone (and takes its group along) instead of failing.
#[test]
fn our_recorded_temporal_still_exiting_is_waited_for() {
    let h = TestHome::new();
    let ours = zombie_leader_listener(h.port);
    let pid = ours.0;
    let start_time = proc::stat(pid).unwrap().start_time;
    std::fs::create_dir_all(h.home()).unwrap();
    let record = serde_json::json!({
        "version": 1,
        "daemon": {"pid": 999_999, "pgid": 999_999, "start_time": 1, "exe": null},
        "temporal": {"pid": pid, "pgid": pid, "start_time": start_time, "exe": null},
        "frontend": format!("127.0.0.1:{}", h.port), "ui_url": null,
        "http_addr": format!("127.0.0.1:{}", h.http_port),
        "db_file": "/nonexistent", "temporal_bin": temporal_bin(), "started_at": 1
    });
    std::fs::write(h.home().join("stigmer.pid"), record.to_string()).unwrap();
    h.start_ok();
    assert!(
        proc::stat(pid).is_none_or(|s| s.exited()),
        "the exiting process is gone"
    );
    assert_eq!(h.temporals().len(), 1);
}
