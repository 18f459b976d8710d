//! The long-lived daemon: holds the lock for its whole life, serves HTTP,
//! runs the supervisor on a thread of its own (so an HTTP flood cannot
//! delay it), turns SIGTERM/SIGINT into a clean shutdown and SIGHUP into a
//! graceful Temporal restart, and removes its PID file on the way out.
//!
//! Threads: the process's main thread spawns every supervised process and
//! is the one that execs a new binary on an upgrade ([`upgrade`]): see
//! [`Spawner`] for why. The daemon itself runs on a thread beside it.
//!
//! A [`Daemon`] is set up from a fresh start (named setup steps after
//! [`preflight`]) or adopted from an upgrade's handover; [`handover`] is
//! how a launching CLI passes the checked configuration. Startup is
//! reported to that CLI as [`Report`](crate::ipc::report::Report) lines on an
//! inherited pipe.

mod apply;
pub mod control;
mod reload;

pub mod notify;
pub mod preflight;
pub mod takeover;
pub mod upgrade;

use crate::config::Config;
use crate::disk::Disk;
use crate::exit::Failure;
use crate::http::{self, AppState};
use crate::ipc::report::{Notifier, Report};
use crate::lock::InstanceLock;
use crate::logfile::Logs;
use crate::metrics::Metrics;
use crate::model::Policy;
use crate::model::clock::unix_now_ms;
use crate::pidfile::{self, PidRecord};
use crate::plan::Plan;
use crate::process::{Identity, Spawner, ports};
use crate::status::DaemonInfo;
use crate::supervisor::Startup;
use crate::supervisor::frozen::FrozenUnit;
use crate::supervisor::registry::SharedRegistry;
use crate::supervisor::stack::{Ended, FirstStart, Stack, SupervisionError};
use crate::supervisor::{Context, Halt, Handle};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};

/// How long one write check (start and terminate a workflow) may take: a
/// write on a slow disk takes longer than a health check, and this check
/// runs on its own schedule, so it delays nothing.
const PERSISTENCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
        if !matches!(report, Report::Note { .. }) {
            *slot = None;
        }
    }
}

/// Run the daemon a `start` launched (`stigmer daemon run`): adopt the
/// held lock and the report pipe it handed over (fds `lock_fd` and
/// `report_fd`), and run with `cfg`, the configuration it checked.
pub fn run_launched(cfg: Config, lock_fd: i32, report_fd: i32) -> Result<(), Failure> {
    // SAFETY: the launching CLI passed us these fds and nothing else owns them.
    let lock = unsafe { InstanceLock::from_inherited(lock_fd, &cfg.home.lock_file())? };
    // SAFETY: as above.
    let notifier = unsafe { Notifier::from_inherited(report_fd)? };
    let bin = cfg.resolve_temporal_bin()?;
    run(cfg, bin, lock, Some(notifier))
}

/// Run the daemon in this process until SIGTERM/SIGINT. `lock` must be held.
pub fn run(
    cfg: Config,
    bin: PathBuf,
    lock: InstanceLock,
    notifier: Option<Notifier>,
) -> Result<(), Failure> {
    let reporter = Reporter::new(notifier);
    let start = Start::Fresh {
        cfg: Box::new(cfg),
        bin,
        lock,
    };
    on_threads(reporter.clone(), move |spawner| {
        serve(start, spawner, reporter)
    })
}

/// Continue, in this process, the daemon an upgrade handed over (see
/// [`takeover`]): same lock, listeners and children. `serving` is set
/// once its processes are supervised again (past that, a failure is no
/// longer handed back).
pub fn take_over(
    h: crate::ipc::upgrade::Handover,
    serving: Arc<AtomicBool>,
) -> Result<(), Failure> {
    let start = Start::Adopt(Box::new(h), serving);
    on_threads(Reporter::default(), move |spawner| {
        serve(start, spawner, Reporter::default())
    })
}

/// Run `body` on a daemon thread (with its runtime) while this thread
/// serves its [`Spawner`] until it is done.
fn on_threads<F, Fut>(reporter: Reporter, body: F) -> Result<(), Failure>
where
    F: FnOnce(Spawner) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Failure>>,
{
    let (spawner, spawn_loop) = Spawner::on_this_thread();
    let quit = spawner.clone();
    let worker = std::thread::Builder::new()
        .name("stigmer-daemon".into())
        .spawn(move || {
            // However this thread ends (a panic too), the spawning loop
            // on the main thread ends with it.
            struct Quit(Spawner);
            impl Drop for Quit {
                fn drop(&mut self) {
                    self.0.quit();
                }
            }
            let _quit = Quit(quit);
            let result = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("stigmer-http")
                .enable_all()
                .build()
                .map_err(Failure::from)
                .and_then(|rt| rt.block_on(body(spawner)));
            if let Err(f) = &result {
                reporter.send(Report::Failed {
                    code: f.code(),
                    message: f.to_string(),
                });
            }
            result
        })?;
    spawn_loop.run();
    worker
        .join()
        .unwrap_or_else(|_| Err(Failure::Internal("the daemon thread panicked".into())))
}

/// Where a daemon comes from.
enum Start {
    /// A new instance: the launching CLI's checked configuration.
    Fresh {
        cfg: Box<Config>,
        bin: PathBuf,
        lock: InstanceLock,
    },
    /// An upgrade's handover (or a handover handed back), and the flag
    /// set once its processes are supervised.
    Adopt(Box<crate::ipc::upgrade::Handover>, Arc<AtomicBool>),
}

async fn serve(start: Start, spawner: Spawner, reporter: Reporter) -> Result<(), Failure> {
    // First of all, so a stop that arrives during startup is handled
    // (SIGTERM's default action would skip every cleanup).
    let mut signals = Signals::install()?;
    let logs = Logs::start(Disk::start()?)?;
    let mut daemon = match start {
        Start::Fresh { cfg, bin, lock } => {
            Daemon::fresh(*cfg, bin, lock, &spawner, &logs, &reporter).await?
        }
        Start::Adopt(h, serving) => takeover::adopt(*h, &spawner, &logs, &serving).await?,
    };
    loop {
        match signals.wait(&mut daemon).await {
            Wake::Stop(early) => return daemon.shutdown(early).await,
            Wake::Upgrade(request) => daemon = upgrade::perform(daemon, request, &spawner).await?,
        }
    }
}

/// A running daemon: what an upgrade hands over, or a shutdown stops.
pub struct Daemon {
    info: crate::status::Info,
    /// The plan the units run: what a reload is the difference from.
    plan: Plan,
    metrics: Arc<Metrics>,
    supervisor: Supervisor,
    http: Http,
    /// The HTTP listening socket, kept so an upgrade can hand it over
    /// while the server's own copy is closed (connections queue meanwhile).
    http_socket: OwnedFd,
    control: Option<control::Serving>,
    upgrades: mpsc::Receiver<control::UpgradeRequest>,
    reloads: mpsc::Receiver<control::ReloadRequest>,
    follow: Option<tokio::task::JoinHandle<()>>,
    pid_file: RemovePidFile,
    /// The disk thread and the pumps' runtime.
    logs: Logs,
}

impl Daemon {
    /// A new instance: reclaim what a dead daemon left, bind, record who
    /// we are, supervise.
    async fn fresh(
        cfg: Config,
        bin: PathBuf,
        lock: InstanceLock,
        spawner: &Spawner,
        logs: &Logs,
        reporter: &Reporter,
    ) -> Result<Daemon, Failure> {
        for note in preflight::run(&cfg).await? {
            tracing::warn!("{note}");
            reporter.send(Report::Note { text: note });
        }
        let listener = bind_http(&cfg).await?;
        let (record, pid_file) = write_pid_file(&cfg, &bin)?;
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
        let ctx = Context {
            registry: SharedRegistry::new(
                lock,
                info.config.home.pid_file(),
                record,
                logs.disk.clone(),
                false,
            ),
            spawner: spawner.clone(),
            logs: logs.clone(),
            heartbeat: Default::default(),
        };
        let plan = Plan::of(
            &info.config,
            &info.binary,
            &info.policy,
            &crate::plan::inherited_names(),
        );
        let supervisor = Supervisor::start(ctx, metrics, Some(reporter), &plan, None).await?;
        let control = control::Control::bind(&info.config.home.control_socket());
        Daemon::serving(info, plan, supervisor, listener, control, pid_file, logs)
    }

    /// Start serving HTTP and the control socket beside the supervisor.
    fn serving(
        info: Arc<DaemonInfo>,
        plan: Plan,
        supervisor: Supervisor,
        listener: tokio::net::TcpListener,
        control: std::io::Result<control::Control>,
        pid_file: RemovePidFile,
        logs: &Logs,
    ) -> Result<Daemon, Failure> {
        use std::os::fd::AsFd;
        let metrics = supervisor.metrics.clone();
        let http_socket = listener.as_fd().try_clone_to_owned()?;
        let tracing_info = (info.config.http_addr, info.config.home.root().to_path_buf());
        let info = crate::status::Info::new((*info).clone());
        let mut state = AppState::new(supervisor.handle.clone(), info.clone(), metrics.clone());
        state.temporal = supervisor.client.grpc().clone();
        let http = Http::start(listener, state.clone());
        let (upgrade_tx, upgrades) = mpsc::channel(1);
        // A few reloads (dry runs, mostly) wait their turn; more are
        // told the daemon is busy.
        let (reload_tx, reloads) = mpsc::channel(4);
        let requests = control::Requests {
            upgrades: upgrade_tx,
            reloads: reload_tx,
        };
        let control = match control {
            Ok(c) => Some(c.serve(state, requests)?),
            Err(e) => {
                tracing::warn!(error = %e, "no control socket: `stigmer local restart SERVICE` and `upgrade` are unavailable");
                None
            }
        };
        tracing::info!(http = %tracing_info.0, home = %tracing_info.1.display(), pid = std::process::id(), "daemon running");
        let follow = notify::Systemd::from_env()
            .map(|sd| tokio::spawn(sd.follow(supervisor.handle.clone())));
        Ok(Daemon {
            info,
            plan,
            metrics,
            supervisor,
            http,
            http_socket,
            control,
            upgrades,
            reloads,
            follow,
            pid_file,
            logs: logs.clone(),
        })
    }

    /// Stop everything (Temporal's group and every service's go), in order.
    async fn shutdown(mut self, early: Option<SupervisorOutcome>) -> Result<(), Failure> {
        tracing::info!("shutting down");
        if let Some(sd) = notify::Systemd::from_env() {
            sd.stopping();
        }
        // The lock is released last: a start that wins it next finds every
        // port and socket of ours closed and no PID file, not a daemon
        // still on its way out holding the HTTP port.
        let lock = self.supervisor.ctx.registry.clone();
        let outcome = self.supervisor.stop(early).await;
        if let Some(f) = self.follow.take() {
            f.abort();
        }
        if let Some(c) = self.control.take() {
            c.close(true);
        }
        self.http.stop().await;
        drop(self.http_socket);
        // What was queued for the logs is written, and the PID file goes
        // after its last rewrite, not before (bounded: a stalled disk does
        // not hold the stop forever).
        self.logs
            .disk
            .remove(&self.info.get().config.home.pid_file());
        self.logs.disk.sync(crate::disk::STALL_BOUND).await;
        // Removed above, through the disk thread: no blocking removal on a
        // stalled disk, and none after the lock is someone else's.
        self.pid_file.disarm();
        drop(lock);
        outcome
    }
}

/// What woke the daemon.
enum Wake {
    /// SIGTERM/SIGINT (`None`) or the supervisor ended on its own.
    Stop(Option<SupervisorOutcome>),
    /// `stigmer local upgrade`.
    Upgrade(control::UpgradeRequest),
}

/// The signals the daemon acts on: blocked in every thread since the
/// process began (see [`crate::process::signals`]), read here. Outside
/// [`Signals::wait`] (during an upgrade, say) they wait in the kernel.
struct Signals(crate::process::signals::Signals);

impl Signals {
    fn install() -> Result<Self, Failure> {
        // main() blocked them before the first thread; an upgrade from an
        // older release had not, and its takeover entry blocks them. This
        // thread's mask, at least, is certain.
        crate::process::signals::block()?;
        Ok(Signals(crate::process::signals::Signals::install()?))
    }

    /// Until a stop, the supervisor's end, or an upgrade request; SIGHUP
    /// reloads the configuration on the way.
    async fn wait(&mut self, d: &mut Daemon) -> Wake {
        use nix::sys::signal::Signal;
        loop {
            tokio::select! {
                sig = self.0.recv() => match sig {
                    Ok(Signal::SIGHUP) => {
                        tracing::info!("SIGHUP: reloading the configuration");
                        match d.reload(false).await {
                            Ok(r) => tracing::info!(changes = ?r.changes, notes = ?r.notes, "reloaded"),
                            Err((_, why)) => tracing::error!(%why, "reload refused; nothing changed"),
                        }
                    }
                    Ok(sig) => {
                        tracing::info!(signal = sig.as_str(), "stopping");
                        return Wake::Stop(None);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the daemon's signals: stopping");
                        return Wake::Stop(None);
                    }
                },
                Some(req) = d.reloads.recv() => {
                    let reply = match d.reload(req.dry_run).await {
                        Ok(report) => crate::ipc::control::Reply::Reloaded { report },
                        Err((code, message)) => crate::ipc::control::Reply::Failed { code, message },
                    };
                    let _ = req.reply.send(reply);
                }
                r = &mut d.supervisor.done => return Wake::Stop(Some(r)),
                Some(request) = d.upgrades.recv() => return Wake::Upgrade(request),
            }
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

/// Removes the PID file when dropped, unless disarmed (a handover keeps
/// it for the next daemon). Declared after the lock, so it runs first: the
/// PID file is gone before the lock is released, and a start that wins the
/// lock next never reads our stale record.
struct RemovePidFile(Option<PathBuf>);

impl RemovePidFile {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemovePidFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            pidfile::remove(p);
        }
    }
}

/// Record who we are (and, later, our Temporal) for discovery.
fn write_pid_file(
    cfg: &Config,
    bin: &std::path::Path,
) -> Result<(PidRecord, RemovePidFile), Failure> {
    let me = Identity::of(std::process::id() as i32)
        .ok_or_else(|| Failure::Internal("cannot read own /proc entry".into()))?;
    let record = PidRecord::new(
        me,
        crate::pidfile::Addresses {
            frontend: cfg.frontend(),
            ui_url: cfg.ui_url(),
            http_addr: cfg.http_addr,
            db_file: cfg.db_file.clone(),
            temporal_bin: bin.to_path_buf(),
        },
    );
    pidfile::write(&cfg.home.pid_file(), &record)?;
    Ok((record, RemovePidFile(Some(cfg.home.pid_file()))))
}

type SupervisorOutcome = Result<Result<Ended, SupervisionError>, oneshot::error::RecvError>;

/// The supervisor on its own thread and current-thread runtime.
struct Supervisor {
    handle: Handle,
    ctx: Context,
    /// The one connection to Temporal every check uses.
    client: crate::temporal::Client,
    metrics: Arc<Metrics>,
    halt: watch::Sender<Option<Halt>>,
    done: oneshot::Receiver<Result<Ended, SupervisionError>>,
}

impl Supervisor {
    /// Supervise every unit of `plan`: started, reported to `reporter`
    /// once every unit is ready (or one fails); or, `adopted`, each
    /// continuing from a handover's frozen state (reported by the daemon
    /// that started it). Either way, the difference from nothing, applied.
    async fn start(
        ctx: Context,
        metrics: Arc<Metrics>,
        reporter: Option<&Reporter>,
        plan: &Plan,
        adopted: Option<Vec<(String, FrozenUnit)>>,
    ) -> Result<Self, Failure> {
        let frozen: std::collections::BTreeMap<String, FrozenUnit> =
            adopted.iter().flatten().cloned().collect();
        if adopted.is_some()
            && let Some(u) = plan.units.iter().find(|u| !frozen.contains_key(&u.name))
        {
            return Err(Failure::Internal(format!(
                "the handover has no state for {}",
                u.name
            )));
        }
        let stack = Stack::new(ctx.heartbeat.clone());
        let sup = Supervisor::run(stack, ctx, metrics, &plan.connection)?;
        let nothing = Plan::empty(plan);
        let d = crate::plan::diff(&nothing, plan).map_err(|e| Failure::Internal(e.0))?;
        let first = apply::apply(&sup.binder(), &sup.handle, &d, &nothing, plan, frozen).await?;
        if let Some(reporter) = reporter {
            report_first_start(first, sup.handle.clone(), reporter.clone());
        }
        Ok(sup)
    }

    /// Run `stack` on a thread of its own.
    fn run(
        stack: Stack,
        ctx: Context,
        metrics: Arc<Metrics>,
        connection: &crate::temporal::Connection,
    ) -> Result<Self, Failure> {
        let handle = stack.handle();
        let (halt, mut halt_rx) = watch::channel(None);
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("stigmer-supervisor".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|_| SupervisionError::ThreadDied)
                    .and_then(|rt| {
                        rt.block_on(stack.run(async move {
                            match halt_rx.wait_for(Option::is_some).await {
                                Ok(h) => h.unwrap_or(Halt::Stop),
                                Err(_) => Halt::Stop,
                            }
                        }))
                    });
                let _ = done_tx.send(result);
            })?;
        Ok(Supervisor {
            handle,
            ctx,
            // One connection to Temporal for every check: health, task
            // queues, the write check, `status`'s live check.
            client: crate::temporal::Client::new(connection),
            metrics,
            halt,
            done,
        })
    }

    /// What binds units for this supervisor.
    fn binder(&self) -> apply::Binder<'_> {
        apply::Binder {
            ctx: &self.ctx,
            client: &self.client,
            metrics: &self.metrics,
        }
    }

    /// Stop supervising (Temporal's whole group goes) and report how the
    /// supervisor ended; `early` when it had already ended on its own.
    async fn stop(self, early: Option<SupervisorOutcome>) -> Result<(), Failure> {
        let _ = self.halt.send(Some(Halt::Stop));
        let outcome = match early {
            Some(r) => r,
            None => self.done.await,
        };
        match outcome {
            Ok(Ok(_)) => {
                tracing::info!("stopped");
                Ok(())
            }
            Ok(Err(e)) => Err(Failure::Internal(format!("supervisor failed: {e}"))),
            Err(_) => Err(Failure::Internal(SupervisionError::ThreadDied.to_string())),
        }
    }

    /// Stop supervising without touching any process, and hand back every
    /// unit's state.
    async fn freeze(self) -> Result<Vec<(String, FrozenUnit)>, SupervisionError> {
        let _ = self.halt.send(Some(Halt::Freeze));
        match self.done.await {
            Ok(Ok(Ended::Frozen(units))) => Ok(units),
            Ok(Ok(Ended::Stopped)) => Err(SupervisionError::NotFrozen),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SupervisionError::ThreadDied),
        }
    }
}

/// Tell the launching CLI (and systemd) how the first start went, once
/// every unit is ready or one has failed.
fn report_first_start(first: Vec<FirstStart>, handle: Handle, reporter: Reporter) {
    let systemd = notify::Systemd::from_env();
    tokio::spawn(async move {
        let report = match crate::supervisor::stack::combined(first).await {
            Startup::Ready { pid } => {
                if let Some(sd) = systemd {
                    sd.ready(&handle);
                }
                Report::Ready { pid }
            }
            Startup::Failed { code, message } => {
                if let Some(sd) = systemd {
                    sd.failed(&message);
                }
                Report::Failed { code, message }
            }
        };
        reporter.send(report);
    });
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

    /// Stop accepting, let in-flight requests finish (bounded), close.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
