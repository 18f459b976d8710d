//! Replacing the supervisor without restarting what it supervises
//! (`stigmer local upgrade`), the way systemd's `daemon-reexec` does it:
//! the daemon serializes its state to an inherited fd and execs the new
//! binary in place, so the supervised processes stay its children.
//! (containerd's alternative, a small shim parent per process that the
//! daemon reconnects to, costs a process per service forever and gives up
//! pidfd-and-waitpid exit events on our own children; see the README.)
//!
//! Asked over its control socket, the running daemon
//! 1. opens the new binary once and refuses it unless it is a regular
//!    executable file owned by us (or root) that nobody else can write:
//!    the file checked is the file executed, through that one fd;
//! 2. freezes every unit's supervisor: the processes keep running; their
//!    state, restart history, timers and output pipes come back as
//!    [`FrozenUnit`]s (the log pumps queue what they had read, and the
//!    disk thread writes it out),
//! 3. stops serving HTTP and the control socket but keeps both listening
//!    sockets open (connections queue in the kernel meanwhile) and a
//!    second fd on the instance lock (it is never free),
//! 4. writes the [`Handover`] (configuration, PID record, those fds, the
//!    client's connection and an fd on its own executable, the frozen
//!    units, the metric values, and a fresh random nonce) to a memory
//!    file,
//! 5. runs the new binary (that fd) as a child on that exact handover
//!    first: `daemon takeover --check`, the takeover entry itself, which
//!    must parse it and answer with the nonce and the units it read.
//!    A binary that cannot, that exits, hangs, or merely prints something
//!    is refused, and this daemon continues from the same handover
//!    (nothing was restarted),
//! 6. execs that fd from its main thread, the thread every supervised
//!    process was spawned from: `execve` ends every other thread, and
//!    `PR_SET_PDEATHSIG` fires when the *spawning* thread exits, which
//!    this one never does.
//!
//! The new program (same pid, lock, listeners and children) takes over in
//! [`super::takeover`]; every failure there hands the untouched handover
//! back to the previous binary.

use super::takeover::{self, HandBack};
use super::{Daemon, control};
use crate::exit::Failure;
use crate::ipc::PROTOCOL;
use crate::ipc::upgrade::{Binary, CheckReply, Fds, Handover};
use crate::process::Spawner;
use crate::process::spawn::{ExecSpec, Program, close_on_exec, keep_across_exec};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the new binary may take to check the handover.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upgrade was refused (before anything happened, or at the
/// check); the running daemon continues either way.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The binary cannot be opened or looked at.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The binary.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not a regular executable file.
    #[error("{0} is not a regular executable file")]
    NotExecutable(String),
    /// Another user owns it.
    #[error("{path} is owned by uid {owner}, not by you (uid {me}) or root")]
    Owner {
        /// The binary.
        path: String,
        /// Its owner.
        owner: u32,
        /// Us.
        me: u32,
    },
    /// Its group or others can write it.
    #[error(
        "{path} is writable by its group or by others (mode {mode:o}); run `chmod go-w {path}`"
    )]
    Writable {
        /// The binary.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// A unit's supervisor has ended: there is nothing to freeze.
    #[error("the supervisor of {0} is not running")]
    NotSupervised(String),
    /// The handover could not be prepared or written.
    #[error("cannot prepare the handover: {0}")]
    Prepare(String),
    /// The binary could not be run for its check.
    #[error("cannot run {path}: {source}")]
    Run {
        /// The binary.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Its check did not end in time.
    #[error("{0} did not check the handover within {secs} s", secs = CHECK_TIMEOUT.as_secs())]
    CheckTimeout(String),
    /// It answered the check, but not with this handover's nonce and units.
    #[error("{0} answered the check with something other than what the handover says")]
    WrongAnswer(String),
    /// It did not answer the check.
    #[error("{path} cannot take over ({status}{said})")]
    NoAnswer {
        /// The binary.
        path: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// The last thing it said, as ": ..." (or nothing).
        said: String,
    },
}

/// Open the binary an upgrade would run, once, and refuse it unless it is
/// a regular, executable file owned by us or root that neither its group
/// nor others can write (whoever can write it could run code as us).
pub fn open_binary(path: &Path) -> Result<File, Refused> {
    let shown = path.display().to_string();
    let open = |source| Refused::Open {
        path: shown.clone(),
        source,
    };
    let file = File::open(path).map_err(open)?;
    let m = file.metadata().map_err(open)?;
    let me = nix::unistd::geteuid().as_raw();
    if !m.is_file() || m.mode() & 0o111 == 0 {
        return Err(Refused::NotExecutable(shown));
    }
    if m.uid() != me && m.uid() != 0 {
        return Err(Refused::Owner {
            path: shown,
            owner: m.uid(),
            me,
        });
    }
    if m.mode() & 0o022 != 0 {
        return Err(Refused::Writable {
            path: shown,
            mode: m.mode() & 0o7777,
        });
    }
    Ok(file)
}

/// 16 random bytes, hex.
fn nonce() -> String {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // The kernel always has entropy for 16 bytes after boot; if not,
        // the time still makes a fake answer wrong.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = t.to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
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
    let control::UpgradeRequest {
        binary: path,
        mut client,
    } = request;
    tracing::info!(binary = %path.display(), "upgrade requested");
    let prepared = match prepare(&d, &path) {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(reason = %why, "upgrade refused");
            client.answer(&crate::ipc::control::Reply::error(why.to_string()));
            return Ok(d);
        }
    };
    let logs = d.logs.clone();
    let (binary, h) = hand_over(d, prepared, client, requested_at).await?;
    // What the pumps read before they handed their pipes back is on disk
    // before another program writes these logs.
    if !logs.disk.sync(crate::disk::STALL_BOUND).await {
        tracing::warn!("the disk did not write the logs' last lines before the upgrade");
    }
    let why = match check(&binary, &path, &h).await {
        Ok(reply) => {
            tracing::info!(binary = %path.display(), version = %reply.version, "the new binary read the handover; exec");
            let argv = takeover::argv(
                path.as_os_str().as_bytes(),
                h.config.home.root().to_path_buf(),
                false,
                h.fds.previous_exe,
            );
            let program = Program::Fd(binary.into());
            exec(spawner, program, &path, &h, argv, !reply.signals_blocked).await
        }
        Err(why) => why.to_string(),
    };
    tracing::warn!(reason = %why, "upgrade refused; this daemon continues");
    let mut h = h;
    h.rollback = Some(why);
    takeover::adopt_here(h, spawner, &logs).await
}

/// What an upgrade opens before it touches anything: the new binary (once,
/// checked), this binary (to go back to), and a second fd on the lock.
struct Prepared {
    binary: File,
    previous: File,
    lock: crate::lock::InstanceLock,
}

/// Everything that can refuse an upgrade before anything is frozen.
fn prepare(d: &Daemon, path: &Path) -> Result<Prepared, Refused> {
    if let Some(u) = d.supervisor.handle.units().into_iter().find(|u| !u.alive()) {
        return Err(Refused::NotSupervised(u.name.clone()));
    }
    let binary = open_binary(path)?;
    let cannot = |e: std::io::Error| Refused::Prepare(e.to_string());
    let previous = File::open("/proc/self/exe").map_err(cannot)?;
    let lock = d.supervisor.ctx.registry.lock_clone().map_err(cannot)?;
    Ok(Prepared {
        binary,
        previous,
        lock,
    })
}

/// Freeze `d` (its processes keep running) and write down everything the
/// next daemon continues from: the handover, and the binary to check.
async fn hand_over(
    d: Daemon,
    p: Prepared,
    client: control::Client,
    requested_at: Instant,
) -> Result<(File, Handover), Failure> {
    let record = d.supervisor.ctx.registry.record();
    let temporal_pid = d
        .supervisor
        .handle
        .temporal()
        .and_then(|t| t.status.borrow().process.as_ref().map(|p| p.pid));
    let Daemon {
        info,
        plan,
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
    let info = info.get();
    let h = Handover {
        protocol: PROTOCOL,
        from: Binary::this(),
        config: info.config.clone(),
        temporal_bin: info.binary.clone(),
        started_at_unix_ms: info.started_at_unix_ms,
        policy: info.policy.clone(),
        record,
        log: crate::telemetry::settings(),
        legacy_client: client.legacy,
        fds: Fds {
            lock: p.lock.into_raw_fd(),
            http: http_socket.into_raw_fd(),
            control: control.map(IntoRawFd::into_raw_fd),
            client: OwnedFd::from(client.stream).into_raw_fd(),
            previous_exe: p.previous.into_raw_fd(),
        },
        units,
        metrics: metrics.carry(),
        requested_at,
        nonce: nonce(),
        rollback: None,
        temporal_pid,
        plan: Some(plan),
    };
    Ok((p.binary, h))
}

/// Run `binary` (the open file at `path`) on the handover as a child
/// (`daemon takeover --check`, the handover on its stdin): its version
/// when it read this very handover, else why not.
async fn check(binary: &File, path: &Path, h: &Handover) -> Result<CheckReply, Refused> {
    let json = serde_json::to_vec(h).map_err(|e| Refused::Prepare(e.to_string()))?;
    // The fd, not the path: the file checked is the file executed.
    let mut cmd = tokio::process::Command::new(format!("/proc/self/fd/{}", binary.as_raw_fd()));
    cmd.arg0(path)
        .args(["daemon", "takeover", "--check"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let shown = path.display().to_string();
    let run_failed = |source| Refused::Run {
        path: shown.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(run_failed)?;
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
        Ok(Err(e)) => return Err(run_failed(e)),
        Err(_) => return Err(Refused::CheckTimeout(shown)),
    };
    let reply = crate::ipc::decode::<CheckReply>(&out.stdout).ok();
    let want = h.check_reply();
    match reply {
        Some(r) if out.status.success() && r.nonce == want.nonce && r.units == want.units => Ok(r),
        Some(_) if out.status.success() => Err(Refused::WrongAnswer(shown)),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let said = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map_or_else(String::new, |l| format!(": {l}"));
            Err(Refused::NoAnswer {
                path: shown,
                status: out.status,
                said,
            })
        }
    }
}

/// Exec `program` (the file at `path`) on the handover `h` with `argv`
/// (whose state fd is filled in here). Returns only if the exec failed,
/// with why.
pub(super) async fn exec(
    spawner: &Spawner,
    program: Program,
    path: &Path,
    h: &Handover,
    argv: HandBack,
    unblock_signals: bool,
) -> String {
    let json = match serde_json::to_vec(h) {
        Ok(j) => j,
        Err(e) => return format!("cannot write the handover: {e}"),
    };
    let state = match takeover::memfd(&json) {
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
        argv: argv.with_state(state.as_raw_fd()),
        env: environment(),
        unblock_signals,
    };
    let err = spawner.exec(spec).await;
    for &fd in &fds {
        // SAFETY: as above.
        let _ = close_on_exec(&unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
    }
    format!("cannot exec {}: {err}", path.display())
}

/// This process's environment, for the next program.
pub(super) fn environment() -> Vec<CString> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect()
}
