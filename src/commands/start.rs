//! `stigmer local [start]`: idempotent. Running and healthy → say so, exit
//! 0 at once. Starting → wait for ready. Nothing running → take the lock,
//! launch a detached daemon that inherits the *held* lock, and wait for
//! its one-line startup report.

use super::progress::Progress;
use super::{Check, Found, discover, fetch_status};
use crate::cli::StartArgs;
use crate::config::Config;
use crate::exit::Failure;
use crate::ipc::report::Report;
use crate::lock::{InstanceLock, TryLock};
use crate::logfile;
use crate::model::Code;
use crate::status::{StatusDoc, human_secs};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// What a start comes to.
pub enum Started {
    /// Done: the instance serves (launched now or found), or the command
    /// failed.
    Done(Code),
    /// `--foreground` and the lock is ours: run the daemon in this process
    /// (the caller does; this module stays the CLI's).
    Foreground(Box<Config>, std::path::PathBuf, InstanceLock),
}

/// Run `start` with `cfg` (see [`super::load_config`]).
pub fn run(args: &StartArgs, cfg: Config) -> Result<Started, Failure> {
    launch_or_wait(args, cfg)
}

fn launch_or_wait(args: &StartArgs, cfg: Config) -> Result<Started, Failure> {
    // The programs are looked up only when this start launches something
    // (that can take a `pyenv which`): a start that finds the instance
    // running answers without them.
    let programs = || -> Result<std::path::PathBuf, Failure> {
        let bin = cfg.resolve_temporal_bin()?;
        if let Some(missing) = cfg.missing_programs().into_iter().next() {
            return Err(crate::config::BinaryError::Service(missing).into());
        }
        Ok(bin)
    };
    cfg.home.ensure()?;
    // Each service's log is written by the daemon: never through a link.
    for s in &cfg.services {
        crate::paths::refuse_symlink(&cfg.home.unit_log(&s.name))?;
    }
    let deadline = Instant::now() + cfg.timeout;
    let mut progress = Progress::new(&cfg.home);
    loop {
        match InstanceLock::try_acquire(&cfg.home.lock_file())? {
            TryLock::Acquired(lock) if args.foreground => {
                let bin = programs()?;
                return Ok(Started::Foreground(Box::new(cfg), bin, lock));
            }
            TryLock::Acquired(lock) if daemon_elsewhere(&cfg) => {
                // The lock file was deleted or replaced under a live daemon
                // (it re-creates it within a health interval): that daemon
                // is the instance, so behave as if the lock were busy.
                drop(lock);
                tracing::warn!(
                    "the lock file was replaced while a daemon runs; deferring to that daemon"
                );
                if let Some(doc) = ready_instance(&cfg)? {
                    progress.clear();
                    print_ready(&doc, true);
                    return Ok(Started::Done(Code::Ok));
                }
                if Instant::now() >= deadline {
                    return Err(Failure::StartTimeout {
                        secs: cfg.timeout.as_secs_f64(),
                        reason: "the running instance did not become ready".into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            TryLock::Acquired(lock) => match launch(&cfg, &programs()?, lock, deadline)? {
                Some(code) => return Ok(Started::Done(code)),
                // A concurrent `stop` stopped the daemon we launched: this
                // start comes after that stop, so start again.
                None if Instant::now() < deadline => {
                    eprintln!("note: a concurrent stop ended the starting daemon; starting again");
                }
                None => {
                    return Err(Failure::StartTimeout {
                        secs: cfg.timeout.as_secs_f64(),
                        reason: "a concurrent stop ended the starting daemon".into(),
                    });
                }
            },
            TryLock::Busy => {
                if let Some(doc) = ready_instance(&cfg)? {
                    progress.clear();
                    print_ready(&doc, true);
                    return Ok(Started::Done(Code::Ok));
                }
                if Instant::now() >= deadline {
                    progress.clear();
                    return Err(Failure::StartTimeout {
                        secs: cfg.timeout.as_secs_f64(),
                        reason: "the running instance did not become ready".into(),
                    });
                }
                progress.tick();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The common idempotent start: the instance runs and serves. Asked of
/// the daemon's socket before anything else (no logging set up, no state
/// directory checks, no lock), since its answer is the whole command; any
/// other case (nothing answers, or not ready yet) goes the full way.
pub fn already_serving(cfg: &Config) -> Option<Code> {
    let doc = super::daemon_answer(&cfg.home, Check::Live)?;
    doc.is_ready().then(|| {
        print_ready(&doc, true);
        Code::Ok
    })
}

/// Does the PID file name a live, verified daemon other than us?
fn daemon_elsewhere(cfg: &Config) -> bool {
    matches!(crate::pidfile::read(&cfg.home.pid_file()), crate::pidfile::PidFile::Record(r)
        if r.daemon.verify() == crate::process::Verdict::Match)
}

/// Is the instance holding the lock serving right now? Both the daemon's
/// view and a gRPC health check made for this request must agree.
fn ready_instance(cfg: &Config) -> Result<Option<StatusDoc>, Failure> {
    let Ok(doc) = fetch_status(&cfg.home, Check::Live) else {
        return Ok(None);
    };
    Ok(doc.is_ready().then_some(doc))
}

fn print_ready(doc: &StatusDoc, already: bool) {
    use std::fmt::Write as _;
    let t = &doc.temporal;
    let unit = doc.temporal_unit().map(|u| &u.status);
    let pid = unit
        .and_then(|u| u.pid)
        .map_or_else(|| "?".into(), |p| p.to_string());
    // One write to stdout, not one per line.
    let mut out = String::new();
    if !t.managed {
        let again = if already { "already " } else { "" };
        let _ = writeln!(
            out,
            "Attached {again}to the external Temporal at {} (not run or stopped by stigmer).",
            t.frontend
        );
    } else if already {
        let _ = writeln!(
            out,
            "Temporal is already running (pid {pid}, up {}).",
            human_secs(unit.and_then(|u| u.uptime_seconds).unwrap_or(0.0))
        );
    } else {
        let _ = writeln!(out, "Temporal is running (pid {pid}).");
    }
    let _ = writeln!(out, "  address: {}", t.frontend);
    if let Some(ui) = &t.ui_url {
        let _ = writeln!(out, "  web UI:  {ui}");
    }
    let _ = writeln!(
        out,
        "  health:  http://{}/healthz",
        doc.supervisor.http_addr
    );
    for svc in doc.services() {
        let pid = svc.status.pid.map_or_else(|| "-".into(), |p| p.to_string());
        let _ = writeln!(
            out,
            "  service: {} ({}, pid {pid})",
            svc.name,
            svc.status.state.as_str()
        );
    }
    if let Some(note) = doc.supervisor.other_binary_note() {
        let _ = writeln!(out, "{note}");
    }
    print!("{out}");
}

/// Launch the detached daemon, handing it the held lock, and wait for its
/// startup report.
fn launch(
    cfg: &Config,
    bin: &Path,
    lock: InstanceLock,
    deadline: Instant,
) -> Result<Option<Code>, Failure> {
    let (report_rx, report_tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    let mut child = spawn_daemon(cfg, bin, &lock, &report_tx)?;
    // The daemon holds both now; our copies must go so EOF means "daemon gone".
    drop(report_tx);
    drop(lock);
    let mut progress = Progress::new(&cfg.home);
    let heard = read_report(report_rx, deadline, &mut progress);
    progress.finish();
    match heard {
        Heard::Report(Report::Ready { .. }) => {
            match cfg_status(cfg) {
                Some(doc) => print_ready(&doc, false),
                None => println!("Temporal is running at {}.", cfg.frontend()),
            }
            Ok(Some(Code::Ok))
        }
        Heard::Report(Report::Failed { code, message }) => {
            show_log_tail(cfg);
            stop_child(&mut child, cfg.stop_grace);
            Err(relay(code, message))
        }
        Heard::Report(Report::Note { .. }) | Heard::Eof => {
            let status = child.wait().ok();
            // Stopped on request (clean exit, or SIGTERM before its handler
            // was installed): not a failure of this start.
            if status.is_some_and(|s| s.success() || s.signal() == Some(libc::SIGTERM)) {
                return Ok(None);
            }
            show_log_tail(cfg);
            let daemon_log = logfile::tail(&cfg.home.daemon_log(), 5).unwrap_or_default();
            for l in &daemon_log {
                eprintln!("  daemon: {l}");
            }
            Err(Failure::StartFailed(format!(
                "the daemon exited during startup ({}); see {}",
                status.map_or_else(|| "unknown status".into(), |s| s.to_string()),
                cfg.home.daemon_log().display()
            )))
        }
        Heard::Timeout => {
            show_log_tail(cfg);
            let reason = cfg_status_reason(cfg);
            stop_child(&mut child, cfg.stop_grace);
            Err(Failure::StartTimeout {
                secs: cfg.timeout.as_secs_f64(),
                reason,
            })
        }
    }
}

/// Launch `stigmer daemon run` detached (own session), with the held lock,
/// the report pipe's write end and the checked configuration (its Temporal
/// binary resolved) as inherited fds.
fn spawn_daemon(
    cfg: &Config,
    bin: &Path,
    lock: &InstanceLock,
    report_tx: &OwnedFd,
) -> Result<Child, Failure> {
    let log = logfile::open_append(&cfg.home.daemon_log()).map_err(|e| {
        Failure::Internal(format!(
            "cannot open {}: {e}",
            cfg.home.daemon_log().display()
        ))
    })?;
    let handed = Config {
        temporal_bin: Some(bin.to_path_buf()),
        ..cfg.clone()
    };
    let config =
        crate::ipc::handoff::write(&handed).map_err(|e| Failure::Internal(e.to_string()))?;
    let fds = [lock.raw_fd(), report_tx.as_raw_fd(), config.as_raw_fd()];
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["daemon", "run", "--home"])
        .arg(cfg.home.root())
        .arg("--lock-fd")
        .arg(fds[0].to_string())
        .arg("--report-fd")
        .arg(fds[1].to_string())
        .arg("--config-fd")
        .arg(fds[2].to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // The handed-over configuration is the whole configuration; env could
    // only contradict it.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("STIGMER_") {
            cmd.env_remove(k);
        }
    }
    // A detached daemon is not the service manager's main process: only a
    // `--foreground` daemon speaks systemd's protocol.
    for var in crate::model::SYSTEMD_VARIABLES {
        cmd.env_remove(var);
    }
    // SAFETY: setsid and fcntl are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // Own session: no terminal, no SIGHUP/SIGINT from the shell.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

/// What the launching CLI hears from its daemon.
enum Heard {
    /// A `Ready` or `Failed` line.
    Report(Report),
    /// The pipe closed without one: the daemon exited.
    Eof,
    /// Nothing decisive before the deadline.
    Timeout,
}

/// Read report lines until `Ready`/`Failed`, EOF or `deadline`, printing
/// notes as they come.
fn read_report(rx: OwnedFd, deadline: Instant, progress: &mut Progress) -> Heard {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut file = std::fs::File::from(rx);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Handle every complete line already received.
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            match crate::ipc::decode::<Report>(&line) {
                Ok(Report::Note { text }) => progress.note(&format!("note: {text}")),
                Ok(report) => return Heard::Report(report),
                Err(_) => return Heard::Eof,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Heard::Timeout;
        }
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        let ms =
            PollTimeout::try_from(left.as_millis().min(100) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {
                progress.tick();
                continue;
            }
            Ok(_) => {}
            Err(_) => return Heard::Eof,
        }
        let mut chunk = [0u8; 4096];
        match file.read(&mut chunk) {
            Ok(0) | Err(_) => return Heard::Eof,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The failure a launch reports: the daemon's own class for a port, state
/// directory, binary or credentials problem; any other failure is a
/// failed start.
fn relay(code: Code, message: String) -> Failure {
    match code {
        Code::PortInUse
        | Code::StateDir
        | Code::Binary
        | Code::TemporalAuth
        | Code::StartTimeout => Failure::Relayed(code, message),
        _ => Failure::StartFailed(message),
    }
}

fn cfg_status(cfg: &Config) -> Option<StatusDoc> {
    match discover(&cfg.home).ok()? {
        Found::Running(_) => fetch_status(&cfg.home, Check::Snapshot).ok(),
        _ => None,
    }
}

fn cfg_status_reason(cfg: &Config) -> String {
    match cfg_status(cfg) {
        Some(doc) => match doc.temporal_unit() {
            Some(t) => {
                let failing = t
                    .status
                    .health
                    .iter()
                    .find(|(_, s)| !s.ok)
                    .map(|(l, s)| format!("; {l} check: {}", s.reason))
                    .unwrap_or_default();
                format!("state {}{failing}", t.status.state.as_str())
            }
            None => "no Temporal in the daemon's status".into(),
        },
        None => "no status from the daemon".into(),
    }
}

fn show_log_tail(cfg: &Config) {
    let lines = logfile::tail(&cfg.home.temporal_log(), 15).unwrap_or_default();
    if lines.is_empty() {
        return;
    }
    eprintln!("Last lines of {}:", cfg.home.temporal_log().display());
    for l in lines {
        eprintln!("  {l}");
    }
}

/// Stop a daemon we launched and that failed: SIGTERM, wait, SIGKILL.
fn stop_child(child: &mut Child, grace: Duration) {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = child.wait();
}
