//! The CLI side of each `stigmer local` command. These are short-lived
//! processes: they discover the running instance from the state directory
//! (lock → PID file → the daemon's HTTP status), act, and exit with a
//! documented code. Only the daemon supervises.

pub mod completions;
pub mod config;
pub mod logs;
mod logs_merged;
mod progress;
pub mod reload;
pub mod restart;
pub mod start;
pub mod status;
pub mod stop;
pub mod upgrade;

use crate::cli::StartArgs;
use crate::config::Config;
use crate::exit::Failure;
use crate::ipc::control::{Reply, Request, ask};
use crate::lock::InstanceLock;
use crate::paths::StateDir;
use crate::pidfile::{self, PidFile, PidRecord};
use crate::process::{Identity, Verdict, proc};
use crate::status::StatusDoc;
use std::path::PathBuf;
use std::time::Duration;

/// What a command finds in a state directory.
#[derive(Debug)]
pub enum Found {
    /// Nobody holds the lock.
    NotRunning,
    /// A daemon holds the lock; its PID file, if usable.
    Running(Option<Box<PidRecord>>),
}

/// The configuration a start-like command runs with: flags, environment
/// and the configuration file, checked.
pub fn load_config(args: &StartArgs) -> Result<Config, Failure> {
    Ok(Config::load(
        home(&args.home.home),
        &args.options,
        &args.explicit,
        args.config.as_deref(),
    )?)
}

/// Resolve `--home`.
pub fn home(arg: &Option<PathBuf>) -> StateDir {
    StateDir::new(arg.clone().unwrap_or_else(StateDir::default_root))
}

/// Does a daemon hold `home`'s lock?
pub fn running(home: &StateDir) -> Result<bool, Failure> {
    Ok(home.exists() && InstanceLock::is_held(&home.lock_file())?)
}

/// Is an instance running in `home`, and what does its PID file say?
pub fn discover(home: &StateDir) -> Result<Found, Failure> {
    if !running(home)? {
        return Ok(Found::NotRunning);
    }
    Ok(Found::Running(match pidfile::read(&home.pid_file()) {
        PidFile::Record(r) => Some(r),
        _ => None,
    }))
}

/// How fresh the status must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The daemon's latest view.
    Snapshot,
    /// Plus a gRPC health check of Temporal the daemon makes for this
    /// request, over its kept connection (`/status?check=live`).
    Live,
}

/// The status document from the daemon's control socket in `home`, if a
/// daemon answers there. An answer proves an instance runs (the socket is
/// in the owner-only state directory and goes with the daemon), so the
/// commands that only report ask here first, before any lock or PID file.
pub fn daemon_answer(home: &StateDir, check: Check) -> Option<StatusDoc> {
    let request = Request::Status {
        live: check == Check::Live,
    };
    match ask(&home.control_socket(), &request, Duration::from_secs(2)).ok()? {
        Reply::Status { document } => Some(*document),
        _ => None,
    }
}

/// Why the daemon's status document could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No PID file names where its HTTP server is.
    #[error("the PID file is missing or unreadable")]
    NoRecord,
    /// Its HTTP server does not answer.
    #[error("status endpoint {addr} does not answer: {source}")]
    NoAnswer {
        /// Where it was asked.
        addr: std::net::SocketAddr,
        /// Why not.
        source: crate::http_client::Error,
    },
    /// It answered, but not 200.
    #[error("status endpoint answered HTTP {0}")]
    Status(u16),
    /// It answered something that is not a status document.
    #[error("status endpoint sent an unreadable document: {0}")]
    Unreadable(#[from] serde_json::Error),
}

/// Fetch the daemon's status document: over the control socket in
/// `home`, else from the HTTP address in its PID file.
pub fn fetch_status(home: &StateDir, check: Check) -> Result<StatusDoc, StatusError> {
    match daemon_answer(home, check) {
        Some(doc) => Ok(doc),
        None => endpoint_status(home, check),
    }
}

/// The status document from the daemon's `/status` endpoint, at the HTTP
/// address its PID file names (for when the control socket does not
/// answer).
pub fn endpoint_status(home: &StateDir, check: Check) -> Result<StatusDoc, StatusError> {
    let PidFile::Record(record) = pidfile::read(&home.pid_file()) else {
        return Err(StatusError::NoRecord);
    };
    let path = match check {
        Check::Snapshot => "/status",
        Check::Live => "/status?check=live",
    };
    let addr = record.at.http_addr;
    let answer = crate::http_client::get_from(addr, path, Duration::from_secs(2))
        .map_err(|source| StatusError::NoAnswer { addr, source })?;
    if answer.status != 200 {
        return Err(StatusError::Status(answer.status));
    }
    Ok(serde_json::from_str(&answer.body)?)
}

/// The daemon, verified: the PID file's identity if it matches, else the
/// process the kernel's lock table names as the lock's holder (the daemon
/// re-takes the lock it inherits, so the table names it, not the CLI that
/// launched it), else any process holding the lock file open; in either
/// case it must run our own executable as a daemon (`--foreground`).
/// `None` when no such process can be verified (e.g. during the instant a
/// launching CLI hands the lock over).
pub fn daemon_identity(home: &StateDir, record: Option<&PidRecord>) -> Option<Identity> {
    if let Some(r) = record
        && r.daemon.verify() == Verdict::Match
    {
        return Some(r.daemon.clone());
    }
    let ours = std::env::current_exe().ok()?;
    let is_daemon = |pid: &i32| {
        let argv = proc::cmdline(*pid);
        proc::exe(*pid).as_ref() == Some(&ours)
            && (argv.iter().any(|a| a == "--foreground")
                || argv.get(1).is_some_and(|a| a == "daemon"))
    };
    let lock = home.lock_file();
    let me = std::process::id() as i32;
    let holder = proc::lock_holders(&lock)
        .into_iter()
        .filter(|&p| p != me)
        .find(is_daemon)
        .or_else(|| proc::processes_with_open(&lock).into_iter().find(is_daemon))?;
    Identity::of(holder)
}

/// A current-thread runtime for the CLI's few async calls.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
