//! The state directory: where every file of one instance lives, and the
//! checks that keep it ours (owned by us, writable by nobody else, no
//! symlinks), and the trust rule for files we read and act on
//! ([`trusted`]): what another user can write, we do not run.
//!
//! ```text
//! $STIGMER_HOME/            0700
//!   stigmer.lock            flock held by the daemon for its whole life
//!   stigmer.pid             JSON identity of daemon + Temporal (atomic rename)
//!   logs/temporal.log       Temporal's stdout/stderr, size-rotated (.1, .2)
//!   logs/daemon.log         the detached daemon's own log
//!   temporal-data/temporal.db   Temporal's SQLite state
//! ```

use std::fs;
use std::io;
#[cfg(test)]
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// Creating or inspecting the directory failed (permissions, disk).
    #[error("cannot use state dir {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A path we own is a symlink: following it could make us write elsewhere.
    #[error("{path} is a symlink; refusing to follow it (remove it, or point --home elsewhere)")]
    Symlink {
        /// The offending path.
        path: PathBuf,
    },
    /// Another user owns the directory: their instance is not ours to manage.
    #[error("state dir {path} is owned by uid {owner}, not by you (uid {me}); use your own --home")]
    NotOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        me: u32,
    },
    /// Someone else can write into it: what they put there, we would run.
    #[error("state dir {path} is not trusted: {why}")]
    Untrusted {
        /// The directory.
        path: PathBuf,
        /// Who else can write it, and what to do.
        why: Untrusted,
    },
    /// Not a directory at all.
    #[error("{path} exists but is not a directory")]
    NotDir {
        /// The path.
        path: PathBuf,
    },
}

impl StateDirError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The resolved layout of one state directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// A layout rooted at `root`; nothing is touched on disk.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `--home`, else `$STIGMER_HOME` (clap fills that), else `~/.stigmer`.
    pub fn default_root() -> PathBuf {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join(".stigmer")
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The configuration file read when `--config` is not given.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("stigmer.toml")
    }
    /// The flock file.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("stigmer.lock")
    }
    /// The daemon's control socket (restart one service).
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    /// The PID/identity file.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("stigmer.pid")
    }
    /// Directory of log files.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Temporal's own output.
    pub fn temporal_log(&self) -> PathBuf {
        self.unit_log(crate::model::TEMPORAL)
    }
    /// A unit's stdout/stderr (Temporal's too: `logs/temporal.log`).
    pub fn unit_log(&self, name: &str) -> PathBuf {
        self.log_dir().join(format!("{name}.log"))
    }
    /// The detached daemon's log.
    pub fn daemon_log(&self) -> PathBuf {
        self.log_dir().join("daemon.log")
    }
    /// Directory holding Temporal's database.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("temporal-data")
    }
    /// Temporal's SQLite database.
    pub fn db_file(&self) -> PathBuf {
        self.data_dir().join("temporal.db")
    }

    /// Create (0700) and check the root and its subdirectories.
    pub fn ensure(&self) -> Result<(), StateDirError> {
        for dir in [self.root.clone(), self.log_dir(), self.data_dir()] {
            ensure_private_dir(&dir)?;
        }
        // Files we write must not be symlinks planted to redirect our writes.
        for file in [
            self.lock_file(),
            self.pid_file(),
            self.control_socket(),
            self.temporal_log(),
            self.daemon_log(),
            self.db_file(),
        ] {
            refuse_symlink(&file)?;
        }
        Ok(())
    }

    /// Check the layout without creating anything: used by read-only
    /// commands so `status` on a fresh home does not create it.
    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }
}

/// Create `dir` with mode 0700 if missing; refuse symlinks, other owners,
/// non-directories; tighten a looser mode we own.
fn ensure_private_dir(dir: &Path) -> Result<(), StateDirError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => check_dir(dir, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StateDirError::io(dir, e))?;
            let meta = fs::symlink_metadata(dir).map_err(|e| StateDirError::io(dir, e))?;
            check_dir(dir, &meta)
        }
        Err(e) => Err(StateDirError::io(dir, e)),
    }
}

fn check_dir(dir: &Path, meta: &fs::Metadata) -> Result<(), StateDirError> {
    if meta.file_type().is_symlink() {
        return Err(StateDirError::Symlink {
            path: dir.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(StateDirError::NotDir {
            path: dir.to_path_buf(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StateDirError::NotOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    // Refused, not repaired: a directory others could write may already
    // hold what they wrote.
    if let Err(why) = writable_only_by_owner(dir, meta) {
        return Err(StateDirError::Untrusted {
            path: dir.to_path_buf(),
            why,
        });
    }
    // Writable? Root bypasses mode bits, so ask the kernel.
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
        .map_err(|e| StateDirError::io(dir, io::Error::from(e)))?;
    Ok(())
}

/// Why a file or directory is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// Anyone can write it.
    #[error("anyone can write it (mode {mode:o}); run `chmod o-w {path}`")]
    OthersWrite {
        /// It.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// A group that is not its owner's own can write it.
    #[error("group {gid} can write it (mode {mode:o}); run `chmod g-w {path}`")]
    GroupWrite {
        /// It.
        path: String,
        /// The group.
        gid: u32,
        /// Its mode.
        mode: u32,
    },
    /// Another user owns it.
    #[error("it is owned by uid {owner}, not by you (uid {me}) or root")]
    Owner {
        /// The owner.
        owner: u32,
        /// Us.
        me: u32,
    },
    /// It cannot be looked at.
    #[error("cannot read it: {0}")]
    Unreadable(String),
}

/// Can only its owner write it? Group-writable is fine when the group is
/// the owner's own private group (Debian's user private groups: a group
/// named after its one user, that user's primary group, no other
/// members), as ssh's StrictModes allows.
fn writable_only_by_owner(path: &Path, meta: &fs::Metadata) -> Result<(), Untrusted> {
    let mode = meta.mode() & 0o7777;
    let shown = path.display().to_string();
    if mode & 0o002 != 0 {
        return Err(Untrusted::OthersWrite { path: shown, mode });
    }
    if mode & 0o020 != 0 && !private_group(meta.uid(), meta.gid()) {
        return Err(Untrusted::GroupWrite {
            path: shown,
            gid: meta.gid(),
            mode,
        });
    }
    Ok(())
}

/// Is `gid` the private group of user `uid` (named after it, its primary
/// group, no other members)?
fn private_group(uid: u32, gid: u32) -> bool {
    use nix::unistd::{Gid, Group, Uid, User};
    let (Ok(Some(user)), Ok(Some(group))) = (
        User::from_uid(Uid::from_raw(uid)),
        Group::from_gid(Gid::from_raw(gid)),
    ) else {
        return false;
    };
    user.gid.as_raw() == gid && group.name == user.name && group.mem.iter().all(|m| *m == user.name)
}

/// May we read `path` and act on what it says (a configuration file, an
/// env file)? It must be owned by us or root and writable by nobody else
/// (see [`writable_only_by_owner`]); a symlink is judged by what it points
/// to. `Err` says why not and what to do.
pub fn trusted(path: &Path) -> Result<(), Untrusted> {
    let meta = fs::metadata(path).map_err(|e| Untrusted::Unreadable(e.to_string()))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Untrusted::Owner {
            owner: meta.uid(),
            me,
        });
    }
    writable_only_by_owner(path, &meta)
}

/// Refuse to operate on `path` if it is a symlink (it must be a regular
/// file or absent).
pub fn refuse_symlink(path: &Path) -> Result<(), StateDirError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(StateDirError::Symlink {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::new(tmp.path().join("home"));
        sd.ensure().unwrap();
        let mode = fs::metadata(sd.root()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(sd.log_dir().is_dir() && sd.data_dir().is_dir());
    }

    #[test]
    fn refuses_symlinked_root() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = StateDir::new(&link).ensure().unwrap_err();
        assert!(matches!(err, StateDirError::Symlink { .. }), "{err}");
    }

    #[test]
    fn refuses_symlinked_files_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::new(tmp.path().join("h"));
        sd.ensure().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        fs::write(&elsewhere, "x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, sd.temporal_log()).unwrap();
        assert!(matches!(sd.ensure(), Err(StateDirError::Symlink { .. })));
    }

    #[test]
    fn refuses_what_others_can_write_and_repairs_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("h");
        fs::create_dir(&root).unwrap();
        // Readable by others is their business; it is left as it is.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::new(&root).ensure().unwrap();
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o755);
        fs::set_permissions(&root, fs::Permissions::from_mode(0o757)).unwrap();
        let err = StateDir::new(&root).ensure().unwrap_err();
        assert!(matches!(err, StateDirError::Untrusted { .. }), "{err}");
        assert_eq!(
            fs::metadata(&root).unwrap().mode() & 0o777,
            0o757,
            "not repaired"
        );
        let file = tmp.path().join("stigmer.toml");
        fs::write(&file, "").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o646)).unwrap();
        assert!(matches!(trusted(&file), Err(Untrusted::OthersWrite { .. })));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        trusted(&file).unwrap();
        let link = tmp.path().join("link.toml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(trusted(&link).is_err(), "a symlink is judged by its target");
    }
}
