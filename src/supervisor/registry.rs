//! The one writer of the instance's lock file and PID file. Supervisors
//! tell it who runs (it queues a rewrite of the PID file on the disk
//! thread, retried there until it succeeds), health probes ask it whether
//! both files are still right (they only look, off the event loop), and
//! when they are not, the state machine decides a repair, which the
//! actor asks it to carry out. "Who writes this file" has one answer:
//! this.
//!
//! No file work happens under the lock of the record: `set` only updates
//! memory and queues the write, so a stalled disk never stalls a
//! supervisor.

use crate::disk::Disk;
use crate::health::{FileChecks, Problem};
use crate::lock::InstanceLock;
use crate::model::Layer;
use crate::pidfile::{self, PidFile, PidRecord};
use crate::process::Identity;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Why a file could not be put right.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The lock could not be re-created or taken.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// The layer is not one of the two files.
    #[error("{} is not a file to repair", .0.as_str())]
    NotAFile(Layer),
}

/// The lock, the PID file and what the PID file should say.
#[derive(Debug)]
struct Registry {
    lock: Mutex<InstanceLock>,
    pid_file: PathBuf,
    /// What the file should say, and that version's number.
    record: Mutex<(PidRecord, u64)>,
    /// The newest version the disk thread has written.
    written: Arc<AtomicU64>,
    disk: Disk,
}

/// Shared between the supervisors and their probes.
#[derive(Debug, Clone)]
pub struct SharedRegistry(Arc<Registry>);

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SharedRegistry {
    /// Take over the held `lock` and the PID file at `pid_file`, which
    /// `record` describes (already written, or to be written now when
    /// `write` is set), writing through `disk`.
    pub fn new(
        lock: InstanceLock,
        pid_file: PathBuf,
        record: PidRecord,
        disk: Disk,
        write: bool,
    ) -> Self {
        let r = SharedRegistry(Arc::new(Registry {
            lock: Mutex::new(lock),
            pid_file,
            record: Mutex::new((record, 0)),
            written: Arc::new(AtomicU64::new(0)),
            disk,
        }));
        if write {
            r.queue_write();
        }
        r
    }

    /// A second handle on the held lock (see [`InstanceLock::try_clone`]).
    pub fn lock_clone(&self) -> std::io::Result<InstanceLock> {
        guard(&self.0.lock).try_clone()
    }

    /// What the PID file says (or should say) now.
    pub fn record(&self) -> PidRecord {
        guard(&self.0.record).0.clone()
    }

    /// Record the identity of unit `name` (`temporal` or a service;
    /// `None`: none runs) and queue the rewrite.
    pub fn set(&self, name: &str, id: Option<Identity>) {
        {
            let mut r = guard(&self.0.record);
            r.0.set_unit(name, id);
        }
        self.queue_write();
    }

    /// Queue a write of the current record (the newest one wins).
    fn queue_write(&self) {
        let (bytes, version) = {
            let mut r = guard(&self.0.record);
            r.1 += 1;
            (pidfile::encode(&r.0), r.1)
        };
        self.0
            .disk
            .replace_then(&self.0.pid_file, bytes, self.0.written.clone(), version);
    }

    /// Put `layer`'s file right: re-create and lock the lock file, or
    /// rewrite the PID file. Returns what was done. Blocking: call it off
    /// the event loop.
    pub fn repair(&self, layer: Layer) -> Result<&'static str, RepairError> {
        match layer {
            Layer::Lock => {
                guard(&self.0.lock).repair()?;
                Ok("re-created and locked the lock file")
            }
            Layer::PidFile => {
                self.queue_write();
                Ok("queued a rewrite of the PID file")
            }
            other => Err(RepairError::NotAFile(other)),
        }
    }
}

impl FileChecks for SharedRegistry {
    /// Is the lock still held through a file that its path names?
    fn check_lock(&self) -> Result<String, Problem> {
        // A second fd on the same open file (closing it keeps the lock):
        // the lock's mutex is not held while the disk is asked.
        let lock = self
            .lock_clone()
            .map_err(|e| Problem::File(e.to_string()))?;
        if lock.names_locked_file() {
            Ok("held".into())
        } else {
            Err(Problem::File("lock file was deleted or replaced".into()))
        }
    }

    /// Does the PID file say what it should? A version still queued for
    /// the disk is not a mismatch.
    fn check_pid_file(&self) -> Result<String, Problem> {
        let (want, version) = {
            let r = guard(&self.0.record);
            (r.0.clone(), r.1)
        };
        if self.0.written.load(Ordering::Acquire) < version {
            return Ok("being written".into());
        }
        let why = match pidfile::read(&self.0.pid_file) {
            PidFile::Record(found) if *found == want => return Ok("matches".into()),
            PidFile::Record(_) => "stale".to_string(),
            PidFile::Absent => "missing".to_string(),
            PidFile::BarePid(_) => "not ours (bare pid)".to_string(),
            PidFile::Corrupt(why) => format!("corrupt ({why})"),
        };
        Err(Problem::File(why))
    }
}
