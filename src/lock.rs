//! The instance lock: an exclusive `flock` on `stigmer.lock`, held by the
//! supervising daemon for its whole life. It is the single source of truth
//! for "is an instance running": the kernel drops it when the daemon dies,
//! however it dies.
//!
//! The CLI takes the lock first and hands the *same open file description*
//! to the daemon it spawns (fd inheritance), so there is no window in which
//! the lock is free between "nothing runs" and "the daemon runs". The fd is
//! close-on-exec everywhere else, so Temporal never inherits it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Failure to take or verify the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Opening or locking failed for a reason other than contention.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An inherited fd is not the lock file it claims to be.
    #[error("inherited fd {fd} is not the lock file {path}")]
    NotLockFile {
        /// The fd number.
        fd: RawFd,
        /// The expected path.
        path: PathBuf,
    },
}

/// A held instance lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

/// Outcome of a non-blocking attempt.
#[derive(Debug)]
pub enum TryLock {
    /// We hold it now.
    Acquired(InstanceLock),
    /// Someone else (a live daemon) holds it.
    Busy,
}

impl InstanceLock {
    /// Try to take the lock without blocking. Refuses to follow a symlink.
    pub fn try_acquire(path: &Path) -> Result<TryLock, LockError> {
        let io_err = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => Ok(TryLock::Acquired(InstanceLock {
                file,
                path: path.to_path_buf(),
            })),
            Err(TryLockError::WouldBlock) => Ok(TryLock::Busy),
            Err(TryLockError::Error(e)) => Err(io_err(e)),
        }
    }

    /// Is the lock held by anyone right now? Probes by taking and
    /// immediately releasing it, so use it only for read-only questions.
    pub fn is_held(path: &Path) -> Result<bool, LockError> {
        if !path.exists() {
            return Ok(false);
        }
        Ok(matches!(Self::try_acquire(path)?, TryLock::Busy))
    }

    /// Adopt a lock fd inherited from the CLI that spawned us. Verifies the
    /// fd is the file at `path` and makes it close-on-exec again.
    ///
    /// # Safety
    /// `fd` must be an open fd owned by nobody else in this process.
    pub unsafe fn from_inherited(fd: RawFd, path: &Path) -> Result<Self, LockError> {
        // SAFETY: the caller promises `fd` is open and unowned.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| LockError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Self::adopt(fd, path)
    }

    /// Adopt `fd`, an fd on the held lock file at `path` (inherited, or a
    /// duplicate of one): verify it, and take the lock in this process's
    /// name (see [`Self::retake`]).
    pub fn adopt(fd: std::os::fd::OwnedFd, path: &Path) -> Result<Self, LockError> {
        let raw = fd.as_raw_fd();
        let lock = InstanceLock {
            file: File::from(fd),
            path: path.to_path_buf(),
        };
        if !lock.names_locked_file() {
            return Err(LockError::NotLockFile {
                fd: raw,
                path: path.to_path_buf(),
            });
        }
        lock.retake()?;
        Ok(lock)
    }

    /// Take the lock again through the same open file description, so the
    /// kernel's lock table (`/proc/locks`, `lslocks`) names this process
    /// as the holder, not the CLI that took it and handed it over (which
    /// exits, and whose pid can be reused by anything). Re-locking with the
    /// same mode is a no-op for the kernel, so convert EX → SH → EX: each
    /// conversion happens under the kernel's lock-list spinlock, and nobody
    /// ever takes a shared lock on this file, so an exclusive request from
    /// anyone else fails throughout and the lock is never free. On an fd
    /// that was not locked at all, this takes the lock or reports contention.
    fn retake(&self) -> Result<(), LockError> {
        for op in [libc::LOCK_SH, libc::LOCK_EX] {
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(self.file.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
                return Err(LockError::Io {
                    path: self.path.clone(),
                    source: io::Error::last_os_error(),
                });
            }
        }
        Ok(())
    }

    /// Does the lock path still name the file we hold locked? False when
    /// someone deleted or replaced it: a new process could then lock the
    /// new file and believe nothing runs.
    pub fn names_locked_file(&self) -> bool {
        let (Ok(held), Ok(on_disk)) = (self.file.metadata(), std::fs::symlink_metadata(&self.path))
        else {
            return false;
        };
        held.dev() == on_disk.dev() && held.ino() == on_disk.ino()
    }

    /// Recreate the lock file at its path when it was deleted or replaced
    /// while we run, and lock the new file too, so the path is truthful again.
    pub fn repair(&mut self) -> Result<(), LockError> {
        if self.names_locked_file() {
            return Ok(());
        }
        let _ = std::fs::remove_file(&self.path);
        match Self::try_acquire(&self.path)? {
            TryLock::Acquired(fresh) => {
                // Keep both: the old description stays locked (harmless),
                // the path now names a file we hold.
                let old = std::mem::replace(&mut self.file, fresh.file);
                drop(old);
                Ok(())
            }
            TryLock::Busy => Err(LockError::Io {
                path: self.path.clone(),
                source: io::Error::from(io::ErrorKind::WouldBlock),
            }),
        }
    }

    /// A second handle on the same held lock (a duplicated fd: the lock
    /// stays held while either is open), for an upgrade's handover.
    pub fn try_clone(&self) -> io::Result<InstanceLock> {
        Ok(InstanceLock {
            file: self.file.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Give up the handle without closing it (its fd now belongs to a
    /// handover): the lock stays held.
    pub fn into_raw_fd(self) -> RawFd {
        std::os::fd::IntoRawFd::into_raw_fd(self.file)
    }

    /// The raw fd, for handing to a spawned daemon.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The lock file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_busy_until_release() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("l");
        let TryLock::Acquired(held) = InstanceLock::try_acquire(&p).unwrap() else {
            panic!("first acquire must succeed")
        };
        assert!(matches!(
            InstanceLock::try_acquire(&p).unwrap(),
            TryLock::Busy
        ));
        assert!(InstanceLock::is_held(&p).unwrap());
        drop(held);
        assert!(!InstanceLock::is_held(&p).unwrap());
    }

    #[test]
    fn detects_and_repairs_replaced_lock_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("l");
        let TryLock::Acquired(mut held) = InstanceLock::try_acquire(&p).unwrap() else {
            panic!()
        };
        std::fs::remove_file(&p).unwrap();
        assert!(!held.names_locked_file());
        held.repair().unwrap();
        assert!(held.names_locked_file());
        assert!(InstanceLock::is_held(&p).unwrap());
    }

    #[test]
    fn adopted_lock_is_retaken_in_the_adopters_name() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("l");
        let TryLock::Acquired(held) = InstanceLock::try_acquire(&p).unwrap() else {
            panic!()
        };
        // Adopt a duplicate of the same open file description, as a daemon
        // adopts the CLI's: still locked, never free in between.
        let dup = nix::unistd::dup(&held.file).unwrap();
        std::mem::forget(held);
        use std::os::fd::IntoRawFd;
        let adopted = unsafe { InstanceLock::from_inherited(dup.into_raw_fd(), &p) }.unwrap();
        assert!(InstanceLock::is_held(&p).unwrap());
        let me = std::process::id() as i32;
        assert_eq!(crate::process::proc::lock_holders(&p), vec![me]);
        drop(adopted);
    }

    #[test]
    fn refuses_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("t");
        std::fs::write(&target, "").unwrap();
        let p = tmp.path().join("l");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(InstanceLock::try_acquire(&p).is_err());
    }
}
