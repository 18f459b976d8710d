//! Spawning supervised processes: each in its own process group, with a
//! parent-death signal, and an exit that arrives as an event.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not the process, and `execve` ends every thread but the one calling
//! it. So every spawn goes through one thread that lives as long as the
//! daemon: the daemon's main thread ([`Spawner::on_this_thread`]), which
//! is also the one that execs a new daemon binary on an upgrade
//! ([`Spawner::exec`]): the children's parent thread survives the exec,
//! and the signal never fires. The exit is awaited on a pidfd (readable
//! once the whole thread group is gone), then reaped with `waitpid`: no
//! timer, no polling.

use super::identity::pidfd_open;
use crate::model::ExitStatus;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
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
    /// Inherited variables to leave out.
    pub env_remove: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Pipe stdout/stderr to us (for the log); else /dev/null.
    pub capture: bool,
}

/// The program an exec runs.
#[derive(Debug)]
pub enum Program {
    /// By path (`execve`).
    Path(CString),
    /// By an open fd (`fexecve`): the file that was opened is the one
    /// that runs, even if its path was replaced or removed since.
    Fd(OwnedFd),
}

/// Replace this process's program (see [`Spawner::exec`]).
#[derive(Debug)]
pub struct ExecSpec {
    /// What to run.
    pub program: Program,
    /// `argv`, the program name first.
    pub argv: Vec<CString>,
    /// The whole environment, `KEY=value`.
    pub env: Vec<CString>,
    /// Unblock the daemon's signals first (see [`super::signals`]): the
    /// program takes them with handlers instead.
    pub unblock_signals: bool,
}

enum Job {
    Spawn(SpawnSpec, oneshot::Sender<io::Result<std::process::Child>>),
    Exec(ExecSpec, oneshot::Sender<io::Error>),
    Quit,
}

/// Handle to the spawning thread. Cloneable.
#[derive(Clone, Debug)]
pub struct Spawner {
    tx: std::sync::mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Spawn(..) => "Spawn",
            Job::Exec(..) => "Exec",
            Job::Quit => "Quit",
        })
    }
}

/// The loop that serves a [`Spawner`] on the thread that runs it.
pub struct SpawnLoop {
    rx: std::sync::mpsc::Receiver<Job>,
}

impl SpawnLoop {
    /// Serve spawn and exec requests until [`Spawner::quit`] or every
    /// handle is gone. Returns only then (an exec that succeeds never
    /// returns).
    pub fn run(self) {
        for job in self.rx {
            match job {
                Job::Spawn(spec, reply) => {
                    let _ = reply.send(spawn_now(&spec));
                }
                Job::Exec(spec, reply) => {
                    let _ = reply.send(exec_now(&spec));
                }
                Job::Quit => return,
            }
        }
    }
}

impl Default for Spawner {
    fn default() -> Self {
        Self::new()
    }
}

impl Spawner {
    /// A spawner served by a new long-lived thread (tests, tools).
    pub fn new() -> Self {
        let (spawner, spawn_loop) = Self::on_this_thread();
        std::thread::Builder::new()
            .name("stigmer-spawner".into())
            .spawn(move || spawn_loop.run())
            .expect("spawn thread");
        spawner
    }

    /// A spawner whose loop the caller runs on its own thread (the
    /// daemon's main thread): see the module documentation.
    pub fn on_this_thread() -> (Spawner, SpawnLoop) {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        (Spawner { tx }, SpawnLoop { rx })
    }

    /// End the loop (the daemon is done).
    pub fn quit(&self) {
        let _ = self.tx.send(Job::Quit);
    }

    /// Replace the whole process's program with `spec` from the spawning
    /// thread. Returns only if the exec failed, with why.
    pub async fn exec(&self, spec: ExecSpec) -> io::Error {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Job::Exec(spec, reply)).is_err() {
            return io::Error::other("spawner thread is gone");
        }
        rx.await
            .unwrap_or_else(|_| io::Error::other("spawner thread dropped the request"))
    }

    /// Spawn `spec` from the spawning thread; returns once the child exists.
    pub async fn spawn(&self, spec: SpawnSpec) -> io::Result<Spawned> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Spawn(spec, reply))
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        let mut child = rx
            .await
            .map_err(|_| io::Error::other("spawner thread dropped the request"))??;
        let pid = child.id() as i32;
        let mut spawned = Spawned::adopt(pid, Instant::now())?;
        spawned.stdout = child.stdout.take().map(OwnedFd::from);
        spawned.stderr = child.stderr.take().map(OwnedFd::from);
        Ok(spawned)
    }
}

/// A new close-on-exec fd on what `fd` is: something adopted from a
/// handover is adopted as a duplicate, so the original stays for a
/// hand-back until the adoption is complete.
pub fn dup_cloexec(fd: std::os::fd::RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on an fd the caller holds open makes a new
    // one that we own.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(new) })
}

/// `execve` (or `fexecve`) `spec` from the calling thread; returns only on
/// failure. The calling thread must be the one that spawned the children
/// (see the module documentation), e.g. the main thread before the
/// [`Spawner`] loop runs.
pub fn exec_now(spec: &ExecSpec) -> io::Error {
    if spec.unblock_signals
        && let Err(e) = super::signals::unblock()
    {
        return e;
    }
    let result = match &spec.program {
        Program::Path(path) => nix::unistd::execve(path, &spec.argv, &spec.env),
        Program::Fd(fd) => nix::unistd::fexecve(fd, &spec.argv, &spec.env),
    };
    let Err(e) = result;
    // Still this program, which reads them from its signalfd.
    if spec.unblock_signals {
        let _ = super::signals::block();
    }
    e.into()
}

/// Let `fd` survive an exec (clear close-on-exec).
pub fn keep_across_exec(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller holds open.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Close `fd` on exec again (after adopting it).
pub fn close_on_exec(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller holds open.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
    for var in &spec.env_remove {
        cmd.env_remove(var);
    }
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
    for var in crate::model::SYSTEMD_VARIABLES {
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
    // SAFETY: only async-signal-safe calls (sigemptyset, pthread_sigmask,
    // prctl, getppid, raise) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The daemon blocks its own signals (see `signals`); a child
            // would inherit that mask across exec, and never see a stop
            // signal. It starts with none blocked.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
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
    /// A child of this process, spawned at `spawned_at` (by this daemon or
    /// by the one it took over from): its exit is watched on a new pidfd.
    /// Its output pipes, if any, are set by the caller.
    pub fn adopt(pid: i32, spawned_at: Instant) -> io::Result<Spawned> {
        let pidfd = pidfd_open(pid)?;
        // SAFETY: we own `pidfd` and it lives exactly as long as the AsyncFd.
        let pidfd = unsafe { AsyncFd::register(pidfd) }.map_err(io::Error::from)?;
        Ok(Spawned {
            pid,
            spawned_at,
            stdout: None,
            stderr: None,
            pidfd,
            exited: None,
        })
    }

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
