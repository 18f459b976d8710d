//! Issue #22: supervision that knows Temporal. A worker is ready when it
//! polls its task queue (a real Python worker, found by its process
//! group), and healthy while it still polls and heartbeats; Temporal is
//! ready only while it writes (a real full disk: a small tmpfs); one
//! Temporal environment for every service, locally and through a real
//! TLS front (nginx with `grpc_pass`, requiring a bearer key) reached
//! through a `temporal.toml` profile; traces over https.

use crate::common::*;
use crate::otlp::Receiver;
use crate::pki::Pki;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `[services.NAME]`: the test worker (tests/assets/tq_worker.py) on
/// `queue`, ready as `ready` says, with `env` (TOML inline-table pairs).
fn worker(name: &str, queue: &str, ready: &str, env: &str, deps: &[&str]) -> String {
    format!(
        "[services.{name}]\n\
         command = ['python3', {script:?}]\n\
         env = {{ TASK_QUEUE = '{queue}'{sep}{env} }}\n\
         depends_on = {deps:?}\n\
         ready = {ready}\n",
        script = asset("tq_worker.py").display().to_string(),
        sep = if env.is_empty() { "" } else { ", " },
    )
}

/// `[services.NAME]`: a process that writes its environment to `file`
/// and stays, after `deps`.
fn env_dump(name: &str, file: &Path, deps: &[&str], extra: &str) -> String {
    format!(
        "[services.{name}]\n\
         command = ['python3', '-c', 'import os, json, time; json.dump(dict(os.environ), open({tmp:?}, \"w\")); os.replace({tmp:?}, {file:?}); time.sleep(3600)']\n\
         depends_on = {deps:?}\n{extra}",
        file = file.display().to_string(),
        tmp = format!("{}.tmp", file.display()),
    )
}

/// The environment a service wrote with [`env_dump`], once it has.
fn dumped(file: &Path) -> Value {
    wait_until("the service wrote its environment", || file.exists());
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// When the daemon read the first line of unit `name`'s output that
/// contains `what` (Unix ms), from `logs --json`.
fn line_at(h: &TestHome, name: &str, what: &str) -> u64 {
    let out = run(h.cmd(&["local", "logs", name, "--json"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let line: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["line"].as_str().is_some_and(|l| l.contains(what)))
        .unwrap_or_else(|| panic!("no line of {name} says {what:?}: {}", text));
    let ts = line["ts"].as_str().expect("ts");
    let t = humantime::parse_rfc3339(ts).expect("an RFC 3339 time");
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn unix_ms(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a time: {v}"))
}

#[test]
fn a_worker_is_ready_when_it_polls_not_when_it_says_so() {
    let h = TestHome::new();
    let dump = h.dir.path().join("env.json");
    // Both workers print their readiness line 3 s before they poll: the
    // log-line probe believes it, the task-queue probe waits for the poll.
    let early = "READY_EARLY_SECS = '3'";
    h.write_config(&format!(
        "[temporal]\nnamespace = 'orders-ns'\n\n{}\n{}\n{}\n{}\n{}",
        worker(
            "by_log",
            "q-log",
            "{ log = 'Worker ready, polling' }",
            early,
            &["temporal"]
        ),
        env_dump(
            "after_log",
            &h.dir.path().join("after_log.json"),
            &["by_log"],
            ""
        ),
        worker(
            "by_queue",
            "q-poll",
            "{ task_queue = 'q-poll' }",
            early,
            &["temporal"]
        ),
        env_dump("after_queue", &dump, &["by_queue"], ""),
        env_dump(
            "no_env",
            &h.dir.path().join("no_env.json"),
            &["temporal"],
            "temporal_env = false\n"
        ),
    ));
    // A key and TLS settings meant for some other Temporal, in the shell:
    // they must not reach the workers of the plaintext dev server.
    let mut c = h.start_cmd(&[]);
    c.env("TEMPORAL_API_KEY", "not-for-the-dev-server")
        .env("TEMPORAL_TLS_SERVER_NAME", "elsewhere.example")
        .env("TEMPORAL_ADDRESS", "elsewhere.example:7233");
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (_, doc) = h.status_json();
    // Against when each worker really began to poll (its "connected"
    // line, stamped by the daemon as it read it), not against a guess of
    // how long Python takes to start on a busy machine.
    let spawned = |n: &str| unix_ms(&doc["services"][n]["spawned_at_unix_ms"]);
    let polling = |n: &str| line_at(&h, n, "connected to");
    assert!(
        spawned("after_log") < polling("by_log"),
        "the log line let its dependent start before the worker polled: {doc}"
    );
    assert!(
        spawned("after_queue") >= polling("by_queue"),
        "the dependent of a task-queue worker waited for the poll: {doc}"
    );
    let tq = &doc["services"]["by_queue"]["health"]["task_queue"];
    assert_eq!(tq["ok"], true, "{doc}");
    assert_eq!(tq["pollers"], 1, "{doc}");
    assert!(tq["last_poll_unix_ms"].as_u64().is_some(), "{doc}");
    assert_eq!(doc["temporal"]["namespace"], "orders-ns");
    // The environment every service gets (and one that opted out).
    let env = dumped(&dump);
    assert_eq!(env["TEMPORAL_ADDRESS"], format!("127.0.0.1:{}", h.port));
    assert_eq!(env["TEMPORAL_NAMESPACE"], "orders-ns");
    assert!(env.get("TEMPORAL_API_KEY").is_none(), "{env}");
    assert!(env.get("TEMPORAL_TLS_SERVER_NAME").is_none(), "{env}");
    let no_env = dumped(&h.dir.path().join("no_env.json"));
    assert_eq!(
        no_env["TEMPORAL_ADDRESS"], "elsewhere.example:7233",
        "untouched"
    );
    assert_eq!(no_env["TEMPORAL_API_KEY"], "not-for-the-dev-server");
    // The workers are real: a workflow runs through the stack's namespace.
    let port = h.port.to_string();
    let out = greet_on(
        &[
            "--address",
            &format!("127.0.0.1:{port}"),
            "--namespace",
            "orders-ns",
        ],
        &[],
        "q-poll",
        "ns",
    );
    assert!(out.contains("Hello, ns!"), "{out}");
    let metrics = stigmer::http_client::get_from(
        std::net::SocketAddr::from(([127, 0, 0, 1], h.http_port)),
        "/metrics",
        Duration::from_secs(5),
    )
    .unwrap()
    .body;
    assert!(
        metrics.contains("stigmer_service_task_queue_pollers{service=\"by_queue\"} 1"),
        "{metrics}"
    );
    h.stop();
    h.assert_nothing_left();
}

#[test]
fn a_worker_that_never_polls_fails_the_start_by_name() {
    let h = TestHome::new();
    h.write_config(&worker(
        "silent",
        "q",
        "{ task_queue = 'q', timeout = 4 }",
        "NEVER_CONNECT = '1'",
        &["temporal"],
    ));
    let out = h.start();
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("silent"), "names the service: {said}");
    assert!(said.contains("polls default/q"), "says why: {said}");
    h.assert_nothing_left();
}

#[test]
fn a_stopped_worker_is_restarted_and_workflows_complete_through_the_new_one() {
    let h = TestHome::new();
    h.write_config(&worker(
        "worker",
        "q-stop",
        "{ task_queue = 'q-stop' }",
        "",
        &["temporal"],
    ));
    h.start_ok();
    let old = h.ready_service_pid("worker").expect("worker ready");
    // A worker's first heartbeat does not say its interval; from the
    // second on, a missed one is noticed within a few intervals.
    let beat = || {
        h.service("worker")["health"]["task_queue"]["last_heartbeat_unix_ms"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut seen = std::collections::BTreeSet::new();
    wait_until("the worker heartbeats (twice)", || {
        seen.insert(beat());
        seen.iter().filter(|t| **t > 0).count() >= 3
    });
    signal(old, Signal::SIGSTOP);
    // Its heartbeats stop (every 1 s in this worker): after three missed
    // ones its check fails, and after three failed checks it restarts.
    let new = h.wait_service_new_pid("worker", old);
    assert!(!alive(old), "the stopped worker was killed");
    let s = h.service("worker");
    assert_eq!(s["restarts"]["last_reason"]["kind"], "unhealthy", "{s}");
    assert_eq!(s["restarts"]["last_reason"]["layer"], "task_queue", "{s}");
    let out = greet_on(
        &["--address", &format!("127.0.0.1:{}", h.port)],
        &[],
        "q-stop",
        "again",
    );
    assert!(out.contains("Hello, again!"), "{out}");
    assert!(alive(new));
    h.stop();
    h.assert_nothing_left();
}

/// A tmpfs of `size` at `dir`, unmounted when dropped (root, or
/// password-less sudo, as the test command's package install needs).
struct Tmpfs(PathBuf);

fn as_root(args: &[&str]) -> std::process::Output {
    let root = nix::unistd::geteuid().is_root();
    let mut c = Command::new(if root { args[0] } else { "sudo" });
    if root {
        c.args(&args[1..]);
    } else {
        c.arg("-n").args(args);
    }
    run(c)
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let opt = format!("size={size},mode=0777");
        let out = as_root(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &opt,
            "tmpfs",
            dir.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs (a real full disk); run it as root or with password-less sudo: {}",
            text(&out)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Fill it: write until the disk says it is full.
    fn fill(&self) -> PathBuf {
        let f = self.0.join("fill");
        let mut file = std::fs::File::create(&f).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = std::io::Write::write_all(&mut file, &block) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
        let _ = file.sync_all();
        f
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = as_root(&["umount", "-l", self.0.to_str().unwrap()]);
    }
}

fn readyz(h: &TestHome) -> (u16, Value) {
    let a = stigmer::http_client::get_from(
        std::net::SocketAddr::from(([127, 0, 0, 1], h.http_port)),
        "/readyz",
        Duration::from_secs(5),
    )
    .unwrap();
    (
        a.status,
        serde_json::from_str(&a.body).unwrap_or(Value::Null),
    )
}

#[test]
fn a_full_disk_makes_temporal_not_ready_without_a_restart_loop() {
    let mut h = TestHome::new();
    let disk = Tmpfs::mount(&h.dir.path().join("disk"), "16m");
    let db = disk.0.join("temporal.db");
    h.extra.extend([
        "--db-file".into(),
        db.display().to_string(),
        "--persistence-interval".into(),
        "1".into(),
    ]);
    h.start_ok();
    let pid = h.serving_pid().unwrap();
    wait_until("the first write check passed", || {
        h.status_json().1["health"]["persistence"]["ok"] == true
    });
    let fill = disk.fill();
    let mut body = Value::Null;
    wait_until("/readyz says Temporal cannot write", || {
        let (code, b) = readyz(&h);
        body = b;
        code == 503
    });
    assert_eq!(body["not_ready"], serde_json::json!(["temporal"]), "{body}");
    let why = body["reasons"]["temporal"].as_str().unwrap_or_default();
    assert!(why.starts_with("persistence:"), "{body}");
    let (code, doc) = h.status_json();
    assert_eq!(code, Some(1), "status exits as for not ready: {doc}");
    assert_eq!(doc["temporal"]["ready"], false);
    assert_eq!(doc["temporal"]["state"], "running", "gRPC still answers");
    // Several failed checks later it is still the same process: no
    // restart (a restart does not fix a full disk).
    let failures = |d: &Value| {
        d["health"]["persistence"]["consecutive_failures"]
            .as_u64()
            .unwrap_or(0)
    };
    wait_until("three write checks failed", || {
        failures(&h.status_json().1) >= 3
    });
    let (_, doc) = h.status_json();
    assert_eq!(doc["temporal"]["pid"], pid, "{doc}");
    assert_eq!(doc["restarts"]["count"], 0, "{doc}");
    std::fs::remove_file(fill).unwrap();
    wait_until("ready again once there is space", || readyz(&h).0 == 200);
    assert_eq!(h.serving_pid(), Some(pid));
    h.stop();
    h.assert_nothing_left();
    drop(disk);
}

/// A TLS-terminating gRPC proxy (Debian's nginx, `grpc_pass`) before a
/// plaintext dev server, that lets a call through only with
/// `authorization: Bearer KEY`, and answers others as gRPC
/// UNAUTHENTICATED.
struct Front {
    nginx: Child,
    temporal: Child,
    port: u16,
}

impl Front {
    fn start(dir: &Path, pki: &Pki, key: &str) -> Front {
        let upstream = free_port();
        let port = free_port();
        let temporal = Command::new(temporal_bin())
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
            .args(["--port", &upstream.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for d in ["logs", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let user = if nix::unistd::geteuid().is_root() {
            "user root;\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}worker_processes 1;\npid logs/nginx.pid;\nerror_log stderr warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log logs/access.log;\n\
               client_body_temp_path tmp/body; proxy_temp_path tmp/proxy;\n\
               fastcgi_temp_path tmp/fastcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n\
               map $http_authorization $key_ok {{ default 0; \"Bearer {key}\" 1; }}\n\
               server {{\n    listen 127.0.0.1:{port} ssl http2;\n\
                 ssl_certificate {cert}; ssl_certificate_key {skey};\n\
                 client_max_body_size 0; grpc_read_timeout 300s; grpc_send_timeout 300s;\n\
                 location / {{ if ($key_ok = 0) {{ return 401; }}\n\
                   grpc_set_header Authorization \"\"; grpc_pass grpc://127.0.0.1:{upstream}; }}\n\
                 error_page 401 = @unauthenticated;\n\
                 location @unauthenticated {{ internal; default_type application/grpc;\n\
                   add_trailer grpc-status 16 always;\n\
                   add_trailer grpc-message \"invalid or missing API key\" always; return 200; }}\n\
               }}\n}}\n",
            cert = pki.cert.display(),
            skey = pki.key.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let nginx = Command::new("/usr/sbin/nginx")
            .args([
                "-p",
                dir.to_str().unwrap(),
                "-c",
                "nginx.conf",
                "-e",
                "stderr",
            ])
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let up = std::net::SocketAddr::from(([127, 0, 0, 1], upstream));
        wait_until("the dev server behind the front serves", || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(stigmer::health::grpc_health(
                up,
                stigmer::health::TEMPORAL_SERVICE,
                Duration::from_secs(1),
            ))
            .is_ok()
        });
        wait_until("the front listens", || !port_free(port));
        Front {
            nginx,
            temporal,
            port,
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        for c in [&mut self.nginx, &mut self.temporal] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn attached_through_a_tls_front_by_a_temporal_profile() {
    let h = TestHome::new();
    let pki = Pki::new(&h.dir.path().join("pki"));
    let key = "s3cret-test-key";
    let front = Front::start(&h.dir.path().join("front"), &pki, key);
    let toml = h.dir.path().join("temporal.toml");
    std::fs::write(
        &toml,
        format!(
            "[profile.front]\naddress = '127.0.0.1:{port}'\nnamespace = 'default'\napi_key = '{key}'\n\
             [profile.front.tls]\nserver_ca_cert_path = '{ca}'\n\
             [profile.wrong]\naddress = '127.0.0.1:{port}'\napi_key = 'not-the-key'\n\
             [profile.wrong.tls]\nserver_ca_cert_path = '{ca}'\n",
            port = front.port,
            ca = pki.ca.display(),
        ),
    )
    .unwrap();
    h.write_config(&format!(
        "[temporal]\nprofile = 'front'\nhttp_addr = '127.0.0.1:{}'\n\n{}",
        h.http_port,
        worker(
            "worker",
            "q-tls",
            "{ task_queue = 'q-tls' }",
            "",
            &["temporal"]
        ),
    ));
    let cmd = |args: &[&str]| {
        let mut c = h.cmd(args);
        c.env("TEMPORAL_CONFIG_FILE", &toml)
            .env_remove("TEMPORAL_PROFILE");
        c
    };
    let out = run(cmd(&["local", "start"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, doc) = h.status_json();
    assert_eq!(code, Some(0), "{doc}");
    let t = &doc["temporal"];
    assert_eq!(t["managed"], false);
    assert_eq!(t["tls"], true);
    assert_eq!(t["credentials"], "set");
    assert_eq!(
        doc["services"]["worker"]["health"]["task_queue"]["ok"], true,
        "{doc}"
    );
    // The worker reached Temporal through the environment stigmer gave
    // it (the profile, by name); so does the CLI.
    let out = greet_on(
        &["--profile", "front"],
        &[("TEMPORAL_CONFIG_FILE", toml.to_str().unwrap())],
        "q-tls",
        "tls",
    );
    assert!(out.contains("Hello, tls!"), "{out}");
    // The key is never shown.
    let status = text(&run(cmd(&["local", "status", "--json"])));
    let shown = text(&run(cmd(&["local", "config"])));
    for (what, s) in [
        ("status", &status),
        ("config", &shown),
        ("daemon log", &h.daemon_log()),
    ] {
        assert!(!s.contains(key), "{what} shows the key: {s}");
    }
    assert_eq!(run(cmd(&["local", "stop"])).status.code(), Some(0));
    // A key the front rejects fails the start at once, with the reason.
    let t0 = std::time::Instant::now();
    let out = run(cmd(&["local", "start", "--temporal-profile", "wrong"]));
    assert_eq!(out.status.code(), Some(15), "{}", text(&out));
    assert!(
        text(&out).contains("invalid or missing API key"),
        "{}",
        text(&out)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "not after the start timeout"
    );
    // A profile that does not exist, or a key with TLS off: refused
    // before anything starts.
    for (args, want) in [
        (vec!["--temporal-profile", "nope"], "\"nope\" not found"),
        (vec!["--temporal-tls", "false"], "in the clear"),
    ] {
        let mut a = vec!["local", "start"];
        a.extend(args);
        let out = run(cmd(&a));
        assert_eq!(out.status.code(), Some(14), "{}", text(&out));
        assert!(text(&out).contains(want), "{}", text(&out));
    }
    // The front is the test's, not the instance's.
    drop(front);
    h.assert_nothing_left();
}

#[test]
fn traces_reach_an_https_receiver_with_a_test_ca() {
    let h = TestHome::new();
    let pki = Pki::new(&h.dir.path().join("pki"));
    let r = Receiver::grpc_tls(&pki.cert, &pki.key);
    let endpoint = format!("https://localhost:{}", r.port);
    let mut c = h.start_cmd(&["--otlp-endpoint", &endpoint]);
    c.env("OTEL_EXPORTER_OTLP_CERTIFICATE", &pki.ca);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    h.stop();
    wait_until("spans arrived over TLS", || {
        !r.store.named("temporal.start").is_empty()
    });
    // A CA that cannot be read is refused before anything starts.
    let mut c = h.start_cmd(&["--otlp-endpoint", &endpoint]);
    c.env(
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        h.dir.path().join("missing.pem"),
    );
    let out = run(c);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert!(text(&out).contains("missing.pem"), "{}", text(&out));
    h.assert_nothing_left();
}
