//! The long-lived daemon: holds the lock for its whole life, serves HTTP,
//! runs the supervisor on a thread of its own (so an HTTP flood cannot
//! delay it), turns SIGTERM/SIGINT into a clean shutdown and SIGHUP into a
//! graceful Temporal restart, and removes its PID file on the way out.
//!
//! [`run`] is a list of named setup steps; [`preflight`] is what happens
//! before anything is started, [`handover`] how a launching CLI passes the
//! checked configuration. Startup is reported to that CLI as
//! [`Report`](crate::startup::Report) lines on an inherited pipe.

pub mod control;
pub mod handover;
pub mod notify;
pub mod preflight;

use crate::config::Config;
use crate::config::services::TEMPORAL;
use crate::exit::Failure;
use crate::http::{self, AppState};
use crate::lock::InstanceLock;
use crate::metrics::Metrics;
use crate::pidfile::{self, PidRecord};
use crate::process::Spawner;
use crate::process::{Identity, ports};
use crate::startup::{Notifier, Report};
use crate::status::DaemonInfo;
use crate::supervisor::actor::unix_now_ms;
use crate::supervisor::external::Watcher;
use crate::supervisor::policy::Policy;
use crate::supervisor::registry::SharedRegistry;
use crate::supervisor::stack::{Runner, Stack};
use crate::supervisor::unit::Unit;
use crate::supervisor::{Actor, Command, Handle, Observer, Observers};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{oneshot, watch};

/// The startup pipe, shared by the steps that may report on it; the first
/// `Ready` or `Failed` closes it.
#[derive(Clone, Default)]
struct Reporter(Arc<Mutex<Option<Notifier>>>);

impl Reporter {
    fn new(n: Option<Notifier>) -> Self {
        Reporter(Arc::new(Mutex::new(n)))
    }

    fn send(&self, report: Report) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = slot.as_mut() {
            n.send(&report);
        }
        if !matches!(report, Report::Note(_)) {
            *slot = None;
        }
    }
}

/// Run the daemon in this process until SIGTERM/SIGINT. `lock` must be held.
pub fn run(
    cfg: Config,
    bin: PathBuf,
    lock: InstanceLock,
    notifier: Option<Notifier>,
) -> Result<(), Failure> {
    let reporter = Reporter::new(notifier);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("stigmer-http")
        .enable_all()
        .build()?;
    let result = rt.block_on(serve(cfg, bin, lock, reporter.clone()));
    if let Err(f) = &result {
        reporter.send(Report::Failed {
            code: f.code(),
            message: f.to_string(),
        });
    }
    result
}

async fn serve(
    cfg: Config,
    bin: PathBuf,
    lock: InstanceLock,
    reporter: Reporter,
) -> Result<(), Failure> {
    // First of all, so a stop that arrives during startup is handled
    // (SIGTERM's default action would skip every cleanup).
    let mut signals = Signals::install()?;
    for note in preflight::run(&cfg).await? {
        tracing::warn!("{note}");
        reporter.send(Report::Note(note));
    }
    let listener = bind_http(&cfg).await?;
    let (record, _remove_pid_file) = write_pid_file(&cfg, &bin)?;
    let info = Arc::new(DaemonInfo {
        config: cfg,
        binary: bin,
        started_at_unix_ms: unix_now_ms(),
        policy: Policy {
            seed: u64::from(std::process::id()) ^ unix_now_ms(),
            ..Policy::default()
        },
    });
    let metrics = Arc::new(Metrics::new().map_err(|e| Failure::Internal(e.to_string()))?);
    let mut supervisor = Supervisor::start(&info, record, lock, metrics.clone(), &reporter)?;
    let state = AppState::new(supervisor.handle.clone(), info.clone(), metrics);
    let http = Http::start(listener, state.clone());
    let control = serve_control(&info.config, &state);
    tracing::info!(http = %info.config.http_addr, home = %info.config.home.root().display(), "daemon running");
    let systemd = notify::Systemd::from_env();
    let follow = systemd.map(|sd| tokio::spawn(sd.follow(supervisor.handle.clone())));
    let early = signals.wait_for_stop(&mut supervisor).await;
    tracing::info!("shutting down");
    if let Some(sd) = systemd {
        sd.stopping();
    }
    let outcome = supervisor.stop(early).await;
    for task in [control, follow].into_iter().flatten() {
        task.abort();
    }
    http.stop().await;
    outcome
}

/// The signals the daemon acts on.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Result<Self, Failure> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Until SIGTERM/SIGINT (`None`) or the supervisor ends on its own
    /// (its outcome); SIGHUP asks for a graceful Temporal restart.
    async fn wait_for_stop(&mut self, sup: &mut Supervisor) -> Option<SupervisorOutcome> {
        loop {
            tokio::select! {
                _ = self.term.recv() => return None,
                _ = self.int.recv() => return None,
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: restarting Temporal");
                    let _ = sup.handle.temporal().commands.send(Command::Restart).await;
                }
                r = &mut sup.done => return Some(r),
            }
        }
    }
}

/// Serve the control socket (restart one service); a daemon that cannot
/// bind it still runs, without that command.
fn serve_control(cfg: &Config, state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    match control::Control::bind(&cfg.home.control_socket()) {
        Ok(c) => Some(tokio::spawn(c.serve(state.clone()))),
        Err(e) => {
            tracing::warn!(error = %e, "no control socket: `stigmer local restart SERVICE` is unavailable");
            None
        }
    }
}

/// Bind the HTTP port; a port taken since preflight names its holder.
async fn bind_http(cfg: &Config) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(cfg.http_addr)
        .await
        .map_err(|_| {
            preflight::port_in_use(
                cfg.http_addr,
                "daemon HTTP",
                "http-addr",
                ports::describe_owner(cfg.http_addr.port()),
            )
        })
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

/// Record who we are (and, later, our Temporal) for discovery.
fn write_pid_file(
    cfg: &Config,
    bin: &std::path::Path,
) -> Result<(PidRecord, RemovePidFile), Failure> {
    let me = Identity::of(std::process::id() as i32)
        .ok_or_else(|| Failure::Internal("cannot read own /proc entry".into()))?;
    let record = PidRecord::new(cfg, me, bin);
    pidfile::write(&cfg.home.pid_file(), &record)?;
    Ok((record, RemovePidFile(cfg.home.pid_file())))
}

type SupervisorOutcome = Result<Result<(), String>, oneshot::error::RecvError>;

/// The supervisor on its own thread and current-thread runtime.
struct Supervisor {
    handle: Handle,
    stop: watch::Sender<bool>,
    done: oneshot::Receiver<Result<(), String>>,
}

impl Supervisor {
    fn start(
        info: &DaemonInfo,
        record: PidRecord,
        lock: InstanceLock,
        metrics: Arc<Metrics>,
        reporter: &Reporter,
    ) -> Result<Self, Failure> {
        let registry = SharedRegistry::new(lock, info.config.home.pid_file(), record);
        let mut stack = build_stack(info, &registry, &metrics);
        let handle = stack.handle();
        let reporter = reporter.clone();
        let systemd = notify::Systemd::from_env();
        let ready_handle = handle.clone();
        let (stop, mut stop_rx) = watch::channel(false);
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("stigmer-supervisor".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|rt| {
                        rt.block_on(async move {
                            let startup = stack.startup();
                            tokio::spawn(async move {
                                let Ok(report) = startup.await else { return };
                                match (&report, systemd) {
                                    (Report::Ready { .. }, Some(sd)) => sd.ready(&ready_handle),
                                    (Report::Failed { message, .. }, Some(sd)) => {
                                        sd.failed(message)
                                    }
                                    _ => {}
                                }
                                reporter.send(report);
                            });
                            stack
                                .run(async move {
                                    let _ = stop_rx.wait_for(|stop| *stop).await;
                                })
                                .await
                        })
                    });
                let _ = done_tx.send(result);
            })?;
        Ok(Supervisor { handle, stop, done })
    }

    /// Stop supervising (Temporal's whole group goes) and report how the
    /// supervisor ended; `early` when it had already ended on its own.
    async fn stop(self, early: Option<SupervisorOutcome>) -> Result<(), Failure> {
        let _ = self.stop.send(true);
        let outcome = match early {
            Some(r) => r,
            None => self.done.await,
        };
        match outcome {
            Ok(Ok(())) => {
                tracing::info!("stopped");
                Ok(())
            }
            Ok(Err(e)) => Err(Failure::Internal(format!("supervisor failed: {e}"))),
            Err(_) => Err(Failure::Internal("supervisor thread died".into())),
        }
    }
}

/// Every unit of `info`'s configuration as a supervisor: Temporal (run,
/// or watched when attached) and each service, all spawning through one
/// thread and reporting to `metrics` (and traces, when on).
fn build_stack(info: &DaemonInfo, registry: &SharedRegistry, metrics: &Arc<Metrics>) -> Stack {
    let cfg = &info.config;
    let spawner = Spawner::new();
    let observe = |name: &str| -> Arc<dyn Observer> {
        let mut observers: Vec<Arc<dyn Observer>> = vec![metrics.observer(name)];
        if crate::telemetry::traces_on() {
            observers.push(Arc::new(crate::telemetry::spans::SpanObserver::new(name)));
        }
        Arc::new(Observers(observers))
    };
    let mut members = Vec::new();
    let mut startups = Vec::new();
    let temporal = match cfg.attach {
        Some(addr) => {
            let (w, h) = Watcher::new(
                addr,
                cfg.health_interval,
                cfg.health_timeout,
                registry.clone(),
            );
            let mut w = w.with_observer(observe(TEMPORAL));
            startups.push((TEMPORAL.to_string(), w.notify_startup()));
            (Runner::Attached(w), h)
        }
        None => {
            let unit = Unit::temporal(cfg, &info.binary, info.policy.clone());
            let (a, h) = Actor::new(unit, registry.clone(), spawner.clone());
            let mut a = a.with_observer(observe(TEMPORAL));
            startups.push((TEMPORAL.to_string(), a.notify_startup()));
            (Runner::Managed(Box::new(a)), h)
        }
    };
    members.push(temporal);
    for s in &cfg.services {
        let unit = Unit::service(s, cfg, info.policy.clone(), &spawner);
        let (a, h) = Actor::new(unit, registry.clone(), spawner.clone());
        let mut a = a.with_observer(observe(&s.name));
        startups.push((s.name.clone(), a.notify_startup()));
        members.push((Runner::Managed(Box::new(a)), h));
    }
    Stack::new(members, startups)
}

/// The HTTP server task; it outlives supervision, so monitors see
/// "stopping" until the end.
struct Http {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Http {
    fn start(listener: tokio::net::TcpListener, state: AppState) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listener, http::router(state), async move {
            let _ = stopped.await;
        }));
        Http { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
