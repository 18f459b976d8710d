//! Issue #12: the whole local stack — services declared in stigmer.toml,
//! gated on readiness, supervised like Temporal — and attach mode.
//!
//! Every service command carries the test's temp dir as a last argument
//! (the scripts ignore it), so `TestHome` finds and cleans up its
//! processes like the daemon's and Temporal's.

use crate::common::*;
use nix::sys::signal::Signal;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `api`'s command of `config` (an HTTP service on `port`) made a shell
/// that forks a grandchild (a subshell, whose command line carries the
/// test's marker) before it execs the service.
fn with_grandchild(config: &str, port: u16) -> String {
    let script = asset("http_service.py").display().to_string();
    config.replace(
        &format!("command = ['python3', {script:?}, '{port}'"),
        &format!(
            "command = ['sh', '-c', '(sleep 3600; true) & exec python3 \"$0\" \"$1\" \"$2\"', {script:?}, '{port}'"
        ),
    )
}

/// `[services.worker]`: the Python SDK worker, ready on its log line.
fn worker_service(h: &TestHome) -> String {
    format!(
        "[services.worker]\n\
         command = ['python3', {worker:?}, {marker:?}]\n\
         env = {{ TEMPORAL_ADDRESS = '127.0.0.1:{port}', TASK_QUEUE = 'stack' }}\n\
         depends_on = ['temporal']\n\
         ready = {{ log = 'Worker ready, polling for tasks' }}\n",
        worker = asset("tq_worker.py").display().to_string(),
        marker = h.dir.path().display().to_string(),
        port = h.port,
    )
}

/// `[services.NAME]`: the HTTP API on `port`, ready (and healthy) when
/// /healthz answers, after `deps`.
fn http_service(h: &TestHome, name: &str, port: u16, deps: &[&str], extra: &str) -> String {
    format!(
        "[services.{name}]\n\
         command = ['python3', {script:?}, '{port}', {marker:?}]\n\
         depends_on = {deps:?}\n\
         ready = {{ http = 'http://127.0.0.1:{port}/healthz' }}\n{extra}",
        script = asset("http_service.py").display().to_string(),
        marker = h.dir.path().display().to_string(),
    )
}

/// `temporal workflow execute` of `Greet` with `name` on this instance's
/// queue `stack`: its output.
fn greet(h: &TestHome, name: &str) -> String {
    let out = greet_on(
        &["--address", &format!("127.0.0.1:{}", h.port)],
        &[],
        "stack",
        name,
    );
    assert!(out.contains("COMPLETED"), "workflow failed: {out}");
    out
}

#[test]
fn a_real_worker_serves_workflows_across_restarts_of_either() {
    let h = TestHome::new();
    h.write_config(&worker_service(&h));
    h.start_ok();
    assert!(greet(&h, "World").contains("Hello, World!"));

    // Temporal SIGKILLed: respawned; the worker reconnects on its own and
    // is not restarted.
    let worker = h.ready_service_pid("worker").expect("worker ready");
    let temporal = h.serving_pid().unwrap();
    signal(temporal, Signal::SIGKILL);
    h.wait_serving_new_pid(temporal);
    assert!(greet(&h, "Again").contains("Hello, Again!"));
    assert_eq!(h.ready_service_pid("worker"), Some(worker), "not restarted");

    // The worker SIGKILLed: respawned and ready again.
    signal(worker, Signal::SIGKILL);
    let new = h.wait_service_new_pid("worker", worker);
    assert!(greet(&h, "Third").contains("Hello, Third!"));
    let s = h.service("worker");
    assert_eq!(s["restarts"]["last_reason"]["kind"], "signaled", "{s}");
    assert!(!alive(worker));

    // Its log, and a restart by name.
    let logs = run(h.cmd(&["local", "logs", "worker", "-n", "20"]));
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("Worker ready"),
        "{}",
        text(&logs)
    );
    let out = run(h.cmd(&["local", "restart", "worker"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    h.wait_service_new_pid("worker", new);
    let human = run(h.cmd(&["local", "status"]));
    let listed = String::from_utf8_lossy(&human.stdout);
    assert!(
        listed.contains("worker") && listed.contains("ready"),
        "{listed}"
    );
}

#[test]
fn a_dependent_starts_only_after_temporal_serves() {
    let mut h = TestHome::new();
    // Temporal takes seconds to start: a wrapper sleeps before exec.
    let slow = script(
        h.dir.path(),
        "slow-temporal",
        &format!("sleep 2\nexec {} \"$@\"", temporal_bin().display()),
    );
    h.extra
        .extend(["--temporal-bin".to_string(), slow.display().to_string()]);
    let port = free_port();
    h.write_config(&http_service(&h, "api", port, &["temporal"], ""));
    let seen_waiting = std::sync::atomic::AtomicBool::new(false);
    let started = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            h.start_ok();
            started.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // While Temporal starts, the service waits without a process.
        while !started.load(std::sync::atomic::Ordering::SeqCst) {
            let (_, v) = h.status_json();
            let (t, api) = (&v["temporal"], &v["services"]["api"]);
            if t["state"] == "starting" && api["state"] == "waiting" {
                assert!(api["pid"].is_null(), "{v}");
                seen_waiting.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(
        seen_waiting.load(std::sync::atomic::Ordering::SeqCst),
        "saw the service waiting on a starting Temporal"
    );
    let (_, v) = h.status_json();
    let serving = v["temporal"]["serving_since_unix_ms"].as_u64().unwrap();
    let spawned = v["services"]["api"]["spawned_at_unix_ms"].as_u64().unwrap();
    assert!(
        spawned >= serving,
        "spawned at {spawned}, Temporal serving since {serving}"
    );
}

#[test]
fn a_hung_http_service_is_restarted_and_temporal_is_untouched() {
    let h = TestHome::new();
    let port = free_port();
    h.write_config(&http_service(
        &h,
        "api",
        port,
        &["temporal"],
        "health = { http = 'http://127.0.0.1:PORT/healthz', interval = 0.3, timeout = 0.3, failure_threshold = 2 }\n"
            .replace("PORT", &port.to_string())
            .as_str(),
    ));
    h.start_ok();
    let temporal = h.serving_pid().unwrap();
    let api = h.ready_service_pid("api").unwrap();
    signal(api, Signal::SIGSTOP);
    let new = h.wait_service_new_pid("api", api);
    assert_ne!(new, api);
    assert!(!alive(api), "the hung process was killed");
    let s = h.service("api");
    assert_eq!(
        s["restarts"]["last_reason"],
        serde_json::json!({"kind": "unhealthy", "layer": "http"}),
        "{s}"
    );
    assert_eq!(h.serving_pid(), Some(temporal), "Temporal untouched");
    assert_eq!(h.status_json().1["restarts"]["count"], 0);
}

/// A Temporal the test runs itself, in its own process group.
struct External {
    child: std::process::Child,
    port: u16,
}

impl External {
    fn start() -> External {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let child = Command::new(temporal_bin())
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
            .arg("--port")
            .arg(port.to_string())
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let e = External { child, port };
        wait_until("the external Temporal serves", || e.serving());
        e
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn serving(&self) -> bool {
        let mut c = Command::new(temporal_bin());
        c.args(["operator", "cluster", "health", "--address"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--command-timeout", "2s"]);
        run(c).status.success()
    }
}

impl Drop for External {
    fn drop(&mut self) {
        signal(self.pid(), Signal::SIGCONT);
        signal(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn healthz(h: &TestHome) -> u16 {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], h.http_port));
    stigmer::http_client::get_from(addr, "/healthz", Duration::from_secs(5)).map_or(0, |a| a.status)
}

#[test]
fn attach_mode_watches_an_external_temporal_and_never_touches_it() {
    let h = TestHome::new();
    let ext = External::start();
    let started = start_time(ext.pid()).unwrap();
    h.write_config(&format!(
        "[temporal]\nmanaged = false\naddress = '127.0.0.1:{}'\n",
        ext.port
    ));
    let out = h.start_ok();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("external Temporal"),
        "{}",
        text(&out)
    );
    assert!(
        h.temporals().is_empty(),
        "nothing spawned: {:?}",
        h.processes()
    );
    wait_until("/healthz 200", || healthz(&h) == 200);
    let (_, v) = h.status_json();
    assert_eq!(v["temporal"]["managed"], false, "{v}");
    assert_eq!(v["temporal"]["frontend"], format!("127.0.0.1:{}", ext.port));

    signal(ext.pid(), Signal::SIGSTOP);
    wait_until_for(Duration::from_secs(10), "/healthz 503 while hung", || {
        healthz(&h) == 503
    });
    // Had anything signalled it (SIGTERM, SIGKILL), it would be gone
    // now or once continued.
    assert_eq!(start_time_any(ext.pid()), Some(started));
    signal(ext.pid(), Signal::SIGCONT);
    wait_until("/healthz 200 again", || healthz(&h) == 200);

    let out = h.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(h.lock_free());
    assert!(ext.serving(), "stop left the external Temporal serving");
    assert_eq!(start_time(ext.pid()), Some(started));
}

/// Start time of `pid` even while it is stopped.
fn start_time_any(pid: i32) -> Option<u64> {
    stigmer::process::proc::stat(pid).map(|s| s.start_time)
}

#[test]
fn temporal_service_address_attaches_like_the_file() {
    let h = TestHome::new();
    let ext = External::start();
    let mut c = h.start_cmd(&[]);
    c.env(
        "TEMPORAL_SERVICE_ADDRESS",
        format!("127.0.0.1:{}", ext.port),
    );
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(h.temporals().is_empty());
    assert_eq!(h.status_json().1["temporal"]["managed"], false);
    assert_eq!(h.stop().status.code(), Some(0));
    assert!(ext.serving());
}

#[test]
fn stop_takes_every_service_group_in_reverse_order_and_leaves_nothing() {
    let h = TestHome::new();
    let (p1, p2) = (free_port(), free_port());
    // db <- api <- web, each an HTTP service; api forks a grandchild.
    let mut config = http_service(&h, "db", p1, &[], "");
    config += &with_grandchild(&http_service(&h, "api", p2, &["db", "temporal"], ""), p2);
    config += &worker_service(&h)
        .replace("[services.worker]", "[services.web]")
        .replace("depends_on = ['temporal']", "depends_on = ['api']");
    h.write_config(&config);
    h.start_ok();
    let (_, v) = h.status_json();
    let groups: Vec<i32> = ["db", "api", "web"]
        .iter()
        .map(|n| v["services"][n]["pgid"].as_i64().unwrap() as i32)
        .collect();
    assert!(
        stigmer::process::group::group_members(groups[1]).len() >= 2,
        "api's group holds python and the forked grandchild"
    );
    let out = h.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for g in &groups {
        assert!(
            stigmer::process::group::group_members(*g).is_empty(),
            "group {g} gone"
        );
    }
    assert!(port_free(p1) && port_free(p2) && port_free(h.port));
    h.assert_nothing_left();
    // Reverse dependency order: web, then api, then db, then Temporal.
    let log = h.daemon_log();
    let at = |unit: &str| {
        log.find(&format!("stopping unit={unit}"))
            .unwrap_or_else(|| panic!("no 'stopping unit={unit}' in the daemon log:\n{log}"))
    };
    assert!(at("web") < at("api") && at("api") < at("db") && at("db") < at("temporal"));
}

/// A stack with one service that leaves a grandchild (no parent-death
/// signal), running, its record written by the disk thread (a moment
/// after the spawn); returns the service's pid.
fn stack_with_a_grandchild(h: &TestHome) -> i32 {
    let port = free_port();
    h.write_config(&with_grandchild(
        &http_service(h, "api", port, &["temporal"], ""),
        port,
    ));
    h.start_ok();
    let api = h.ready_service_pid("api").unwrap();
    wait_until("the PID file records the service", || {
        h.pid_record()["services"]["api"]["pid"].as_i64() == Some(i64::from(api))
    });
    api
}

/// `stop` reclaims the killed daemon's groups, and says so on failure.
fn stop_leaves_nothing(h: &TestHome) {
    let out = h.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    eprintln!("stop said: {}", text(&out));
    h.assert_nothing_left();
    assert!(!h.home().join("stigmer.pid").exists(), "the record is gone");
}

/// `stop` while the killed daemon is still exiting: the lock is still
/// held, so `stop` takes the path of a running daemon, which then is gone
/// without having stopped anything.
#[test]
fn a_stop_as_the_daemon_dies_still_reclaims_its_services() {
    let h = TestHome::new();
    stack_with_a_grandchild(&h);
    signal(h.daemon_pid().unwrap(), Signal::SIGKILL);
    stop_leaves_nothing(&h);
}

#[test]
fn no_service_outlives_a_killed_daemon() {
    let h = TestHome::new();
    let api = stack_with_a_grandchild(&h);
    signal(h.daemon_pid().unwrap(), Signal::SIGKILL);
    wait_until("the service dies with its daemon", || !alive(api));
    // Its grandchild has no parent-death signal; the next command that
    // takes the lock reclaims the recorded group.
    stop_leaves_nothing(&h);
}
