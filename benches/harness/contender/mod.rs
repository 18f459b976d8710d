//! The contenders: each supervises the *same* Temporal command (same
//! binary, flags, database file and ports). The harness drives them all
//! through [`Contender`] and does every measurement itself.

mod floor;
mod runit;
mod stigmer;
mod supervisord;
mod svc;

pub use floor::Floor;
pub use runit::Runit;
pub use stigmer::Stigmer;
pub use supervisord::Supervisord;
pub use svc::{DAEMONTOOLS, S6, Svc};

use crate::harness::sys;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What every contender shares.
#[derive(Debug, Clone)]
pub struct Env {
    /// The benchmark's private temp dir (everything lives under it).
    pub root: PathBuf,
    /// The real Temporal binary (not a pyenv shim).
    pub temporal: PathBuf,
    /// Frontend gRPC port, the same for every contender.
    pub port: u16,
    /// The database file, the same for every contender.
    pub db: PathBuf,
    /// The `stigmer` binary under test.
    pub stigmer: PathBuf,
    /// stigmer's HTTP port (health, status, metrics).
    pub http_port: u16,
    /// Extra Temporal arguments (`--temporal-arg`).
    pub extra: Vec<String>,
}

impl Env {
    /// Temporal's arguments: exactly what `stigmer local` runs.
    pub fn temporal_args(&self) -> Vec<String> {
        vec![
            "server".into(),
            "start-dev".into(),
            "--ip".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.port.to_string(),
            "--db-filename".into(),
            self.db.display().to_string(),
            "--headless".into(),
        ]
        .into_iter()
        .chain(self.extra.iter().cloned())
        .collect()
    }

    /// The extra Temporal arguments as stigmer's own options (the ones it
    /// has: `--sqlite-pragma`, `--log-level`).
    pub fn extra_as_stigmer_options(&self) -> Vec<String> {
        self.extra
            .iter()
            .filter_map(|a| {
                let (k, v) = a.split_once('=')?;
                let ours = match k {
                    "--sqlite-pragma" => "--sqlite-pragma",
                    "--log-level" => "--temporal-log-level",
                    _ => return None,
                };
                Some([ours.to_string(), v.to_string()])
            })
            .flatten()
            .collect()
    }

    /// The whole Temporal command line, for configs and the report.
    pub fn temporal_command_line(&self) -> String {
        let mut v = vec![self.temporal.display().to_string()];
        v.extend(self.temporal_args());
        v.join(" ")
    }

    /// Delete the database (and SQLite side files): fresh state.
    pub fn wipe_db(&self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            sys::remove(Path::new(&format!("{}{suffix}", self.db.display())));
        }
    }

    /// A per-contender directory under the root (created).
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        fs::create_dir_all(&d).expect("create contender dir");
        d
    }

    /// A `run` script for runit/s6: exec Temporal, output to `log`.
    pub fn run_script(&self, log: &Path) -> String {
        format!(
            "#!/bin/sh\nexec {} >>{} 2>&1\n",
            self.temporal_command_line(),
            log.display()
        )
    }
}

/// One way of keeping Temporal serving.
pub trait Contender {
    /// Short name used in flags and tables.
    fn name(&self) -> &'static str;

    /// Human description (version, configuration) for the report.
    fn describe(&self) -> String;

    /// Is a supervisor involved (false only for the floor)?
    fn supervised(&self) -> bool {
        true
    }

    /// Start from fresh supervisor state, not waiting for Temporal.
    fn launch(&mut self) -> Result<(), String>;

    /// After [`launch`](Contender::launch): how long the launch command
    /// itself took to return, for contenders whose command waits for
    /// readiness (ours). `None` for the others.
    fn finish_launch(&mut self) -> Result<Option<Duration>, String> {
        Ok(None)
    }

    /// The process currently run for the service, as the supervisor sees
    /// it (alive, not a zombie); may briefly be a `sh run` wrapper.
    fn current_child(&self) -> Option<i32>;

    /// The child as the contender's own state records it (ours: the PID
    /// file), when it records one the harness can read cheaply.
    fn recorded_child(&self) -> Option<i32> {
        None
    }

    /// Does [`recorded_child`](Contender::recorded_child) exist here?
    fn records_child(&self) -> bool {
        false
    }

    /// Called right after the harness SIGKILLs the child (the floor uses
    /// it to reap and respawn by hand).
    fn after_kill(&mut self, _old: i32) -> Result<(), String> {
        Ok(())
    }

    /// The command that (re)starts the service, run while it serves.
    fn start_cmd(&self) -> Option<Command>;

    /// The command that reports status.
    fn status_cmd(&self) -> Option<Command>;

    /// Issue the stop (the harness then waits for the process and port).
    fn stop(&mut self) -> Result<(), String>;

    /// Extra readiness condition before the next cycle (ours: no pending
    /// backoff).
    fn settled(&self) -> bool {
        true
    }

    /// The supervisor's own processes (for RSS and CPU).
    fn supervisor_pids(&self) -> Vec<i32>;

    /// Stop everything (supervisor and Temporal).
    fn teardown(&mut self);
}

/// The newest live child of `sup` (children of a supervisor that is not
/// running anything else are the service).
pub fn live_child(sup: Option<i32>) -> Option<i32> {
    let sup = sup?;
    sys::children(sup)
        .into_iter()
        .filter(|&p| sys::alive(p))
        .max_by_key(|&p| sys::stat(p).map(|s| s.start_time).unwrap_or(0))
}

/// A command with output to `log` (appended).
pub fn logged(program: &Path, log: &Path) -> Command {
    let mut c = Command::new(program);
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    let err = out.try_clone().expect("dup log");
    c.stdin(Stdio::null()).stdout(out).stderr(err);
    c
}

/// A quiet command (output discarded).
pub fn quiet(program: &Path) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// First line of `program --version` (or `-V`), for the report.
pub fn version_of(program: &Path, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

/// Debian package version of `pkg` (`dpkg-query`), or "".
pub fn deb_version(pkg: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Wait up to `d` for `pid` to exit (it is our child: reaping is the
/// caller's business; a zombie counts as exited).
pub fn wait_exit(pid: i32, d: Duration) -> bool {
    let deadline = std::time::Instant::now() + d;
    while std::time::Instant::now() < deadline {
        if !sys::alive(pid) {
            return true;
        }
        sys::sleep(Duration::from_millis(10));
    }
    false
}

/// One service directory under a daemontools-style supervisor (`runsv`,
/// `s6-supervise`): a `run` script that execs the Temporal command, and
/// the supervisor as our child in its own process group.
pub struct ServiceDir {
    env: Env,
    /// The service directory (`<contender>/temporal`).
    pub svc: PathBuf,
    child: Option<Child>,
}

impl ServiceDir {
    /// Under the benchmark dir of contender `name`; nothing created yet.
    pub fn new(env: &Env, name: &str) -> Self {
        ServiceDir {
            env: env.clone(),
            svc: env.dir(name).join("temporal"),
            child: None,
        }
    }

    /// The supervisor's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// A fresh service directory, with `supervisor` started on it (its own
    /// output to `<supervisor name>.log` beside the service).
    pub fn launch(&mut self, supervisor: &Path) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let _ = fs::remove_dir_all(&self.svc);
        fs::create_dir_all(&self.svc).map_err(|e| e.to_string())?;
        let dir = self.svc.parent().expect("service dir has a parent");
        let run = self.svc.join("run");
        fs::write(&run, self.env.run_script(&dir.join("temporal.log")))
            .map_err(|e| format!("write {}: {e}", run.display()))?;
        fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let name = supervisor.file_name().unwrap_or_default().to_string_lossy();
        let mut c = logged(supervisor, &dir.join(format!("{name}.log")));
        c.arg(&self.svc).process_group(0);
        self.child = Some(c.spawn().map_err(|e| format!("spawn {name}: {e}"))?);
        Ok(())
    }

    /// Ask the supervisor to stop the service and exit (`exit`: `sv exit`,
    /// `s6-svc -dx`), SIGKILL it if it has not within 15 s, and reap it.
    pub fn teardown(&mut self, exit: Command) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            let _ = sys::run_timed(exit, Duration::from_secs(10));
            if !wait_exit(pid, Duration::from_secs(15)) {
                sys::signal(pid, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}
