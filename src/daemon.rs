//! The long-lived daemon: holds the lock for its whole life, serves HTTP,
//! runs the supervisor on a thread of its own (so an HTTP flood cannot
//! delay it), turns SIGTERM/SIGINT into a clean shutdown and SIGHUP into a
//! graceful Temporal restart, and removes its PID file on the way out.
//!
//! Startup is reported to the launching CLI as one line on an inherited
//! pipe: `ready <pid>` or `failed <exit-code> <message>`.

use crate::config::Config;
use crate::exit::{Code, Failure};
use crate::http::{self, AppState};
use crate::lock::InstanceLock;
use crate::metrics::Metrics;
use crate::pidfile::{self, PidFile, PidRecord};
use crate::process::{self, Identity, SpawnSpec, Verdict, ports};
use crate::status::Static;
use crate::supervisor::actor::{StartupOutcome, unix_now_ms};
use crate::supervisor::policy::Policy;
use crate::supervisor::state::Rules;
use crate::supervisor::{Actor, Command, SupervisorConfig};
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};

/// Probe period from spawn until first ready: short, so a restart is seen
/// serving within milliseconds of Temporal being able to answer.
pub const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Write end of the startup pipe to the launching CLI.
pub struct Notifier(File);

impl Notifier {
    /// Adopt the inherited fd (made close-on-exec so Temporal never holds it).
    ///
    /// # Safety
    /// `fd` must be an open fd owned by nobody else in this process.
    pub unsafe fn from_inherited(fd: RawFd) -> std::io::Result<Self> {
        // SAFETY: forwarded to the caller.
        let file = unsafe { File::from_raw_fd(fd) };
        nix::fcntl::fcntl(
            &file,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        Ok(Notifier(file))
    }

    fn send(&mut self, line: &str) {
        let _ = writeln!(self.0, "{}", line.replace('\n', " "));
    }

    /// Something the user should hear about (printed by the CLI).
    fn note(&mut self, text: &str) {
        self.send(&format!("note {text}"));
    }

    fn ready(mut self, pid: i32) {
        self.send(&format!("ready {pid}"));
    }

    fn failed(mut self, code: Code, message: &str) {
        self.send(&format!("failed {} {message}", code as u8));
    }
}

type SharedNotifier = Arc<Mutex<Option<Notifier>>>;

/// Run the daemon in this process until SIGTERM/SIGINT. `lock` must be held.
pub fn run(
    cfg: Config,
    bin: PathBuf,
    lock: InstanceLock,
    notifier: Option<Notifier>,
) -> Result<(), Failure> {
    let notifier: SharedNotifier = Arc::new(Mutex::new(notifier));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("stigmer-http")
        .enable_all()
        .build()?;
    let result = rt.block_on(serve(cfg.clone(), bin, lock, notifier.clone()));
    if let Err(f) = &result
        && let Some(n) = take(&notifier)
    {
        n.failed(f.code(), &f.to_string());
    }
    result
}

/// Removes the PID file when dropped. Declared after the lock in `serve`,
/// so it runs first: the PID file is gone before the lock is released, and
/// a start that wins the lock next never reads our stale record.
struct RemovePidFile(PathBuf);

impl Drop for RemovePidFile {
    fn drop(&mut self) {
        pidfile::remove(&self.0);
    }
}

fn take(n: &SharedNotifier) -> Option<Notifier> {
    n.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Before starting: reclaim what a dead daemon left (a verified orphan
/// Temporal, waiting out one that is still exiting), drop a stale or
/// corrupt PID file without signalling anyone, and make sure every port we
/// need is free. Returns what it did.
pub async fn preflight(cfg: &Config) -> Result<Vec<String>, Failure> {
    let (mut notes, ours) = reclaim_orphans(cfg.home.pid_file(), cfg.stop_grace).await?;
    pidfile::remove(&cfg.home.pid_file());
    let mut wanted = cfg.temporal_binds();
    wanted.push((cfg.http_addr, "daemon HTTP", "http-addr"));
    let deadline = Instant::now() + EXIT_WAIT;
    for (addr, what, flag) in wanted {
        if let Err(owner) = ports::wait_free(addr, &ours, deadline) {
            return Err(port_in_use(addr, what, flag, owner));
        }
    }
    notes.retain(|n| !n.is_empty());
    Ok(notes)
}

/// How long a process we recorded may take to finish exiting (its leader
/// already a zombie, other threads still closing its sockets).
const EXIT_WAIT: Duration = Duration::from_secs(5);

fn port_in_use(addr: SocketAddr, what: &'static str, flag: &'static str, owner: String) -> Failure {
    Failure::PortInUse {
        port: addr.port(),
        what,
        owner,
        flag,
    }
}

/// Read the PID file left by a previous daemon (we hold the lock, so that
/// daemon is dead) and stop its Temporal only if its identity verifies; a
/// Temporal that is already exiting (killed with its daemon, its leader a
/// zombie while other threads still hold its ports) is waited for, as an
/// exit event. Anything unverifiable is reported, never signalled. Returns
/// the notes and the identities of the processes that were ours.
pub async fn reclaim_orphans(
    pid_file: PathBuf,
    grace: Duration,
) -> Result<(Vec<String>, Vec<Identity>), Failure> {
    let mut notes = Vec::new();
    let mut ours = Vec::new();
    match pidfile::read(&pid_file) {
        PidFile::Absent => {}
        PidFile::BarePid(pid) => notes.push(format!(
            "ignored PID file with a bare pid ({pid}): no identity to verify, nothing signalled"
        )),
        PidFile::Corrupt(why) => notes.push(format!(
            "ignored unusable PID file ({why}); nothing signalled"
        )),
        PidFile::Record(r) => {
            if r.daemon.pid as u32 != std::process::id() && r.daemon.verify() == Verdict::Match {
                return Err(Failure::StartFailed(format!(
                    "another stigmer daemon (pid {}) runs for this home but its lock file was replaced; stop it with `kill {}`",
                    r.daemon.pid, r.daemon.pid
                )));
            }
            if let Some(t) = &r.temporal {
                ours.push(t.clone());
                notes.extend(reclaim("Temporal", t, grace).await?);
            }
        }
    }
    Ok((notes, ours))
}

/// Reclaim one process a dead daemon recorded (`what` names it): stop it
/// when it verifies, wait out its exit when it is already exiting, and
/// kill what is left of its process group when its leader is gone (the
/// group id stays reserved while any member lives, so the members are
/// ours). A process that does not verify is left alone and reported.
async fn reclaim(what: &str, t: &Identity, grace: Duration) -> Result<Option<String>, Failure> {
    let pid = t.pid;
    let note = match t.verify() {
        Verdict::Match => {
            process::group::terminate_group(t.pgid, grace)
                .await
                .map_err(|e| {
                    Failure::Internal(format!("cannot stop orphaned {what} pid {pid}: {e}"))
                })?;
            return Ok(Some(format!(
                "stopped orphaned {what} (pid {pid}) left by a dead daemon"
            )));
        }
        Verdict::Mismatch(why) => {
            return Ok(Some(format!(
                "stale PID file: {why}; that process was left alone"
            )));
        }
        // Killed with its daemon, its leader a zombie while other threads
        // still close its sockets: wait for the exit event.
        Verdict::Exiting => None,
        Verdict::Gone if process::group::group_alive(t.pgid) => Some(format!(
            "stopped what was left of orphaned {what}'s process group ({})",
            t.pgid
        )),
        Verdict::Gone => return Ok(None),
    };
    let _ = process::signal_group(t.pgid, nix::sys::signal::Signal::SIGKILL);
    let deadline = Instant::now() + EXIT_WAIT;
    let leader = t.clone();
    let gone = tokio::task::spawn_blocking(move || leader.wait_exit(deadline))
        .await
        .unwrap_or(false);
    if !gone || !process::wait_group_gone(t.pgid, deadline).await {
        return Err(Failure::StartFailed(format!(
            "the previous {what} (pid {pid}) is still exiting after {} s",
            EXIT_WAIT.as_secs()
        )));
    }
    Ok(note)
}

async fn serve(
    cfg: Config,
    bin: PathBuf,
    lock: InstanceLock,
    notifier: SharedNotifier,
) -> Result<(), Failure> {
    // First of all, so a stop that arrives during startup is handled
    // (SIGTERM's default action would skip every cleanup).
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut warnings = preflight(&cfg).await?;
    if !cfg.http_addr.ip().is_loopback() {
        warnings.push(format!(
            "the HTTP server listens on {}, beyond this machine: anyone who can reach it can read status and metrics",
            cfg.http_addr
        ));
    }
    if !cfg.temporal_ip.is_loopback() {
        warnings.push(format!(
            "Temporal listens on {}, beyond this machine: the dev server has no authentication, so anyone who can reach it can use it",
            cfg.temporal_ip
        ));
    }
    for warning in warnings {
        tracing::warn!("{warning}");
        if let Some(n) = notifier.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            n.note(&warning);
        }
    }
    let listener = tokio::net::TcpListener::bind(cfg.http_addr)
        .await
        .map_err(|_| {
            port_in_use(
                cfg.http_addr,
                "daemon HTTP",
                "http-addr",
                ports::describe_owner(cfg.http_addr.port()),
            )
        })?;
    let me = Identity::of(std::process::id() as i32)
        .ok_or_else(|| Failure::Internal("cannot read own /proc entry".into()))?;
    let record = PidRecord {
        version: pidfile::FORMAT_VERSION,
        daemon: me,
        temporal: None,
        frontend: cfg.frontend(),
        ui_url: cfg.ui_url(),
        http_addr: cfg.http_addr,
        db_file: cfg.db_file.clone(),
        temporal_bin: bin.clone(),
        started_at: unix_now_ms() / 1000,
    };
    pidfile::write(&cfg.home.pid_file(), &record)?;
    let lock = Arc::new(Mutex::new(lock));
    let _remove_pid_file = RemovePidFile(cfg.home.pid_file());
    let policy = Policy {
        seed: u64::from(std::process::id()) ^ unix_now_ms(),
        ..Policy::default()
    };
    let st = Arc::new(Static {
        config: cfg.clone(),
        binary: bin.display().to_string(),
        started_at_unix_ms: unix_now_ms(),
        backoff_base: policy.base.as_secs_f64(),
        backoff_cap: policy.cap.as_secs_f64(),
    });
    let sup_cfg = SupervisorConfig {
        spec: SpawnSpec {
            program: bin,
            args: cfg.temporal_args(),
        },
        frontend: cfg.frontend(),
        binds: cfg.temporal_binds().into_iter().map(|(a, ..)| a).collect(),
        health_interval: cfg.health_interval,
        startup_interval: STARTUP_PROBE_INTERVAL,
        health_timeout: cfg.health_timeout,
        stop_grace: cfg.stop_grace,
        rules: Rules {
            policy,
            failure_threshold: cfg.failure_threshold,
            start_timeout: cfg.start_timeout,
        },
        pid_file: cfg.home.pid_file(),
        record,
        log_path: cfg.home.temporal_log(),
        log_max_bytes: crate::logfile::DEFAULT_MAX_BYTES,
    };
    let metrics = Arc::new(Metrics::new().map_err(|e| Failure::Internal(e.to_string()))?);
    let (mut actor, handle) = Actor::new(sup_cfg, lock.clone());
    let mut observers: Vec<Arc<dyn crate::supervisor::Observer>> = vec![metrics.clone()];
    if crate::telemetry::traces_on() {
        observers.push(Arc::new(crate::telemetry::spans::SpanObserver::default()));
    }
    actor = actor.with_observer(Arc::new(crate::supervisor::Observers(observers)));
    let startup = actor.notify_startup();

    // The supervisor gets its own thread and runtime.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("stigmer-supervisor".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = match rt {
                Ok(rt) => rt
                    .block_on(actor.run(async move {
                        let _ = stop_rx.wait_for(|stop| *stop).await;
                    }))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let _ = done_tx.send(result);
        })?;

    let app = http::router(AppState {
        handle: handle.clone(),
        st,
        metrics,
    });
    // HTTP outlives supervision, so monitors see "stopping" until the end.
    let (http_stop_tx, http_stop) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(http::serve(listener, app, async move {
        let _ = http_stop.await;
    }));
    let n = notifier.clone();
    tokio::spawn(async move {
        match startup.await {
            Ok(StartupOutcome::Ready { pid }) => {
                if let Some(n) = take(&n) {
                    n.ready(pid)
                }
            }
            Ok(StartupOutcome::Failed {
                reason,
                port_in_use,
            }) => {
                if let Some(n) = take(&n) {
                    let code = if port_in_use {
                        Code::PortInUse
                    } else {
                        Code::StartFailed
                    };
                    n.failed(code, &reason)
                }
            }
            Err(_) => {}
        }
    });

    tracing::info!(http = %cfg.http_addr, home = %cfg.home.root().display(), "daemon running");
    let early = loop {
        tokio::select! {
            _ = term.recv() => break None,
            _ = int.recv() => break None,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: restarting Temporal");
                let _ = handle.commands.send(Command::Restart).await;
            }
            r = &mut done_rx => break Some(r),
        }
    };
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let outcome = match early {
        Some(r) => r,
        None => done_rx.await,
    };
    let _ = http_stop_tx.send(());
    let _ = http_task.await;
    match outcome {
        Ok(Ok(())) => {
            tracing::info!("stopped");
            Ok(())
        }
        Ok(Err(e)) => Err(Failure::Internal(format!("supervisor failed: {e}"))),
        Err(_) => Err(Failure::Internal("supervisor thread died".into())),
    }
}
