//! Spawning Temporal: its own process group, a parent-death signal, and an
//! exit that arrives as an event.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not the process. Tokio's blocking-pool threads come and go, so every
//! spawn goes through one dedicated thread that lives as long as the daemon.
//! The exit is awaited on a pidfd (readable once the whole thread group is
//! gone), then reaped with `waitpid`: no timer, no polling.

use super::group::ExitStatus;
use super::identity::pidfd_open;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    /// Executable path (or a name looked up on PATH).
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<OsString>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Pipe stdout/stderr to us (for the log); else /dev/null.
    pub capture: bool,
}

type Job = (SpawnSpec, oneshot::Sender<io::Result<std::process::Child>>);

/// Handle to the spawner thread. Cloneable; the thread lives until every
/// handle is dropped.
#[derive(Clone, Debug)]
pub struct Spawner {
    tx: std::sync::mpsc::Sender<Job>,
}

impl Default for Spawner {
    fn default() -> Self {
        Self::new()
    }
}

impl Spawner {
    /// Start the long-lived spawner thread.
    pub fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("stigmer-spawner".into())
            .spawn(move || {
                for (spec, reply) in rx {
                    let _ = reply.send(spawn_now(&spec));
                }
            })
            .expect("spawn thread");
        Self { tx }
    }

    /// Spawn `spec` from the spawner thread; returns once the child exists.
    pub async fn spawn(&self, spec: SpawnSpec) -> io::Result<Spawned> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((spec, reply))
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        let mut child = rx
            .await
            .map_err(|_| io::Error::other("spawner thread dropped the request"))??;
        let pid = child.id() as i32;
        let pidfd = pidfd_open(pid)?;
        // SAFETY: we own `pidfd` and it lives exactly as long as the AsyncFd.
        let pidfd = unsafe { AsyncFd::register(pidfd) }.map_err(io::Error::from)?;
        Ok(Spawned {
            pid,
            spawned_at: Instant::now(),
            stdout: child.stdout.take().map(OwnedFd::from),
            stderr: child.stderr.take().map(OwnedFd::from),
            pidfd,
            exited: None,
        })
    }
}

fn spawn_now(spec: &SpawnSpec) -> io::Result<std::process::Child> {
    let parent = std::process::id() as i32;
    let mut cmd = Command::new(&spec.program);
    let out = || {
        if spec.capture {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out())
        .stderr(out())
        .process_group(0);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    // The service manager's protocol is the daemon's, not its children's.
    for var in crate::daemon::notify::VARIABLES {
        cmd.env_remove(var);
    }
    // Temporal (Go's os/user without cgo) fails at start without $USER;
    // containers and systemd units often have none.
    if std::env::var_os("USER").is_none() {
        let uid = nix::unistd::getuid();
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        cmd.env("USER", name);
    }
    // SAFETY: only async-signal-safe calls (prctl, getppid, raise) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// A running child we spawned and will reap.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid (also its process group id).
    pub pid: i32,
    /// When it was spawned.
    pub spawned_at: Instant,
    /// Its stdout pipe, until taken by the log pump.
    pub stdout: Option<OwnedFd>,
    /// Its stderr pipe, until taken by the log pump.
    pub stderr: Option<OwnedFd>,
    pidfd: AsyncFd<OwnedFd>,
    exited: Option<ExitStatus>,
}

impl Spawned {
    /// Process group id (we made the child a group leader).
    pub fn pgid(&self) -> i32 {
        self.pid
    }

    /// Await the child's exit and reap it. Cancel-safe; repeated calls
    /// return the same status.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(st) = self.exited {
            return Ok(st);
        }
        loop {
            let mut guard = self.pidfd.readable().await?;
            match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    return Ok(*self.exited.insert(ExitStatus::Code(code)));
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    return Ok(*self.exited.insert(ExitStatus::Signal(sig as i32)));
                }
                Ok(_) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The exit status if already reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_is_an_event_with_status() {
        let sp = Spawner::new();
        let mut c = sp
            .spawn(SpawnSpec {
                program: "sh".into(),
                args: vec!["-c".into(), "exit 7".into()],
                ..SpawnSpec::default()
            })
            .await
            .unwrap();
        assert_eq!(c.pgid(), c.pid);
        assert_eq!(c.wait().await.unwrap(), ExitStatus::Code(7));
        assert_eq!(c.wait().await.unwrap(), ExitStatus::Code(7));
    }

    #[tokio::test]
    async fn sees_kill_signal() {
        let sp = Spawner::new();
        let mut c = sp
            .spawn(SpawnSpec {
                program: "sleep".into(),
                args: vec!["30".into()],
                ..SpawnSpec::default()
            })
            .await
            .unwrap();
        nix::sys::signal::kill(Pid::from_raw(c.pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        assert_eq!(c.wait().await.unwrap(), ExitStatus::Signal(9));
    }
}
