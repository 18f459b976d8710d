//! The new binary's side of an upgrade (see [`super::upgrade`]): check a
//! handover (`daemon takeover --check`), and continue the daemon from it
//! after the exec (`daemon takeover --state-fd N --previous-fd M`).
//!
//! **Every failure hands back.** The takeover reads the handover, checks
//! it, and adopts *duplicates* of its fds: the originals (the lock, the
//! listeners, the client, the children's pipes, the previous executable)
//! stay open and untouched until the new daemon supervises. Until then,
//! any error or panic execs the previous binary (through the fd it was
//! handed, from the main thread, which spawned every child) on the
//! handover as it came, with the reason: that binary continues and tells
//! the client. Only a crash of the new image before its first instruction
//! of this code (its loader, a broken binary) remains: the check ran this
//! very code on this very handover first, so that window is as small as
//! it can be.
//!
//! Handovers of 0.1.0 (protocol 1: `local start --takeover-check` and
//! `--takeover-fd N`) are taken over the same way; those go back to a
//! 0.1.0 binary with its own command line.

use super::upgrade;
use super::{Daemon, RemovePidFile, Supervisor, control};
use crate::exit::Failure;
use crate::ipc::PROTOCOL;
use crate::ipc::control::Reply;
use crate::ipc::upgrade::{Binary, Handover, Upgraded};
use crate::lock::InstanceLock;
use crate::logfile::Logs;
use crate::metrics::Metrics;
use crate::process::spawn::{ExecSpec, Program, close_on_exec, dup_cloexec, keep_across_exec};
use crate::process::{Identity, Spawner};
use crate::status::DaemonInfo;
use crate::supervisor::Context;
use crate::supervisor::frozen::FrozenUnit;
use crate::supervisor::registry::SharedRegistry;
use std::ffi::{CString, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How this binary was run for an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `daemon takeover --check`: read a handover on stdin, answer.
    Check,
    /// `daemon takeover --state-fd N --previous-fd M [--rollback WHY]`.
    Takeover {
        /// The memory file holding the handover.
        state_fd: RawFd,
        /// The previous binary, to hand back to.
        previous_fd: RawFd,
        /// Set when this binary gets its own handover back: why.
        rollback: Option<String>,
    },
    /// 0.1.0's `local start ... --takeover-check`.
    LegacyCheck,
    /// 0.1.0's `local start ... --takeover-fd N`.
    LegacyTakeover {
        /// The memory file holding the handover.
        state_fd: RawFd,
    },
}

/// The upgrade entry `args` (the whole command line) asks for, if any.
/// Parsed by hand, before any other argument parsing: the takeover path
/// runs as little code as possible before it can hand back.
pub fn entry(args: &[OsString]) -> Option<Entry> {
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    let value = |flag: &[u8]| {
        a.iter()
            .position(|x| *x == flag)
            .and_then(|i| a.get(i + 1))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let fd = |flag: &[u8]| value(flag).and_then(|v| v.parse::<RawFd>().ok());
    match a.get(1..3) {
        Some([b"daemon", b"takeover"]) => {
            if a.contains(&&b"--check"[..]) {
                return Some(Entry::Check);
            }
            Some(Entry::Takeover {
                state_fd: fd(b"--state-fd")?,
                previous_fd: fd(b"--previous-fd")?,
                rollback: value(b"--rollback"),
            })
        }
        Some([b"local", b"start"]) if a.contains(&&b"--takeover-check"[..]) => {
            Some(Entry::LegacyCheck)
        }
        Some([b"local", b"start"]) => Some(Entry::LegacyTakeover {
            state_fd: fd(b"--takeover-fd")?,
        }),
        _ => None,
    }
}

/// Whether the daemon's signals were blocked when this binary was exec'd:
/// the previous binary blocks them too, and can be handed back to with
/// them blocked. Unset: not a takeover.
static PREVIOUS_BLOCKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Why a takeover (or its check, or its hand-back) did not go through.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    /// The handover could not be read.
    #[error("cannot read the handover: {0}")]
    Read(#[from] std::io::Error),
    /// It is not a handover.
    #[error("unreadable handover: {0}")]
    Unreadable(#[from] serde_json::Error),
    /// A handover of a protocol this binary does not speak.
    #[error("handover protocol {0} (this binary speaks {PROTOCOL} and 1)")]
    Protocol(u32),
    /// One of its fds did not survive the exec.
    #[error("fd {0} of the handover is not open")]
    FdClosed(RawFd),
    /// Its lock fd is not the instance's lock file.
    #[error("{0} is not the lock held")]
    NotTheLock(PathBuf),
    /// A unit's process cannot be watched.
    #[error("cannot watch {unit} (pid {pid}): {source}")]
    Watch {
        /// The unit.
        unit: String,
        /// Its pid.
        pid: i32,
        /// Why.
        source: std::io::Error,
    },
    /// The daemon could not take over (or panicked while it did).
    #[error("{0}")]
    Adopt(String),
    /// Even the previous binary cannot continue from it.
    #[error("cannot continue after an upgrade: {0}")]
    Returned(Box<TakeoverError>),
    /// The handover names no binary to go back to.
    #[error("the handover names no previous binary")]
    NoPrevious,
    /// Going back failed too.
    #[error("{why}; and the hand-back failed: cannot exec the previous binary {exe}: {source}")]
    HandBack {
        /// Why this binary could not take over.
        why: String,
        /// The previous binary.
        exe: String,
        /// Why it could not be exec'd.
        source: std::io::Error,
    },
}

/// Run the upgrade entry `e`. Returns the process's exit code once the
/// daemon it continued has stopped (or a check is done); a takeover that
/// cannot continue does not return: it hands back.
pub fn main(e: Entry) -> u8 {
    // First of all: the daemon's signals stay blocked (pending, not
    // lost) until this daemon reads them, as they were across the exec
    // when the previous binary blocked them too.
    if matches!(e, Entry::Takeover { .. } | Entry::LegacyTakeover { .. }) {
        let inherited = crate::process::signals::block().unwrap_or(false);
        let _ = PREVIOUS_BLOCKED.set(inherited);
    }
    let result = match e {
        Entry::Check => check(false),
        Entry::LegacyCheck => check(true),
        Entry::Takeover {
            state_fd,
            previous_fd,
            rollback,
        } => take_over(state_fd, Some(previous_fd), rollback),
        Entry::LegacyTakeover { state_fd } => take_over(state_fd, None, None),
    };
    match result {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("error: {why}");
            crate::model::Code::UpgradeFailed as u8
        }
    }
}

/// The takeover fault a test build names, if any (see [`crate::faults`]).
fn fault() -> Option<String> {
    crate::faults::named().into_iter().next()
}

/// Test builds only (`takeover-pause`): wait, right after the exec and
/// before anything is adopted, until the test lets go (a file `EXE.go`),
/// having said so (`EXE.paused`): the window in which signals to the
/// daemon must wait, not kill it.
#[cfg(feature = "test-faults")]
fn pause() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let with = |ext: &str| {
        let mut p = exe.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    let _ = std::fs::write(with(".paused"), std::process::id().to_string());
    while !with(".go").exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Read a handover on stdin and answer whether (and how) this binary
/// reads it: protocol 2, a [`upgrade::CheckReply`] line; 0.1.0's
/// protocol, `ok VERSION`.
fn check(legacy: bool) -> Result<(), TakeoverError> {
    match fault().as_deref() {
        Some("check-exit") => std::process::exit(1),
        Some("check-hang") => loop {
            std::thread::park();
        },
        _ => {}
    }
    let mut json = Vec::new();
    std::io::stdin().read_to_end(&mut json)?;
    let h = parse(&json)?;
    let mut out = std::io::stdout().lock();
    let line = if legacy {
        format!("ok {}", env!("CARGO_PKG_VERSION"))
    } else {
        let mut reply = h.check_reply();
        if fault().as_deref() == Some("check-lie") {
            reply.nonce = "0".repeat(32);
        }
        String::from_utf8_lossy(&crate::ipc::encode(&reply))
            .trim_end()
            .to_string()
    };
    Ok(writeln!(out, "{line}")?)
}

/// A handover this binary can continue from.
fn parse(json: &[u8]) -> Result<Handover, TakeoverError> {
    let h: Handover = serde_json::from_slice(json)?;
    if h.protocol != PROTOCOL && h.protocol != 1 {
        return Err(TakeoverError::Protocol(h.protocol));
    }
    Ok(h)
}

/// Continue the daemon from the handover in `state_fd`; on any failure
/// before it supervises, hand back to the previous binary.
fn take_over(
    state_fd: RawFd,
    previous_fd: Option<RawFd>,
    rollback: Option<String>,
) -> Result<(), TakeoverError> {
    // SAFETY: the exec'ing daemon gave us this fd, and nothing else owns it.
    let mut file = unsafe { std::fs::File::from_raw_fd(state_fd) };
    let mut raw = Vec::new();
    let read = file.read_to_end(&mut raw);
    drop(file);
    let back = |why: TakeoverError, raw: &[u8]| hand_back(raw, previous_fd, &why.to_string());
    if let Err(e) = read {
        return Err(back(e.into(), &raw));
    }
    let mut h = match parse(&raw) {
        Ok(h) => h,
        Err(why) => return Err(back(why, &raw)),
    };
    if rollback.is_some() {
        h.rollback = rollback;
    }
    let returned = h.rollback.is_some();
    if let Err(why) = validate(&h) {
        return Err(if returned {
            TakeoverError::Returned(Box::new(why))
        } else {
            back(why, &raw)
        });
    }
    let (verbose, format) = h.log;
    let otlp = crate::telemetry::otlp_from_env(h.config.otlp_endpoint.as_deref());
    let daemon_log = h.config.home.daemon_log();
    let telemetry = crate::telemetry::init(verbose, format, true, Some(&daemon_log), otlp);
    tracing::info!(from = %h.from.exe, rollback = ?h.rollback, "taking over");
    let serving = Arc::new(AtomicBool::new(false));
    let flag = serving.clone();
    #[cfg(feature = "test-faults")]
    if !returned && crate::faults::active("takeover-pause") {
        pause();
    }
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        if !returned && fault().as_deref() == Some("takeover") {
            return Err(Failure::Internal("test fault: takeover".into()));
        }
        if !returned && fault().as_deref() == Some("takeover-panic") {
            panic!("test fault: takeover-panic");
        }
        super::take_over(h, flag)
    }));
    let why = TakeoverError::Adopt(match run {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(f)) => f.to_string(),
        Err(_) => "the new daemon panicked while taking over".to_string(),
    });
    if serving.load(Ordering::Acquire) || returned {
        // Past the point of no return (or there is nothing to go back to).
        return Err(why);
    }
    tracing::error!(reason = %why, "cannot take over; handing back");
    drop(telemetry);
    Err(back(why, &raw))
}

/// Everything adoption relies on, checked before anything is taken
/// over, so a refusal leaves the handover intact for the previous binary.
fn validate(h: &Handover) -> Result<(), TakeoverError> {
    for fd in h.fds() {
        // SAFETY: F_GETFD only asks whether the fd is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(TakeoverError::FdClosed(fd));
        }
    }
    let lock_path = h.config.home.lock_file();
    // SAFETY: an fd of the handover, just checked to be open; only fstat.
    let held = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(h.fds.lock) });
    let (Ok(held), Ok(on_disk)) = (held, nix::sys::stat::stat(&lock_path)) else {
        return Err(TakeoverError::NotTheLock(lock_path));
    };
    if (held.st_dev, held.st_ino) != (on_disk.st_dev, on_disk.st_ino) {
        return Err(TakeoverError::NotTheLock(lock_path));
    }
    for (name, unit) in &h.units {
        if let FrozenUnit::Managed(a) = unit
            && let Some(c) = &a.child
            && let Err(e) = crate::process::identity::pidfd_open(c.identity.pid)
        {
            return Err(TakeoverError::Watch {
                unit: name.clone(),
                pid: c.identity.pid,
                source: e,
            });
        }
    }
    Ok(())
}

/// A takeover's command line, but for its state fd (known once the
/// memory file exists).
pub struct HandBack {
    program: Vec<u8>,
    /// The state directory (`ps` shows whose daemon this is).
    home: PathBuf,
    /// 0.1.0's command line.
    legacy: bool,
    previous_fd: RawFd,
    rollback: Option<String>,
}

/// The command line that continues a daemon from a handover: this
/// protocol's, or (with `legacy_home`) 0.1.0's.
pub fn argv(program: &[u8], home: PathBuf, legacy: bool, previous_fd: RawFd) -> HandBack {
    HandBack {
        program: program.to_vec(),
        home,
        legacy,
        previous_fd,
        rollback: None,
    }
}

impl HandBack {
    /// The argv, with the handover in `state_fd`.
    pub fn with_state(&self, state_fd: RawFd) -> Vec<CString> {
        let arg = |s: &[u8]| CString::new(s).unwrap_or_default();
        let mut v = vec![arg(&self.program)];
        let home = arg(self.home.as_os_str().as_bytes());
        match self.legacy {
            true => {
                for a in ["local", "start", "--foreground", "--home"] {
                    v.push(arg(a.as_bytes()));
                }
                v.push(home);
                v.push(arg(b"--takeover-fd"));
                v.push(arg(state_fd.to_string().as_bytes()));
            }
            false => {
                for a in ["daemon", "takeover", "--home"] {
                    v.push(arg(a.as_bytes()));
                }
                v.push(home);
                v.push(arg(b"--state-fd"));
                v.push(arg(state_fd.to_string().as_bytes()));
                v.push(arg(b"--previous-fd"));
                v.push(arg(self.previous_fd.to_string().as_bytes()));
                if let Some(why) = &self.rollback {
                    v.push(arg(b"--rollback"));
                    v.push(arg(why.as_bytes()));
                }
            }
        }
        v
    }
}

/// `bytes` in a memory file that survives an exec, positioned at its
/// start.
pub fn memfd(bytes: &[u8]) -> std::io::Result<OwnedFd> {
    use std::io::Seek;
    let fd =
        nix::sys::memfd::memfd_create(c"stigmer-upgrade", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file.into())
}

/// Exec the previous binary on the handover `raw` (as it came, with
/// `why` as its rollback), from this thread (the main thread: the one
/// that spawned every child). Returns only if that failed.
fn hand_back(raw: &[u8], previous_fd: Option<RawFd>, why: &str) -> TakeoverError {
    match try_hand_back(raw, previous_fd, why) {
        Ok(never) => match never {},
        Err(e @ TakeoverError::HandBack { .. }) => e,
        Err(e) => TakeoverError::Adopt(format!("{why}; and the hand-back failed: {e}")),
    }
}

fn try_hand_back(
    raw: &[u8],
    previous_fd: Option<RawFd>,
    why: &str,
) -> Result<std::convert::Infallible, TakeoverError> {
    // The handover as it came, but for the reason: the previous binary
    // reads its own format, whatever this one understood of it.
    let mut doc: serde_json::Value = serde_json::from_slice(raw)?;
    doc["rollback"] = serde_json::Value::String(why.to_string());
    let protocol = doc["protocol"].as_u64().unwrap_or(0);
    let from_fds = doc["fds"]["previous_exe"].as_i64().map(|n| n as RawFd);
    let previous = previous_fd.or(from_fds).ok_or(TakeoverError::NoPrevious)?;
    let exe = doc["from"]["exe"].as_str().unwrap_or("stigmer").to_string();
    let home = PathBuf::from(doc["config"]["home"].as_str().unwrap_or_default());
    let json = serde_json::to_vec(&doc)?;
    let state = memfd(&json)?;
    keep_across_exec(&state)?;
    let mut argv = argv(exe.as_bytes(), home, protocol == 1, previous);
    argv.rollback = Some(why.to_string());
    // SAFETY: the handover's fd on the previous executable; it stays
    // open (not close-on-exec) for the program it runs.
    let program = unsafe { OwnedFd::from_raw_fd(previous) };
    let err = crate::process::spawn::exec_now(&ExecSpec {
        program: Program::Fd(program),
        argv: argv.with_state(state.as_raw_fd()),
        env: upgrade::environment(),
        // An older binary takes them with handlers, set up after the exec.
        unblock_signals: !PREVIOUS_BLOCKED.get().copied().unwrap_or(false),
    });
    Err(TakeoverError::HandBack {
        why: why.to_string(),
        exe,
        source: err,
    })
}

/// Take `h` over in this process: its lock, listeners and every unit's
/// process (through duplicates of its fds), then answer the client. When
/// adoption has got far enough that the processes are supervised again,
/// `serving` is set: from there on, the handover's own fds are closed.
pub(super) async fn adopt(
    h: Handover,
    spawner: &Spawner,
    logs: &Logs,
    serving: &AtomicBool,
) -> Result<Daemon, Failure> {
    let home = h.config.home.clone();
    let lock = InstanceLock::adopt(dup_cloexec(h.fds.lock)?, &home.lock_file())?;
    let http = std::net::TcpListener::from(dup_cloexec(h.fds.http)?);
    http.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(http)?;
    let control = match h.fds.control {
        Some(fd) => control::Control::adopt(dup_cloexec(fd)?, &home.control_socket()),
        None => control::Control::bind(&home.control_socket()),
    };
    let mut client = control::Client {
        stream: std::os::unix::net::UnixStream::from(dup_cloexec(h.fds.client)?),
        legacy: h.legacy_client || h.protocol == 1,
    };
    let me = Identity::of(std::process::id() as i32)
        .ok_or_else(|| Failure::Internal("cannot read own /proc entry".into()))?;
    let record = crate::pidfile::PidRecord {
        daemon: me,
        boot_id: crate::process::proc::boot_id(),
        ..h.record.clone()
    };
    let info = Arc::new(DaemonInfo {
        config: h.config.clone(),
        binary: h.temporal_bin.clone(),
        started_at_unix_ms: h.started_at_unix_ms,
        policy: h.policy.clone(),
    });
    let metrics = Arc::new(
        Metrics::with_carried(h.metrics.clone()).map_err(|e| Failure::Internal(e.to_string()))?,
    );
    // A PID file that cannot be written now (a full disk) is retried by
    // the disk thread; it never ends the daemon.
    let ctx = Context {
        registry: SharedRegistry::new(lock, home.pid_file(), record, logs.disk.clone(), true),
        spawner: spawner.clone(),
        logs: logs.clone(),
        heartbeat: Default::default(),
    };
    let originals = h.fds();
    let plan = match h.plan {
        Some(plan) => plan,
        None => crate::plan::Plan::of(
            &info.config,
            &info.binary,
            &info.policy,
            &crate::plan::inherited_names(),
        ),
    };
    let supervisor = Supervisor::start(ctx, metrics, None, &plan, Some(h.units)).await?;
    // The point of no return: the processes are supervised from here.
    serving.store(true, Ordering::Release);
    for fd in originals {
        // SAFETY: the handover's own fds, each duplicated above (or, for
        // the previous executable, no longer needed); closing them keeps
        // them from every later child.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let pid_file = RemovePidFile(Some(home.pid_file()));
    let daemon = Daemon::serving(info, plan, supervisor, listener, control, pid_file, logs)?;
    let answer = match h.rollback {
        Some(why) => Reply::error(why),
        None => {
            let done = Upgraded {
                pid: std::process::id(),
                from: h.from,
                to: Binary::this(),
                handover_ms: h.requested_at.elapsed().as_secs_f64() * 1e3,
                temporal_pid: h.temporal_pid,
            };
            tracing::info!(from = %done.from.exe, to = %done.to.exe, handover_ms = done.handover_ms, "upgraded: supervising");
            Reply::Upgraded(done)
        }
    };
    client.answer(&answer);
    Ok(daemon)
}

/// Continue from `h` in this process without an exec: the previous
/// daemon, when the new binary was refused or could not be exec'd.
pub(super) async fn adopt_here(
    h: Handover,
    spawner: &Spawner,
    logs: &Logs,
) -> Result<Daemon, Failure> {
    for fd in h.fds() {
        // SAFETY: the handover's fds are open and ours; back to
        // close-on-exec (the exec that would have kept them did not run).
        let _ = close_on_exec(&unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
    }
    adopt(h, spawner, logs, &AtomicBool::new(false)).await
}
