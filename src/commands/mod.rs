//! The CLI side of each `stigmer local` command. These are short-lived
//! processes: they discover the running instance from the state directory
//! (lock → PID file → the daemon's HTTP status), act, and exit with a
//! documented code. Only the daemon supervises.

pub mod logs;
pub mod restart;
pub mod start;
pub mod status;
pub mod stop;

use crate::exit::Failure;
use crate::lock::InstanceLock;
use crate::paths::StateDir;
use crate::pidfile::{self, PidFile, PidRecord};
use crate::process::Verdict;
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

/// Resolve `--home`.
pub fn home(arg: &Option<PathBuf>) -> StateDir {
    StateDir::new(arg.clone().unwrap_or_else(StateDir::default_root))
}

/// Is an instance running in `home`, and what does its PID file say?
pub fn discover(home: &StateDir) -> Result<Found, Failure> {
    if !home.exists() || !InstanceLock::is_held(&home.lock_file())? {
        return Ok(Found::NotRunning);
    }
    Ok(Found::Running(match pidfile::read(&home.pid_file()) {
        PidFile::Record(r) => Some(r),
        _ => None,
    }))
}

/// Fetch the daemon's status document.
pub fn fetch_status(record: &PidRecord) -> Result<StatusDoc, String> {
    let (code, body) = crate::http::get_local(record.http_addr, "/status", Duration::from_secs(2))
        .map_err(|e| format!("status endpoint {} does not answer: {e}", record.http_addr))?;
    if code != 200 {
        return Err(format!("status endpoint answered HTTP {code}"));
    }
    serde_json::from_str(&body)
        .map_err(|e| format!("status endpoint sent an unreadable document: {e}"))
}

/// The daemon's pid, verified against its recorded identity, or found as
/// the holder of the lock in `/proc/locks` (when the PID file is gone)
/// and checked to run our own executable.
pub fn daemon_pid(home: &StateDir, record: Option<&PidRecord>) -> Option<i32> {
    if let Some(r) = record
        && r.daemon.verify() == Verdict::Match
    {
        return Some(r.daemon.pid);
    }
    let pid = lock_holder(&home.lock_file())?;
    let ours = std::env::current_exe().ok();
    let theirs = crate::process::identity::exe(pid);
    (ours.is_some() && ours == theirs).then_some(pid)
}

/// The pid holding a flock on `path`, from `/proc/locks`.
pub fn lock_holder(path: &std::path::Path) -> Option<i32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let suffix = format!(":{}", meta.ino());
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        let (kind, pid, dev_ino) = (f.get(1)?, f.get(4)?, f.get(5)?);
        (*kind == "FLOCK" && dev_ino.ends_with(&suffix)).then(|| pid.parse().ok())?
    })
}

/// A current-thread runtime for the CLI's few async calls.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
