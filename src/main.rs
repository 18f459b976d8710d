//! `stigmer`: parse the command line, set up logging, dispatch, and map
//! failures to exit codes. All logic lives in the library.

use stigmer::cli::{Cli, DaemonArgs, DaemonCommand, LocalCommand, StartArgs, Top};
use stigmer::commands;
use stigmer::commands::start::Started;
use stigmer::exit::{Code, Failure};
use stigmer::telemetry::{self, Otlp};

/// The static (musl) build allocates with dlmalloc: musl's own allocator
/// maps and unmaps small groups of pages as a command's few hundred
/// allocations come and go (each unmap a TLB flush), a large part of a
/// short command's time (docs/benchmark.md). dlmalloc keeps freed memory
/// for reuse. Its one lock costs the daemon's HTTP endpoints throughput under
/// heavy concurrent load (docs/benchmark.md, "Start and status"). The
/// glibc build keeps glibc's allocator, which already reuses memory.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> std::process::ExitCode {
    // The daemon forks children from a process whose other threads
    // allocate; this makes fork take dlmalloc's lock, so the child never
    // inherits it held (glibc's allocator does the same for itself).
    // SAFETY: called once, before any other thread exists.
    #[cfg(target_env = "musl")]
    unsafe {
        dlmalloc::enable_alloc_after_fork()
    };
    // An upgrade's takeover runs before anything else parses the command
    // line: from its first instruction, any failure hands back.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(entry) = stigmer::daemon::takeover::entry(&args) {
        return std::process::ExitCode::from(stigmer::daemon::takeover::main(entry));
    }
    let cli = Cli::parse_args();
    // A daemon's signals are blocked before its first thread exists, so
    // every thread inherits the mask (see stigmer::process::signals).
    if runs_daemon(&cli.command)
        && let Err(e) = stigmer::process::signals::block()
    {
        eprintln!("error: cannot block the daemon's signals: {e}");
        return std::process::ExitCode::from(Code::Internal as u8);
    }
    let result = match &cli.command {
        Top::Local(local) => run(&cli, local),
        Top::Completions { shell } => {
            commands::completions::print(*shell);
            Ok(Code::Ok)
        }
        Top::Man { dir } => commands::completions::man(dir),
        Top::Daemon(d) => daemon(&cli, d),
    };
    let code = match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.code()
        }
    };
    std::process::ExitCode::from(code as u8)
}

/// Does this command run the daemon in this process?
fn runs_daemon(command: &Top) -> bool {
    match command {
        Top::Daemon(_) => true,
        Top::Local(l) => match &l.command {
            None => l.start.foreground,
            Some(LocalCommand::Start(a)) => a.foreground,
            Some(LocalCommand::Restart(a)) => a.start.foreground,
            Some(_) => false,
        },
        _ => false,
    }
}

fn run(cli: &Cli, local: &stigmer::cli::Local) -> Result<Code, Failure> {
    // The CLI's short life has no traces to tell; the guard flushes the
    // daemon's before it exits.
    let logs = |daemon: Option<Otlp>, foreground: Option<&std::path::Path>| {
        telemetry::init(
            cli.verbose,
            cli.log_format,
            foreground.is_some(),
            foreground,
            daemon,
        )
    };
    match &local.command {
        None => start(&local.start, logs),
        Some(LocalCommand::Start(a)) => start(a, logs),
        Some(LocalCommand::Restart(a)) => {
            let cfg = commands::load_config(&a.start)?;
            let _t = logs(None, None);
            finish(commands::restart::run(a, cfg)?)
        }
        Some(LocalCommand::Stop(a)) => {
            let _t = logs(None, None);
            commands::stop::run(a)
        }
        Some(LocalCommand::Status(a)) => {
            // A report, not an action: nothing to log unless asked (the
            // subscriber's setup is a visible part of this command's time).
            let _t =
                (cli.verbose || std::env::var_os("RUST_LOG").is_some()).then(|| logs(None, None));
            commands::status::run(a)
        }
        Some(LocalCommand::Config(a)) => {
            let _t = logs(None, None);
            commands::config::run(a)
        }
        Some(LocalCommand::Logs(a)) => {
            let _t = logs(None, None);
            commands::logs::run(a)
        }
        Some(LocalCommand::Upgrade(a)) => {
            let _t = logs(None, None);
            commands::upgrade::run(a)
        }
        Some(LocalCommand::Reload(a)) => {
            let _t = logs(None, None);
            commands::reload::run(a)
        }
    }
}

/// `start`: the configuration first, since the daemon's traces go where
/// it says.
fn start(
    a: &StartArgs,
    logs: impl Fn(Option<Otlp>, Option<&std::path::Path>) -> telemetry::Guard,
) -> Result<Code, Failure> {
    let cfg = commands::load_config(a)?;
    if let Some(code) = commands::start::already_serving(&cfg) {
        return Ok(code);
    }
    let otlp = a
        .foreground
        .then(|| telemetry::otlp_from_env(cfg.otlp_endpoint.as_deref()))
        .flatten();
    let daemon_log = cfg.home.daemon_log();
    let _telemetry = logs(otlp, a.foreground.then_some(daemon_log.as_path()));
    finish(commands::start::run(a, cfg)?)
}

/// A start's end: its exit code, or (`--foreground`, the lock ours) the
/// daemon, run in this process until it stops.
fn finish(started: Started) -> Result<Code, Failure> {
    match started {
        Started::Done(code) => Ok(code),
        Started::Foreground(cfg, bin, lock) => {
            stigmer::daemon::run(*cfg, bin, lock, None)?;
            Ok(Code::Ok)
        }
    }
}

/// `stigmer daemon run`: the daemon a `start` launched, with the lock,
/// the report pipe and the configuration it handed over.
fn daemon(cli: &Cli, d: &DaemonArgs) -> Result<Code, Failure> {
    match &d.command {
        DaemonCommand::Run(a) => {
            // SAFETY: the launching CLI passed us this fd; nothing else owns it.
            let cfg = unsafe { stigmer::ipc::handoff::read(a.config_fd) }
                .map_err(|e| Failure::Internal(e.to_string()))?;
            let otlp = telemetry::otlp_from_env(cfg.otlp_endpoint.as_deref());
            let daemon_log = cfg.home.daemon_log();
            let _telemetry =
                telemetry::init(cli.verbose, cli.log_format, true, Some(&daemon_log), otlp);
            stigmer::daemon::run_launched(cfg, a.lock_fd, a.report_fd)?;
            Ok(Code::Ok)
        }
        // A well-formed one never gets here (see main): what is left is
        // a takeover without its fds.
        DaemonCommand::Takeover(_) => Err(Failure::Internal(
            "`daemon takeover` needs --check, or --state-fd and --previous-fd".into(),
        )),
    }
}
