//! The daemon's own signals (SIGTERM, SIGINT: stop; SIGHUP: reload),
//! blocked in every thread for the daemon's whole life and read from a
//! signalfd, never taken by a handler.
//!
//! Why not handlers: an upgrade execs a new binary in place, and `execve`
//! resets every handler to its default action (for these three: end the
//! process, and with it every child through their parent-death signal).
//! A blocked signal, by contrast, stays blocked across `execve` and one
//! that arrives meanwhile stays pending: the new image reads it from its
//! own signalfd once it supervises, exactly once (a standard signal is
//! pending at most once, so a flood of SIGHUPs is one reload). Blocked
//! before the daemon's first thread exists, so every thread inherits the
//! mask; children get a clean mask (the spawner resets it between fork
//! and exec: the standard library does not).

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io;
use tokio::io::unix::AsyncFd;

/// The signals the daemon acts on.
pub const DAEMON: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

fn set() -> SigSet {
    let mut s = SigSet::empty();
    for sig in DAEMON {
        s.add(sig);
    }
    s
}

/// Block the daemon's signals in the calling thread (and so in every
/// thread it starts from now on). Returns whether they were blocked
/// already: inherited across an exec from a daemon that blocks them too.
pub fn block() -> io::Result<bool> {
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set()), Some(&mut old))?;
    Ok(DAEMON.iter().all(|s| old.contains(*s)))
}

/// Unblock them in the calling thread: before an exec of a binary that
/// takes them with handlers (an older release), which would otherwise
/// never see them. One pending now is delivered at once.
pub fn unblock() -> io::Result<()> {
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set()), None)?;
    Ok(())
}

/// The daemon's signals, read as they come (they must be blocked).
pub struct Signals {
    fd: AsyncFd<SignalFd>,
}

impl Signals {
    /// Read them from now on, on the current tokio runtime.
    pub fn install() -> io::Result<Signals> {
        let fd = SignalFd::with_flags(&set(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        // SAFETY: we own `fd`, and it lives exactly as long as the AsyncFd.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Signals { fd })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> io::Result<Signal> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            match guard.get_inner_mut().read_signal() {
                Ok(Some(info)) => {
                    if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                        return Ok(sig);
                    }
                }
                Ok(None) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blocked signal sent to the process waits in the kernel until the
    /// signalfd reads it, once.
    #[test]
    fn a_blocked_signal_waits_and_is_read_once() {
        let t = std::thread::spawn(|| {
            block().unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut s = Signals::install().unwrap();
                // Thread-directed: only this thread blocks it in a test
                // process with other threads.
                for _ in 0..3 {
                    // SAFETY: signalling this very thread, which blocks it.
                    assert_eq!(
                        unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGHUP) },
                        0
                    );
                }
                let got = tokio::time::timeout(std::time::Duration::from_secs(5), s.recv())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got, Signal::SIGHUP);
                // Pending at most once: the other two were one.
                let more =
                    tokio::time::timeout(std::time::Duration::from_millis(50), s.recv()).await;
                assert!(more.is_err(), "{more:?}");
            });
        });
        t.join().unwrap();
    }
}
