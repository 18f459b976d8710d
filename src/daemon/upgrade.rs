//! Replacing the supervisor without restarting what it supervises
//! (`stigmer local upgrade`), the way systemd's `daemon-reexec` does it:
//! the daemon serializes its state to an inherited fd and execs the new
//! binary in place, so the supervised processes stay its children.
//! (containerd's alternative, a small shim parent per process that the
//! daemon reconnects to, costs a process per service forever and gives up
//! pidfd-and-waitpid exit events on our own children; see the README.)
//!
//! Asked over its control socket, the running daemon
//! 1. freezes every unit's supervisor: the processes keep running; their
//!    state, restart history, timers and output pipes come back as
//!    [`FrozenUnit`]s (the log pumps write out what they had read),
//! 2. stops serving HTTP and the control socket but keeps both listening
//!    sockets open (connections queue in the kernel meanwhile) and a
//!    second fd on the instance lock (it is never free),
//! 3. writes the [`Handover`] (configuration, PID record, those fds, the
//!    client's connection and an fd on its own executable, the frozen
//!    units, the metric values) to a memory file,
//! 4. runs the new binary as a child on that exact handover first
//!    (`local start --foreground --home HOME --takeover-check`, the exec's
//!    command line but for its last flag): a binary that cannot read it, exits or
//!    hangs is refused, and this daemon continues from the same handover
//!    (nothing was restarted),
//! 5. execs the new binary from its main thread, the thread every
//!    supervised process was spawned from: `execve` ends every other
//!    thread, and `PR_SET_PDEATHSIG` fires when the *spawning* thread
//!    exits, which this one never does.
//!
//! The new program (same pid, lock, listeners and children) adopts the
//! handover and answers the client. If it cannot, it execs the previous
//! binary (through the fd it was handed) with the same handover, which
//! continues and answers the client with the reason.

use super::{Daemon, RemovePidFile, Supervisor, control};
use crate::cli::LogFormat;
use crate::config::Config;
use crate::exit::Failure;
use crate::lock::InstanceLock;
use crate::metrics::{Carried, Metrics};
use crate::pidfile::{self, PidRecord};
use crate::process::spawn::{ExecSpec, Program, close_on_exec, keep_across_exec};
use crate::process::{Identity, Spawner};
use crate::status::DaemonInfo;
use crate::supervisor::frozen::{FrozenUnit, mono};
use crate::supervisor::policy::Policy;
use crate::supervisor::registry::SharedRegistry;
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The handover's format; a binary that speaks another is refused.
pub const PROTOCOL: u32 = 1;

/// How long the new binary may take to check the handover.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Test-only fault switch, read by the binary taking over: `exit` (it
/// exits at once when run for the handover, so the check refuses it),
/// `hang` (the check times out), `takeover` (it passes the check, then
/// fails to adopt after the exec and hands back to the previous binary).
pub const FAULT_VAR: &str = "STIGMER_UPGRADE_FAULT";

/// A program: its version and executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binary {
    /// `stigmer` version.
    pub version: String,
    /// Its executable (`/proc/self/exe`).
    pub exe: String,
}

impl Binary {
    /// This program.
    pub fn this() -> Binary {
        Binary {
            version: env!("CARGO_PKG_VERSION").into(),
            exe: std::fs::read_link("/proc/self/exe")
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }
}

/// The fds a handover carries across the exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fds {
    /// The instance lock (held).
    pub lock: RawFd,
    /// The HTTP listening socket.
    pub http: RawFd,
    /// The control listening socket, when the daemon had one.
    pub control: Option<RawFd>,
    /// The `upgrade` client's connection.
    pub client: RawFd,
    /// The previous daemon's executable, to go back to.
    pub previous_exe: RawFd,
}

impl Handover {
    /// Every fd the handover carries: [`Fds`] and each child's pipes.
    fn fds(&self) -> Vec<RawFd> {
        let f = &self.fds;
        let mut v = vec![f.lock, f.http, f.client, f.previous_exe];
        v.extend(f.control);
        for (_, unit) in &self.units {
            if let FrozenUnit::Managed(a) = unit
                && let Some(c) = &a.child
            {
                v.extend(&c.pipes);
            }
        }
        v
    }
}

/// Everything the next daemon continues from.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// [`PROTOCOL`].
    pub protocol: u32,
    /// The daemon that wrote it.
    pub from: Binary,
    /// The checked configuration.
    pub config: Config,
    /// The Temporal binary in use.
    pub temporal_bin: PathBuf,
    /// When the instance's daemon started (Unix ms).
    pub started_at_unix_ms: u64,
    /// The restart policy (its jitter seed included).
    pub policy: Policy,
    /// What the PID file says.
    pub record: PidRecord,
    /// `(verbose, format)` of the daemon's log.
    pub log: (bool, LogFormat),
    /// The fds carried across.
    pub fds: Fds,
    /// Every unit's frozen supervisor, in the stack's order.
    pub units: Vec<(String, FrozenUnit)>,
    /// Counter and histogram values.
    pub metrics: Carried,
    /// When the upgrade was asked for.
    #[serde(with = "mono")]
    pub requested_at: Instant,
    /// [`FAULT_VAR`]'s value for the binary taking over.
    pub fault: Option<String>,
    /// Set when the handover comes back after a failed takeover: why.
    pub rollback: Option<String>,
    /// The supervised processes' pids before the upgrade (for the answer).
    pub temporal_pid: Option<i32>,
}

/// The answer to a successful upgrade.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upgraded {
    /// The daemon's pid (unchanged).
    pub pid: u32,
    /// The binary before.
    pub from: Binary,
    /// The binary now.
    pub to: Binary,
    /// Request → the new daemon supervising and serving (ms).
    pub handover_ms: f64,
    /// Temporal's pid (unchanged), when one runs.
    pub temporal_pid: Option<i32>,
}

/// Carry out an upgrade request in the running daemon `d`. Returns only
/// when the new binary did not take over: the daemon then continues
/// (from the same handover) and the client hears why.
pub(super) async fn perform(
    d: Daemon,
    request: control::UpgradeRequest,
    spawner: &Spawner,
) -> Result<Daemon, Failure> {
    let requested_at = Instant::now();
    let control::UpgradeRequest { upgrade, client } = request;
    tracing::info!(binary = %upgrade.binary.display(), "upgrade requested");
    let refuse = |mut client: std::os::unix::net::UnixStream, why: String| {
        tracing::warn!(reason = %why, "upgrade refused");
        let _ = writeln!(client, "error {why}");
    };
    if let Some(u) = d.supervisor.handle.units.iter().find(|u| !u.alive()) {
        refuse(
            client,
            format!("the supervisor of {} is not running", u.name),
        );
        return Ok(d);
    }
    let opened = std::fs::File::open("/proc/self/exe").and_then(|previous| {
        let lock = d.supervisor.registry.lock_clone()?;
        Ok((previous, lock))
    });
    let (previous, lock) = match opened {
        Ok(v) => v,
        Err(e) => {
            refuse(client, format!("cannot prepare the handover: {e}"));
            return Ok(d);
        }
    };
    let record = d.supervisor.registry.record();
    let temporal_pid = d
        .supervisor
        .handle
        .temporal()
        .status
        .borrow()
        .process
        .as_ref()
        .map(|p| p.pid);
    let Daemon {
        info,
        metrics,
        supervisor,
        http,
        http_socket,
        control,
        follow,
        pid_file,
        ..
    } = d;
    let units = supervisor.freeze().await.map_err(|e| {
        Failure::Internal(format!("cannot freeze the supervisor for an upgrade: {e}"))
    })?;
    http.stop().await;
    let control = control.map(control::Serving::hand_over);
    if let Some(f) = follow {
        f.abort();
    }
    // The PID file stays: the next daemon rewrites it.
    pid_file.disarm();
    let h = Handover {
        protocol: PROTOCOL,
        from: Binary::this(),
        config: info.config.clone(),
        temporal_bin: info.binary.clone(),
        started_at_unix_ms: info.started_at_unix_ms,
        policy: info.policy.clone(),
        record,
        log: crate::telemetry::settings(),
        fds: Fds {
            lock: lock.into_raw_fd(),
            http: http_socket.into_raw_fd(),
            control: control.map(IntoRawFd::into_raw_fd),
            client: OwnedFd::from(client).into_raw_fd(),
            previous_exe: previous.into_raw_fd(),
        },
        units,
        metrics: metrics.carry(),
        requested_at,
        fault: upgrade.fault.clone(),
        rollback: None,
        temporal_pid,
    };
    drop(metrics);
    let why = match check(&upgrade.binary, &h).await {
        Ok(version) => {
            tracing::info!(binary = %upgrade.binary.display(), version = %version, "the new binary read the handover; exec");
            match CString::new(upgrade.binary.as_os_str().as_bytes()) {
                Ok(path) => exec(spawner, Program::Path(path), &upgrade.binary, &h).await,
                Err(e) => e.to_string(),
            }
        }
        Err(why) => why,
    };
    tracing::warn!(reason = %why, "upgrade refused; this daemon continues");
    let mut h = h;
    h.rollback = Some(why);
    adopt(h, spawner)
}

/// Run `binary` on the handover as a child (`local start --foreground
/// --home HOME --takeover-check`): its version when it read it, else why
/// not.
async fn check(binary: &Path, h: &Handover) -> Result<String, String> {
    let json = serde_json::to_vec(h).map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(binary);
    // The command line the exec will use, but for the last flag: the new
    // binary parses exactly what it will parse then.
    cmd.args(["local", "start", "--foreground", "--home"])
        .arg(h.config.home.root())
        .arg("--takeover-check")
        .env_remove(FAULT_VAR)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(f) = &h.fault {
        cmd.env(FAULT_VAR, f);
    }
    let shown = binary.display();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            // A binary that exits at once closes the pipe: its exit says why.
            let _ = stdin.write_all(&json).await;
        }
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(CHECK_TIMEOUT, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("{shown} failed: {e}")),
        Err(_) => {
            return Err(format!(
                "{shown} did not check the handover within {} s",
                CHECK_TIMEOUT.as_secs()
            ));
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.trim().strip_prefix("ok ") {
        Some(version) if out.status.success() => Ok(version.to_string()),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let said = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(format!(
                "{shown} cannot take over ({}{}{said})",
                out.status,
                if said.is_empty() { "" } else { ": " }
            ))
        }
    }
}

/// Exec `program` (the file at `path`) on the handover. Returns only if
/// the exec failed, with why.
async fn exec(spawner: &Spawner, program: Program, path: &Path, h: &Handover) -> String {
    let state = match write_state(h) {
        Ok(fd) => fd,
        Err(e) => return format!("cannot write the handover: {e}"),
    };
    let mut fds = h.fds();
    fds.push(state.as_raw_fd());
    for &fd in &fds {
        // SAFETY: every one of these fds is open and ours for the exec.
        let _ = keep_across_exec(&unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
    }
    let spec = ExecSpec {
        program,
        argv: argv(
            path.as_os_str().as_bytes(),
            h.config.home.root(),
            state.as_raw_fd(),
        ),
        env: environment(h.fault.as_deref()),
    };
    let err = spawner.exec(spec).await;
    for &fd in &fds {
        // SAFETY: as above (the program fd is closed by now; harmless).
        let _ = close_on_exec(&unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
    }
    format!("cannot exec {}: {err}", path.display())
}

/// The daemon's command line, as `ps` shows it: what it is (a
/// foreground daemon of HOME), and where its handover is.
fn argv(program: &[u8], home: &Path, state_fd: RawFd) -> Vec<CString> {
    let arg = |s: &[u8]| CString::new(s).unwrap_or_default();
    vec![
        arg(program),
        arg(b"local"),
        arg(b"start"),
        arg(b"--foreground"),
        arg(b"--home"),
        arg(home.as_os_str().as_bytes()),
        arg(b"--takeover-fd"),
        arg(state_fd.to_string().as_bytes()),
    ]
}

/// This process's environment for the next program, with the fault
/// switch set as asked.
fn environment(fault: Option<&str>) -> Vec<CString> {
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != FAULT_VAR)
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    if let Some(f) = fault
        && let Ok(kv) = CString::new(format!("{FAULT_VAR}={f}"))
    {
        env.push(kv);
    }
    env
}

/// The handover as JSON in a memory file, positioned at its start.
fn write_state(h: &Handover) -> std::io::Result<OwnedFd> {
    use std::io::Seek;
    let fd =
        nix::sys::memfd::memfd_create(c"stigmer-upgrade", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&serde_json::to_vec(h).map_err(std::io::Error::other)?)?;
    file.rewind()?;
    Ok(file.into())
}

/// Continue from `h` in this process: after the exec (the new binary),
/// after a hand-back (the previous one), or when the new binary was
/// refused (no exec at all). When the new binary cannot, it hands `h`
/// back to the previous one.
pub(super) async fn adopt_or_hand_back(h: Handover, spawner: &Spawner) -> Result<Daemon, Failure> {
    let refusal = if h.rollback.is_none() && h.fault.as_deref() == Some("takeover") {
        Some(format!("test fault {FAULT_VAR}=takeover"))
    } else {
        validate(&h).err()
    };
    match refusal {
        None => adopt(h, spawner),
        Some(why) if h.rollback.is_none() => Err(hand_back(h, why, spawner).await),
        // Even the previous binary cannot continue: nothing is left to try.
        Some(why) => Err(Failure::Internal(format!(
            "cannot continue after an upgrade: {why}"
        ))),
    }
}

/// Everything [`adopt`] relies on, checked before anything is taken
/// over, so a refusal leaves the handover intact for the previous binary.
fn validate(h: &Handover) -> Result<(), String> {
    if h.protocol != PROTOCOL {
        return Err(format!(
            "handover protocol {} (this binary speaks {PROTOCOL})",
            h.protocol
        ));
    }
    for fd in h.fds() {
        // SAFETY: F_GETFD only asks whether the fd is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!("fd {fd} of the handover is not open"));
        }
    }
    let lock_path = h.config.home.lock_file();
    let (Ok(held), Ok(on_disk)) = (
        nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(h.fds.lock) }),
        nix::sys::stat::stat(&lock_path),
    ) else {
        return Err(format!("cannot check the lock {}", lock_path.display()));
    };
    if (held.st_dev, held.st_ino) != (on_disk.st_dev, on_disk.st_ino) {
        return Err(format!("{} is not the lock held", lock_path.display()));
    }
    for (name, unit) in &h.units {
        if let FrozenUnit::Managed(a) = unit
            && let Some(c) = &a.child
            && let Err(e) = crate::process::identity::pidfd_open(c.identity.pid)
        {
            return Err(format!("cannot watch {name} (pid {}): {e}", c.identity.pid));
        }
    }
    Ok(())
}

/// Exec the previous binary on `h`, with why this one could not continue.
/// Returns only if that failed too.
async fn hand_back(mut h: Handover, why: String, spawner: &Spawner) -> Failure {
    tracing::error!(reason = %why, previous = %h.from.exe, "cannot take over; handing back");
    let previous = h.fds.previous_exe;
    h.rollback = Some(why.clone());
    // SAFETY: the handover's fd on the previous executable, ours alone;
    // the next program finds it at the same number.
    let program = unsafe { OwnedFd::from_raw_fd(previous) };
    let path = PathBuf::from(h.from.exe.clone());
    let err = exec(spawner, Program::Fd(program), &path, &h).await;
    Failure::Internal(format!("{why}; and the hand-back failed: {err}"))
}

/// Take `h` over: its lock, listeners and every unit's process, then
/// answer the client. Run [`validate`] first.
fn adopt(h: Handover, spawner: &Spawner) -> Result<Daemon, Failure> {
    let home = h.config.home.clone();
    // SAFETY (all from_raw_fd below): the handover's fds, each ours alone.
    let lock = unsafe { InstanceLock::from_inherited(h.fds.lock, &home.lock_file()) }?;
    let http = unsafe { std::net::TcpListener::from_raw_fd(h.fds.http) };
    close_on_exec(&http)?;
    http.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(http)?;
    let control = match h.fds.control {
        Some(fd) => {
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            close_on_exec(&fd)?;
            control::Control::adopt(fd, &home.control_socket())
        }
        None => control::Control::bind(&home.control_socket()),
    };
    let mut client = unsafe { std::os::unix::net::UnixStream::from_raw_fd(h.fds.client) };
    close_on_exec(&client)?;
    drop(unsafe { OwnedFd::from_raw_fd(h.fds.previous_exe) });
    let me = Identity::of(std::process::id() as i32)
        .ok_or_else(|| Failure::Internal("cannot read own /proc entry".into()))?;
    let record = PidRecord {
        daemon: me,
        ..h.record
    };
    pidfile::write(&home.pid_file(), &record)?;
    let pid_file = RemovePidFile(Some(home.pid_file()));
    let info = Arc::new(DaemonInfo {
        config: h.config,
        binary: h.temporal_bin,
        started_at_unix_ms: h.started_at_unix_ms,
        policy: h.policy,
    });
    let metrics =
        Arc::new(Metrics::with_carried(h.metrics).map_err(|e| Failure::Internal(e.to_string()))?);
    let supervisor = Supervisor::start(
        &info,
        SharedRegistry::new(lock, home.pid_file(), record),
        metrics.clone(),
        spawner,
        None,
        Some(h.units),
    )?;
    let daemon = Daemon::serving(info, metrics, supervisor, listener, control, pid_file)?;
    let answer = match h.rollback {
        Some(why) => format!("error {why}"),
        None => {
            let done = Upgraded {
                pid: std::process::id(),
                from: h.from,
                to: Binary::this(),
                handover_ms: h.requested_at.elapsed().as_secs_f64() * 1e3,
                temporal_pid: h.temporal_pid,
            };
            tracing::info!(from = %done.from.exe, to = %done.to.exe, handover_ms = done.handover_ms, "upgraded: supervising");
            format!("ok {}", serde_json::to_string(&done).unwrap_or_default())
        }
    };
    let _ = writeln!(client, "{answer}");
    Ok(daemon)
}

/// `stigmer local start --foreground --home HOME --takeover-check`: read
/// a handover on stdin and say whether this binary can continue from it
/// (`ok VERSION`).
pub fn check_main() -> Result<(), Failure> {
    match std::env::var(FAULT_VAR).as_deref() {
        Ok("exit") => std::process::exit(1),
        Ok("hang") => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        _ => {}
    }
    let mut json = Vec::new();
    std::io::stdin().read_to_end(&mut json)?;
    let h: Handover = serde_json::from_slice(&json)
        .map_err(|e| Failure::Internal(format!("unreadable handover: {e}")))?;
    if h.protocol != PROTOCOL {
        return Err(Failure::Internal(format!(
            "handover protocol {} (this binary speaks {PROTOCOL})",
            h.protocol
        )));
    }
    println!("ok {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}

/// `stigmer local start --foreground --takeover-fd N`: the program an
/// upgrade exec'd.
/// Continue the daemon from the handover in fd `N`.
pub fn takeover_main(state_fd: RawFd) -> Result<(), Failure> {
    // SAFETY: the exec'ing daemon gave us this fd.
    let mut file = unsafe { std::fs::File::from_raw_fd(state_fd) };
    let mut json = Vec::new();
    file.read_to_end(&mut json)?;
    drop(file);
    let h: Handover = serde_json::from_slice(&json)
        .map_err(|e| Failure::Internal(format!("unreadable handover: {e}")))?;
    let (verbose, format) = h.log;
    let otlp = crate::telemetry::Otlp::from_env(h.config.otlp_endpoint.as_deref());
    let _telemetry = crate::telemetry::init(verbose, format, true, otlp);
    tracing::info!(from = %h.from.exe, rollback = ?h.rollback, "taking over");
    super::take_over(h)
}
