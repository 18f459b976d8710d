//! The copy of one child pipe into its unit's log: read what is there (up
//! to [`CHUNK`] at a time), cap line length, show complete lines to a
//! watcher (a readiness pattern) while one is set, and queue the bytes
//! for the disk thread, which applies back-pressure or drops and counts
//! (see [`crate::disk`]). Memory stays bounded whatever the child
//! writes: a chunk, one line of at most [`MAX_LINE`] for the watcher,
//! and the stream's bounded queue.

use crate::disk::LogStream;
use std::borrow::Cow;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Longest line written as one: a longer one is written in pieces of
/// this size, each ending in a newline, so nothing downstream (the
/// readiness watcher, `logs`, the interleaved log) holds more.
pub const MAX_LINE: usize = 64 * 1024;
/// Largest read from a pipe: reads start at [`MIN_READ`] and grow while
/// they come back full (a flood), shrink while they come back small (a
/// quiet process holds next to no memory).
pub const CHUNK: usize = 512 * 1024;
/// Smallest read.
const MIN_READ: usize = 4 * 1024;
/// Reads this large mean a flood (see [`FLOOD_PAUSE`]).
const FLOOD: usize = 64 * 1024;
/// In a flood, the longest wait after a short read before reading again
/// (see [`pause_for`]).
const FLOOD_PAUSE: Duration = Duration::from_millis(1);
/// The pipe's buffer: a flooding child blocks less often, and each read
/// takes more at once (Linux's limit for an unprivileged process).
const PIPE_SIZE: libc::c_int = 1 << 20;

/// How long to let a flooding child write before reading again: the
/// time it takes, at the rate it just wrote (`n` bytes in `took`), to
/// write `fill` bytes (half the pipe), at most [`FLOOD_PAUSE`]. A fixed
/// pause either wakes too often for a slow flood or, for a fast one,
/// lets the pipe fill and blocks the child (measured: a child writing
/// 900 MiB/s fills a 1 MiB pipe in 1.1 ms).
fn pause_for(n: usize, took: Duration, fill: usize) -> Duration {
    if n == 0 {
        return FLOOD_PAUSE;
    }
    took.mul_f64(fill as f64 / n as f64).min(FLOOD_PAUSE)
}

/// Shown each complete line (without its end of line, at most
/// [`MAX_LINE`] bytes) until it returns false.
pub type OnLine = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// A running copy of one pipe into the log (see [`pump`]).
pub struct Pump {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Option<OwnedFd>>,
}

impl Pump {
    /// Stop copying and give the pipe back (for the next daemon): what
    /// was read is queued for the log (sync the disk to have it
    /// written), the rest stays in the pipe. `None` when the pipe had
    /// already reached EOF.
    pub async fn hand_back(self) -> Option<OwnedFd> {
        let _ = self.stop.send(());
        self.task.await.ok().flatten()
    }

    /// Wait for the copy to end (the pipe reached EOF).
    #[cfg(test)]
    pub async fn finished(self) {
        let _ = self.task.await;
    }
}

/// Copy the pipe `fd` into `log` until EOF, on the runtime `rt`, showing
/// lines to `on_line` while it wants them.
pub fn pump(
    rt: &tokio::runtime::Handle,
    fd: OwnedFd,
    stream: crate::disk::Stream,
    log: LogStream,
    on_line: Option<OnLine>,
) -> io::Result<Pump> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: fcntl on the pipe we own; a refusal leaves the default
    // (the user's pipe quota, or a lower fs.pipe-max-size), so the size
    // the pipe really has is read back.
    let pipe_size = unsafe {
        libc::fcntl(raw, libc::F_SETPIPE_SZ, PIPE_SIZE);
        libc::fcntl(raw, libc::F_GETPIPE_SZ)
    };
    // A flood's pause lets the child fill half the pipe, no more: it
    // never blocks on a full pipe because we slept.
    let fill = usize::try_from(pipe_size)
        .unwrap_or(0)
        .clamp(MIN_READ, CHUNK * 2)
        / 2;
    // Registered with the reactor of the runtime that reads it.
    let rx = {
        let _enter = rt.enter();
        tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?
    };
    let task = rt.spawn(async move {
        let mut rx = rx;
        let mut want = MIN_READ;
        let mut lines = Lines::new(on_line);
        // A dropped Pump (its process is gone) just lets the copy finish.
        let mut can_stop = true;
        let mut last_read = Instant::now();
        loop {
            // Read into a buffer of its own, which goes to the disk thread
            // as it is (no copy) unless a line had to be capped.
            let mut buf = Vec::with_capacity(want);
            tokio::select! {
                biased;
                asked = &mut stopped, if can_stop => {
                    if asked.is_err() {
                        can_stop = false;
                        continue;
                    }
                    // Everything read is queued already: the rest stays in
                    // the pipe for the next reader, so no byte is lost or
                    // written twice.
                    return rx.into_nonblocking_fd().ok();
                }
                read = rx.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => {
                        // A last line without its end: the log stays
                        // line-oriented.
                        if lines.open() {
                            log.write_from(stream, b"\n".to_vec()).await;
                        }
                        return None;
                    }
                    Ok(n) => {
                        let now = Instant::now();
                        let took = now - last_read;
                        last_read = now;
                        // In a flood (reads grew past FLOOD) a short read
                        // means the child is between writes: give it a
                        // moment to fill the pipe rather than waking for
                        // every few KiB it writes (two thread switches
                        // and a disk job each). Logs of a flood arrive up
                        // to a few ms later; a quiet child is read at once.
                        let pause = want >= FLOOD && n < want;
                        want = if n >= want {
                            (want * 4).min(CHUNK)
                        } else if n < want / 8 {
                            (want / 2).max(MIN_READ)
                        } else {
                            want
                        };
                        let capped = match lines.feed(&buf) {
                            Cow::Borrowed(_) => None,
                            Cow::Owned(v) => Some(v),
                        };
                        log.write_from(stream, capped.unwrap_or(buf)).await;
                        if pause {
                            // The pumps' own thread sleeps, on purpose: an
                            // async timer would leave the thread in
                            // epoll, woken by every write of the child
                            // (measured: ~9,000 wake-ups a second), which
                            // is the cost this pause is for. The other
                            // pumps wait too; their pipes hold 1 MiB.
                            std::thread::sleep(pause_for(n, took, fill));
                        }
                    }
                },
            }
        }
    });
    Ok(Pump { stop, task })
}

/// Line bookkeeping of one pipe: how long the current line is, and the
/// watcher's view of complete lines.
struct Lines {
    /// Bytes of the current (unfinished) line already passed on.
    len: usize,
    watcher: Option<(OnLine, Vec<u8>)>,
}

impl Lines {
    fn new(on_line: Option<OnLine>) -> Lines {
        Lines {
            len: 0,
            watcher: on_line.map(|f| (f, Vec::new())),
        }
    }

    /// Is a line unfinished?
    fn open(&self) -> bool {
        self.len > 0
    }

    /// The bytes to log for `chunk`: itself, unless a line would grow
    /// past [`MAX_LINE`], in which case a newline is put at the cap.
    fn feed<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]> {
        let out = self.cap(chunk);
        if let Some((f, line)) = &mut self.watcher {
            let done = !watch(f, line, &out);
            if done {
                self.watcher = None;
            }
        }
        out
    }

    fn cap<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]> {
        let before = self.len;
        let first = memchr::memchr(b'\n', chunk).unwrap_or(chunk.len());
        if before + first <= MAX_LINE {
            // The common case: the chunk as read. Lines after its first
            // newline are no longer than a chunk, hence than the cap.
            let after = match memchr::memrchr(b'\n', chunk) {
                Some(last) => chunk.len() - last - 1,
                None => before + chunk.len(),
            };
            if after <= MAX_LINE {
                self.len = after;
                return Cow::Borrowed(chunk);
            }
        }
        let mut out = Vec::with_capacity(chunk.len() + chunk.len() / MAX_LINE + 1);
        let mut len = before;
        for &b in chunk {
            if b != b'\n' && len == MAX_LINE {
                out.push(b'\n');
                len = 0;
            }
            out.push(b);
            len = if b == b'\n' { 0 } else { len + 1 };
        }
        self.len = len;
        Cow::Owned(out)
    }
}

/// Show `f` every complete line of `out` (with `line` holding the
/// unfinished one, at most [`MAX_LINE`]); false once `f` is done.
fn watch(f: &mut OnLine, line: &mut Vec<u8>, out: &[u8]) -> bool {
    for piece in out.split_inclusive(|&b| b == b'\n') {
        let (body, ended) = match piece.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (piece, false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&body[..body.len().min(room)]);
        if ended {
            let l = line.strip_suffix(b"\r").unwrap_or(line);
            if !f(l) {
                return false;
            }
            line.clear();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_pauses_until_half_the_pipe_would_be_full() {
        let half = 512 * 1024;
        // 128 KiB in 125 µs (about 1 GiB/s): 512 KiB take 500 µs.
        let p = pause_for(128 * 1024, Duration::from_micros(125), half);
        assert_eq!(p, Duration::from_micros(500));
        // A slower flood waits longer, but never past FLOOD_PAUSE.
        assert_eq!(
            pause_for(64 * 1024, Duration::from_millis(1), half),
            FLOOD_PAUSE
        );
        // A small pipe (the quota refused 1 MiB) means a short pause.
        assert_eq!(
            pause_for(128 * 1024, Duration::from_micros(125), 32 * 1024),
            Duration::from_nanos(31_250)
        );
        assert_eq!(pause_for(0, Duration::ZERO, half), FLOOD_PAUSE);
    }
}
