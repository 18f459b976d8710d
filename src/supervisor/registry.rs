//! The one writer of the instance's lock file and PID file. Supervisors
//! tell it who runs (it rewrites the PID file), health probes ask it
//! whether both files are still right (they only look), and when they are
//! not, the state machine decides a repair, which the actor asks it to
//! carry out. "Who writes this file" has one answer: this.

use crate::health::Layer;
use crate::lock::InstanceLock;
use crate::pidfile::{self, PidFile, PidRecord};
use crate::process::Identity;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// The lock, the PID file and what the PID file should say.
#[derive(Debug)]
pub struct Registry {
    lock: InstanceLock,
    pid_file: PathBuf,
    record: PidRecord,
}

/// Shared between the supervisors and their probes.
#[derive(Debug, Clone)]
pub struct SharedRegistry(Arc<Mutex<Registry>>);

impl SharedRegistry {
    /// Take over the held `lock` and the PID file at `pid_file`, which
    /// `record` describes (already written).
    pub fn new(lock: InstanceLock, pid_file: PathBuf, record: PidRecord) -> Self {
        SharedRegistry(Arc::new(Mutex::new(Registry {
            lock,
            pid_file,
            record,
        })))
    }

    fn get(&self) -> MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A second handle on the held lock (see [`InstanceLock::try_clone`]).
    pub fn lock_clone(&self) -> std::io::Result<InstanceLock> {
        self.get().lock.try_clone()
    }

    /// What the PID file says (or should say) now.
    pub fn record(&self) -> PidRecord {
        self.get().record.clone()
    }

    /// Record the identity of unit `name` (`temporal` or a service;
    /// `None`: none runs) and rewrite the file.
    pub fn set(&self, name: &str, id: Option<Identity>) {
        let mut r = self.get();
        if name == crate::config::services::TEMPORAL {
            r.record.temporal = id;
        } else {
            match id {
                Some(id) => r.record.services.insert(name.to_string(), id),
                None => r.record.services.remove(name),
            };
        }
        r.write();
    }

    /// Is the lock still held through a file that its path names? Ok with
    /// a detail, or what is wrong. Only looks.
    pub fn check_lock(&self) -> Result<String, String> {
        if self.get().lock.names_locked_file() {
            Ok("held".into())
        } else {
            Err("lock file was deleted or replaced".into())
        }
    }

    /// Does the PID file say what it should? Only looks.
    pub fn check_pid_file(&self) -> Result<String, String> {
        let r = self.get();
        match pidfile::read(&r.pid_file) {
            PidFile::Record(found) if *found == r.record => Ok("matches".into()),
            PidFile::Record(_) => Err("stale".into()),
            PidFile::Absent => Err("missing".into()),
            PidFile::BarePid(_) => Err("not ours (bare pid)".into()),
            PidFile::Corrupt(why) => Err(format!("corrupt ({why})")),
        }
    }

    /// Put `layer`'s file right: re-create and lock the lock file, or
    /// rewrite the PID file. Returns what was done.
    pub fn repair(&self, layer: Layer) -> Result<&'static str, String> {
        let mut r = self.get();
        match layer {
            Layer::Lock => r
                .lock
                .repair()
                .map(|()| "re-created and locked the lock file")
                .map_err(|e| e.to_string()),
            Layer::PidFile => {
                r.write();
                Ok("rewrote the PID file")
            }
            other => Err(format!("{} is not a file to repair", other.as_str())),
        }
    }
}

impl Registry {
    fn write(&self) {
        if let Err(e) = pidfile::write(&self.pid_file, &self.record) {
            tracing::error!(error = %e, "cannot write PID file");
        }
    }
}
