//! Process logs: the daemon pumps each child's stdout/stderr into a
//! size-rotated file (`temporal.log` or `NAME.log`, `.1`, `.2`), and
//! `stigmer local logs` reads its tail and follows it across rotation.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// Default size at which the log rotates.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated generations kept.
const KEEP: u32 = 2;

/// Open a log file for appending: 0600, never through a symlink.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// An append-only file that rotates when it grows past `max_bytes`.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    file: File,
    size: u64,
}

impl RotatingLog {
    /// Open (or create) the log at `path`.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes,
            file,
            size,
        })
    }

    /// Append `bytes`, rotating first if they would overflow the file.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..KEEP).rev() {
            let _ = std::fs::rename(generation(&self.path, n), generation(&self.path, n + 1));
        }
        std::fs::rename(&self.path, generation(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn generation(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Called with each line a child writes (e.g. to spot a readiness line).
pub type OnLine = Box<dyn FnMut(&[u8]) + Send>;

/// A running copy of one pipe into the log (see [`pump`]).
pub struct Pump {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Option<OwnedFd>>,
}

impl Pump {
    /// Stop copying and give the pipe back (for the next daemon), with
    /// everything already read written to the log first; `None` when the
    /// pipe had already reached EOF.
    pub async fn hand_back(self) -> Option<OwnedFd> {
        let _ = self.stop.send(());
        self.task.await.ok().flatten()
    }
}

/// Copy lines from a child's pipe into the shared log until EOF, showing
/// each to `on_line` first.
pub fn pump(
    fd: OwnedFd,
    log: Arc<Mutex<RotatingLog>>,
    mut on_line: Option<OnLine>,
) -> io::Result<Pump> {
    let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let write = move |bytes: &[u8]| {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = log.write(bytes) {
            tracing::warn!(error = %e, "cannot write Temporal log");
        }
    };
    let task = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(rx);
        let mut buf = Vec::with_capacity(512);
        // A dropped Pump (its process is gone) just lets the copy finish.
        let mut can_stop = true;
        loop {
            tokio::select! {
                biased;
                asked = &mut stopped, if can_stop => {
                    if asked.is_err() {
                        can_stop = false;
                        continue;
                    }
                    // A line cut short by the stop is in `buf`, what was
                    // read past it in the reader's buffer: both go to the
                    // log now; the rest stays in the pipe for the next
                    // reader, so no byte is lost or written twice.
                    write(&buf);
                    write(lines.buffer());
                    return lines.into_inner().into_nonblocking_fd().ok();
                }
                read = lines.read_until(b'\n', &mut buf) => match read {
                    Ok(0) | Err(_) => {
                        write(&buf);
                        return None;
                    }
                    Ok(_) => {
                        if let Some(f) = on_line.as_mut() {
                            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                            f(line.strip_suffix(b"\r").unwrap_or(line));
                        }
                        // A last line without its end (EOF): the log stays
                        // line-oriented.
                        if !buf.ends_with(b"\n") {
                            buf.push(b'\n');
                        }
                        write(&buf);
                        buf.clear();
                    }
                },
            }
        }
    });
    Ok(Pump { stop, task })
}

/// The last `n` lines of the file at `path` (empty if absent).
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // Read backwards in chunks until we have n newlines.
    let len = f.metadata()?.len();
    let mut start = len;
    let mut chunk = Vec::new();
    const STEP: u64 = 64 * 1024;
    while start > 0 && chunk.iter().filter(|&&b| b == b'\n').count() <= n {
        let from = start.saturating_sub(STEP);
        let mut buf = vec![0; (start - from) as usize];
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&chunk);
        chunk = buf;
        start = from;
    }
    let text = String::from_utf8_lossy(&chunk);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    Ok(lines[lines.len().saturating_sub(n)..].to_vec())
}

/// Print new lines appended to `path` forever (until the writer `out`
/// fails), reopening the file when it is rotated or recreated.
pub fn follow(path: &Path, out: &mut impl Write) -> io::Result<()> {
    let open = || File::open(path).map(io::BufReader::new);
    let mut reader = loop {
        match open() {
            Ok(mut r) => {
                r.seek(SeekFrom::End(0))?;
                break r;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => return Err(e),
        }
    };
    let mut ino = reader.get_ref().metadata()?.ino();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? > 0 {
            out.write_all(line.as_bytes())?;
            continue;
        }
        out.flush()?;
        // At EOF: rotated away? Then drain nothing more here and reopen.
        match std::fs::metadata(path) {
            Ok(m) if m.ino() != ino => {
                if let Ok(r) = open() {
                    ino = r.get_ref().metadata()?.ino();
                    reader = r;
                    continue;
                }
            }
            _ => {}
        }
        // A log tail has no kernel event worth the complexity here; 200 ms
        // is what `tail -F` does too.
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_tails() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("t.log");
        let mut log = RotatingLog::open(&p, 100).unwrap();
        for i in 0..30 {
            log.write(format!("line {i:02}\n").as_bytes()).unwrap();
        }
        assert!(generation(&p, 1).exists() && generation(&p, 2).exists());
        assert!(!generation(&p, 3).exists());
        assert!(std::fs::metadata(&p).unwrap().len() <= 100);
        let last = tail(&p, 2).unwrap();
        assert_eq!(last, vec!["line 28".to_string(), "line 29".to_string()]);
    }

    #[test]
    fn tail_of_missing_file_is_empty_and_of_short_file_is_all() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(tail(&tmp.path().join("nope"), 5).unwrap().is_empty());
        let p = tmp.path().join("s");
        std::fs::write(&p, "a\nb\n").unwrap();
        assert_eq!(tail(&p, 10).unwrap(), vec!["a", "b"]);
    }

    #[tokio::test]
    async fn pump_shows_each_line_without_its_end_of_line() {
        let tmp = tempfile::tempdir().unwrap();
        let log = Arc::new(Mutex::new(
            RotatingLog::open(&tmp.path().join("l"), 1 << 20).unwrap(),
        ));
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let s = seen.clone();
        let pump = pump(
            rx,
            log,
            Some(Box::new(move |line: &[u8]| {
                s.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(line).into_owned())
            })),
        )
        .unwrap();
        let mut w = std::fs::File::from(tx);
        w.write_all(b"ready\r\nnext\nlast").unwrap();
        drop(w);
        pump.task.await.unwrap();
        let lines = seen.lock().unwrap().clone();
        assert_eq!(lines, ["ready", "next", "last"]);
        let re = regex::Regex::new("^ready$").unwrap();
        assert!(
            re.is_match(&lines[0]),
            "anchored patterns match a whole line"
        );
    }

    #[tokio::test]
    async fn a_handed_back_pipe_loses_and_repeats_nothing() {
        use std::io::Read;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("l");
        let log = Arc::new(Mutex::new(RotatingLog::open(&path, 1 << 20).unwrap()));
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let p = pump(
            rx,
            log,
            Some(Box::new(move |line: &[u8]| {
                let _ = seen_tx.send(line.to_vec());
            })),
        )
        .unwrap();
        let mut w = std::fs::File::from(tx);
        w.write_all(b"a\nb\npartial").unwrap();
        assert_eq!(seen.recv().await.unwrap(), b"a");
        assert_eq!(seen.recv().await.unwrap(), b"b");
        let fd = p.hand_back().await.expect("the pipe comes back");
        w.write_all(b"-rest\n").unwrap();
        drop(w);
        let mut rest = Vec::new();
        let mut r = std::fs::File::from(fd);
        crate::process::spawn::close_on_exec(&r).unwrap();
        // The fd came back non-blocking; the writer is closed, so read to EOF.
        loop {
            let mut chunk = [0u8; 64];
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tokio::task::yield_now().await,
                Err(e) => panic!("{e}"),
            }
        }
        let mut logged = std::fs::read(&path).unwrap();
        logged.extend_from_slice(&rest);
        assert_eq!(logged, b"a\nb\npartial-rest\n");
    }

    #[test]
    fn refuses_symlinked_log() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let p = tmp.path().join("t.log");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(RotatingLog::open(&p, 100).is_err());
    }
}
