//! Blocking file work, off every event loop: one writer thread ("disk")
//! that owns the daemon's open log files and writes, rotates, reopens and
//! replaces files, fed through a queue that is bounded per log stream.
//!
//! Why a thread: a write to a stalled disk (NFS, FUSE, `fsfreeze`, a full
//! filesystem that blocks) blocks the caller in the kernel. Done on the
//! supervisor's loop, that freezes restarts and probes while everything
//! still looks alive. Here, only this thread waits.
//!
//! What a log stream promises its reader (the pump of a child's pipe):
//! - **back-pressure, not loss**: while the disk keeps up, a writer that
//!   is faster than the disk waits for room in its stream's queue
//!   ([`QUEUE_BYTES`]), so the child blocks on its pipe and nothing is
//!   lost;
//! - **drop and count, never block forever**: when the disk has not
//!   accepted a write for [`STALL_BOUND`], or the file cannot be written
//!   at all (a directory or symlink in its place, no space, read-only),
//!   output is dropped and counted in [`LogStats`], and the pipe keeps
//!   being drained: a log failure never reaches the child;
//! - **it comes back by itself**: a log that cannot be written is opened
//!   again (never through a symlink) at most every [`RETRY_EVERY`], and a
//!   path that no longer names the open file (deleted, renamed away,
//!   replaced) is noticed within [`RETRY_EVERY`] and reopened.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long the disk may take to accept a write before a full queue
/// drops output instead of waiting.
pub const STALL_BOUND: Duration = Duration::from_secs(2);
/// Bytes one log stream may have queued; a faster writer waits.
pub const QUEUE_BYTES: usize = 1 << 20;
/// How often a log that cannot be written is tried again, a failed file
/// replacement retried, and a log's path checked against its open file.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Rotated generations kept beside a log (`NAME.log.1`, `NAME.log.2`).
pub const KEEP: u32 = 2;

/// Open a log file for appending: 0600, never through a symlink.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The capture-time index beside the log at `path` (`NAME.log.idx`):
/// records of [`INDEX_RECORD`] bytes, `offset` then `stamp` (both u64,
/// little-endian), saying that the log's bytes from `offset` on were read
/// from the process at `stamp / 2` (Unix ms), from its stdout (`stamp` even)
/// or stderr (odd). One record per write whose stamp differs from the
/// last: the log itself stays the process's plain output.
pub fn index_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".idx");
    PathBuf::from(s)
}

/// Bytes of one index record.
pub const INDEX_RECORD: usize = 16;

/// Which pipe a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The process's stdout.
    Stdout,
    /// Its stderr.
    Stderr,
}

/// A chunk's capture time and pipe, as the index stores it.
pub fn stamp(unix_ms: u64, stream: Stream) -> u64 {
    unix_ms * 2 + u64::from(stream == Stream::Stderr)
}

/// The path of rotated generation `n` of the log at `path`.
pub fn generation(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Make room for a new generation 1 of the log at `path` (and, with
/// `indexed`, of its capture-time index): the oldest generation is
/// removed, the others move up by one. Removed first, not renamed over:
/// ext4 flushes a file renamed over another one at once (its
/// `auto_da_alloc` guard for replace-by-rename), which made every
/// rotation of a flooding log wait for a writeback of the previous
/// generation.
pub fn shift_generations(path: &Path, indexed: bool) {
    let _ = std::fs::remove_file(generation(path, KEEP));
    if indexed {
        let _ = std::fs::remove_file(index_path(&generation(path, KEEP)));
    }
    for n in (1..KEEP).rev() {
        let _ = std::fs::rename(generation(path, n), generation(path, n + 1));
        if indexed {
            let _ = std::fs::rename(
                index_path(&generation(path, n)),
                index_path(&generation(path, n + 1)),
            );
        }
    }
}

/// Write `bytes` to `path` atomically (temp file + rename, 0600, never
/// through a symlink): a reader sees the old file or the new one, and a
/// failure leaves nothing half-written behind.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let _ = std::fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a log stream has written and lost, and why it is losing output
/// now, if it is.
#[derive(Debug, Default)]
pub struct LogStats {
    written: AtomicU64,
    dropped: AtomicU64,
    problem: Mutex<Option<String>>,
}

impl LogStats {
    /// Bytes written to the log.
    pub fn written_bytes(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Bytes of output dropped because the log could not take them.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Why output is being dropped now; `None` once writes succeed again.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn dropped(&self, n: usize, why: impl Into<String>) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        let why = why.into();
        let mut p = self.problem.lock().unwrap_or_else(|p| p.into_inner());
        if p.as_deref() != Some(why.as_str()) {
            tracing::warn!(problem = %why, "log output dropped");
            *p = Some(why);
        }
    }

    fn wrote(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        let mut p = self.problem.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = p.take() {
            tracing::info!(was = %why, "log writable again");
        }
    }
}

/// Where a replacement reports that it is written: its version is
/// stored (the highest wins).
type Done = (Arc<AtomicU64>, u64);

enum Job {
    Open {
        id: u64,
        path: PathBuf,
        max_bytes: u64,
        stats: Arc<LogStats>,
    },
    Write {
        id: u64,
        bytes: Vec<u8>,
        stamp: u64,
        _room: OwnedSemaphorePermit,
    },
    Close {
        id: u64,
    },
    Replace {
        path: PathBuf,
        bytes: Vec<u8>,
        done: Option<Done>,
    },
    Remove {
        path: PathBuf,
    },
    Sync(tokio::sync::oneshot::Sender<()>),
}

/// What the writer thread shares with its callers.
#[derive(Debug)]
struct Shared {
    /// Jobs sent and not yet done.
    pending: AtomicUsize,
    /// When the thread last finished a job or found its queue empty
    /// (milliseconds since `epoch`).
    progress_ms: AtomicU64,
    epoch: Instant,
    next_id: AtomicU64,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// A handle to the writer thread. Cloneable; the thread ends when the
/// last handle is gone.
#[derive(Clone, Debug)]
pub struct Disk {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl Disk {
    /// Start the writer thread.
    pub fn start() -> io::Result<Disk> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            pending: AtomicUsize::new(0),
            progress_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("stigmer-disk".into())
            .spawn(move || Writer::new(s).run(rx))?;
        Ok(Disk { tx, shared })
    }

    fn send(&self, job: Job) {
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(job).is_err() {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Has the thread had work and made no progress for [`STALL_BOUND`]?
    pub fn stalled(&self) -> bool {
        let s = &self.shared;
        s.pending.load(Ordering::Acquire) > 0
            && s.now_ms()
                .saturating_sub(s.progress_ms.load(Ordering::Acquire))
                > STALL_BOUND.as_millis() as u64
    }

    /// A stream into the size-rotated log at `path` (opened on the
    /// thread; a failure to open shows in its [`LogStats`]).
    pub fn open_log(&self, path: &Path, max_bytes: u64) -> LogStream {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(LogStats::default());
        self.send(Job::Open {
            id,
            path: path.to_path_buf(),
            max_bytes,
            stats: stats.clone(),
        });
        LogStream(Arc::new(StreamInner {
            id,
            disk: self.clone(),
            room: Arc::new(Semaphore::new(QUEUE_BYTES)),
            stats,
        }))
    }

    /// Replace the file at `path` with `bytes` atomically ([`replace`]),
    /// then store `version` in `written` once the file holds them. A
    /// failure is logged and retried every [`RETRY_EVERY`] until it
    /// succeeds or a newer replacement or removal of the path comes.
    pub fn replace_then(&self, path: &Path, bytes: Vec<u8>, written: Arc<AtomicU64>, version: u64) {
        self.send(Job::Replace {
            path: path.to_path_buf(),
            bytes,
            done: Some((written, version)),
        });
    }

    /// Remove the file at `path` (after every job sent before).
    pub fn remove(&self, path: &Path) {
        self.send(Job::Remove {
            path: path.to_path_buf(),
        });
    }

    /// Wait until every job sent before this call is done, at most
    /// `timeout`; false when the disk did not get there in time.
    pub async fn sync(&self, timeout: Duration) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Sync(tx));
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(())))
    }
}

struct StreamInner {
    id: u64,
    disk: Disk,
    room: Arc<Semaphore>,
    stats: Arc<LogStats>,
}

impl Drop for StreamInner {
    fn drop(&mut self) {
        self.disk.send(Job::Close { id: self.id });
    }
}

/// One log file's stream of output (a unit's stdout and stderr share
/// one). Cloneable; the file is closed when the last clone is gone.
#[derive(Clone)]
pub struct LogStream(Arc<StreamInner>);

impl LogStream {
    /// Its written and dropped bytes.
    pub fn stats(&self) -> Arc<LogStats> {
        self.0.stats.clone()
    }

    /// Queue `bytes` for the log: waits while the stream's queue is full
    /// and the disk makes progress; drops and counts them when the disk
    /// has stalled for [`STALL_BOUND`].
    pub async fn write(&self, bytes: Vec<u8>) {
        self.write_from(Stream::Stdout, bytes).await;
    }

    /// [`LogStream::write`], noting that `bytes` came from `stream` now
    /// (the capture-time index, [`index_path`]).
    pub async fn write_from(&self, stream: Stream, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let stamp = stamp(crate::model::clock::unix_now_ms(), stream);
        let s = &self.0;
        let need = bytes.len().clamp(1, QUEUE_BYTES) as u32;
        loop {
            let wait = s.room.clone().acquire_many_owned(need);
            match tokio::time::timeout(Duration::from_millis(100), wait).await {
                Ok(Ok(room)) => {
                    s.disk.send(Job::Write {
                        id: s.id,
                        bytes,
                        stamp,
                        _room: room,
                    });
                    return;
                }
                Ok(Err(_)) => return,
                Err(_) if s.disk.stalled() => {
                    let secs = STALL_BOUND.as_secs();
                    s.stats.dropped(
                        bytes.len(),
                        format!("the disk has not accepted a write for over {secs} s"),
                    );
                    return;
                }
                Err(_) => {}
            }
        }
    }
}

/// What was being done to a log when it failed.
#[derive(Debug, Clone, Copy)]
enum LogOp {
    Open,
    Write,
    Rotate,
}

/// Why a log could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {} {}: {}", match .op { LogOp::Open => "open", LogOp::Write => "write", LogOp::Rotate => "rotate" }, .path.display(), symlink_or(.source))]
struct LogError {
    op: LogOp,
    path: PathBuf,
    source: io::Error,
}

/// An open through a symlink (`O_NOFOLLOW`) fails with ELOOP: say what
/// that means.
fn symlink_or(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ELOOP) {
        "it is a symlink (never followed)".to_string()
    } else {
        e.to_string()
    }
}

/// One open log on the writer thread.
struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    stats: Arc<LogStats>,
    /// The open file, its size, and its (device, inode); `None` while it
    /// cannot be written.
    file: Option<(File, u64, (u64, u64))>,
    /// When to open it again (while `file` is `None`), or check that the
    /// path still names it.
    next_check: Instant,
    /// Its capture-time index, and the last stamp recorded there.
    index: Option<(File, u64)>,
}

impl LogFile {
    fn new(path: PathBuf, max_bytes: u64, stats: Arc<LogStats>) -> LogFile {
        let mut log = LogFile {
            path,
            max_bytes,
            stats,
            file: None,
            next_check: Instant::now(),
            index: None,
        };
        if let Some(why) = log.reopen() {
            log.stats.dropped(0, why.to_string());
        }
        log
    }

    /// (Re)open the file at its path; on failure, say why.
    fn reopen(&mut self) -> Option<LogError> {
        self.next_check = Instant::now() + RETRY_EVERY;
        self.file = None;
        let opened = open_append(&self.path).and_then(|f| {
            let m = f.metadata()?;
            if !m.is_file() {
                return Err(io::Error::other("not a regular file"));
            }
            Ok((f, m.len(), (m.dev(), m.ino())))
        });
        match opened {
            Ok(f) => {
                // A new (empty) log starts a new index; the index is
                // best effort: without it, lines just have no time.
                let fresh = f.1 == 0;
                self.index = open_append(&index_path(&self.path))
                    .and_then(|i| {
                        if fresh {
                            i.set_len(0)?;
                        }
                        Ok(i)
                    })
                    .ok()
                    .map(|i| (i, 0));
                self.file = Some(f);
                None
            }
            Err(e) => Some(self.why(LogOp::Open, e)),
        }
    }

    /// Note in the index that the bytes from `offset` on came at `stamp`.
    fn stamp(&mut self, offset: u64, stamp: u64) {
        let Some((index, last)) = &mut self.index else {
            return;
        };
        if *last == stamp {
            return;
        }
        let mut rec = [0u8; INDEX_RECORD];
        rec[..8].copy_from_slice(&offset.to_le_bytes());
        rec[8..].copy_from_slice(&stamp.to_le_bytes());
        if index.write_all(&rec).is_err() {
            self.index = None;
            return;
        }
        *last = stamp;
    }

    fn why(&self, op: LogOp, source: io::Error) -> LogError {
        LogError {
            op,
            path: self.path.clone(),
            source,
        }
    }

    /// Does the path still name the open file? (A log deleted, renamed
    /// away or replaced by a directory is written nowhere anyone reads.)
    fn still_named(&self) -> bool {
        let Some((_, _, id)) = &self.file else {
            return false;
        };
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == *id)
    }

    fn write(&mut self, bytes: &[u8], stamp: u64) {
        let now = Instant::now();
        if now >= self.next_check {
            self.next_check = now + RETRY_EVERY;
            if !self.still_named()
                && let Some(why) = self.reopen()
            {
                return self.stats.dropped(bytes.len(), why.to_string());
            }
        }
        let Some((_, size, _)) = &self.file else {
            return self
                .stats
                .dropped(bytes.len(), self.problem_or("cannot open"));
        };
        if *size > 0
            && *size + bytes.len() as u64 > self.max_bytes
            && let Err(why) = self.rotate()
        {
            return self.stats.dropped(bytes.len(), why.to_string());
        }
        let Some((file, size, _)) = &mut self.file else {
            return self
                .stats
                .dropped(bytes.len(), self.problem_or("cannot open"));
        };
        let offset = *size;
        match file.write_all(bytes) {
            Ok(()) => {
                *size += bytes.len() as u64;
                self.stats.wrote(bytes.len());
                self.stamp(offset, stamp);
            }
            Err(e) => {
                let why = self.why(LogOp::Write, e);
                self.file = None;
                self.next_check = now + RETRY_EVERY;
                self.stats.dropped(bytes.len(), why.to_string());
            }
        }
    }

    fn problem_or(&self, what: &str) -> String {
        self.stats
            .problem()
            .unwrap_or_else(|| format!("{what} {}", self.path.display()))
    }

    /// Move the file to generation 1 (and older ones up), start a new one.
    fn rotate(&mut self) -> Result<(), LogError> {
        shift_generations(&self.path, true);
        let _ = std::fs::rename(
            index_path(&self.path),
            index_path(&generation(&self.path, 1)),
        );
        if let Err(e) = std::fs::rename(&self.path, generation(&self.path, 1)) {
            self.file = None;
            return Err(self.why(LogOp::Rotate, e));
        }
        match self.reopen() {
            None => Ok(()),
            Some(why) => Err(why),
        }
    }
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    logs: HashMap<u64, LogFile>,
    /// Replacements that failed, retried until they succeed.
    retries: HashMap<PathBuf, (Vec<u8>, Option<Done>)>,
    next_retry: Instant,
}

impl Writer {
    fn new(shared: Arc<Shared>) -> Writer {
        Writer {
            shared,
            logs: HashMap::new(),
            retries: HashMap::new(),
            next_retry: Instant::now(),
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Job>) {
        loop {
            self.progress();
            let job = match rx.recv_timeout(RETRY_EVERY) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.retry();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            self.handle(job);
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            if Instant::now() >= self.next_retry {
                self.retry();
            }
        }
    }

    fn progress(&self) {
        let s = &self.shared;
        s.progress_ms.store(s.now_ms(), Ordering::Release);
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Open {
                id,
                path,
                max_bytes,
                stats,
            } => {
                self.logs.insert(id, LogFile::new(path, max_bytes, stats));
            }
            Job::Write {
                id, bytes, stamp, ..
            } => {
                if let Some(log) = self.logs.get_mut(&id) {
                    log.write(&bytes, stamp);
                }
            }
            Job::Close { id } => {
                self.logs.remove(&id);
            }
            Job::Replace { path, bytes, done } => match replace(&path, &bytes) {
                Ok(()) => {
                    self.retries.remove(&path);
                    written(done);
                }
                Err(e) => {
                    if !self.retries.contains_key(&path) {
                        tracing::error!(path = %path.display(), error = %e, "cannot write; retrying every second");
                    }
                    self.retries.insert(path, (bytes, done));
                }
            },
            Job::Remove { path } => {
                self.retries.remove(&path);
                let _ = std::fs::remove_file(&path);
            }
            Job::Sync(done) => {
                let _ = done.send(());
            }
        }
    }

    fn retry(&mut self) {
        self.next_retry = Instant::now() + RETRY_EVERY;
        self.retries
            .retain(|path, (bytes, done)| match replace(path, bytes) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "written after an earlier failure");
                    written(done.take());
                    false
                }
                Err(_) => true,
            });
    }
}

fn written(done: Option<Done>) {
    if let Some((at, version)) = done {
        at.fetch_max(version, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn synced(d: &Disk) {
        assert!(d.sync(Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn writes_rotate_and_keep_two_generations() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("t.log");
        let d = Disk::start().unwrap();
        let log = d.open_log(&p, 100);
        for i in 0..30 {
            log.write(format!("line {i:02}\n").into_bytes()).await;
        }
        synced(&d).await;
        assert!(generation(&p, 1).exists() && generation(&p, 2).exists());
        assert!(!generation(&p, 3).exists());
        assert!(std::fs::metadata(&p).unwrap().len() <= 100);
        assert_eq!(log.stats().written_bytes(), 30 * 8);
        assert_eq!(log.stats().dropped_bytes(), 0);
    }

    #[tokio::test]
    async fn an_unwritable_log_drops_counts_and_comes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("t.log");
        std::fs::create_dir(&p).unwrap();
        let d = Disk::start().unwrap();
        let log = d.open_log(&p, 1 << 20);
        log.write(b"lost\n".to_vec()).await;
        synced(&d).await;
        let stats = log.stats();
        assert_eq!(stats.dropped_bytes(), 5);
        assert!(stats.problem().unwrap().contains("cannot open"));
        std::fs::remove_dir(&p).unwrap();
        // Retried at most every RETRY_EVERY: keep writing until it lands.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read(&p).unwrap_or_default().is_empty() {
            assert!(Instant::now() < deadline, "the log never came back");
            log.write(b"kept\n".to_vec()).await;
            synced(&d).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(stats.problem().is_none());
        assert!(
            String::from_utf8(std::fs::read(&p).unwrap())
                .unwrap()
                .starts_with("kept\n")
        );
    }

    #[tokio::test]
    async fn a_symlink_in_place_of_the_log_is_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let p = tmp.path().join("t.log");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let d = Disk::start().unwrap();
        let log = d.open_log(&p, 1 << 20);
        log.write(b"secret\n".to_vec()).await;
        synced(&d).await;
        assert_eq!(std::fs::read(&target).unwrap(), b"");
        assert!(log.stats().problem().unwrap().contains("symlink"));
    }

    #[tokio::test]
    async fn a_log_replaced_under_us_is_reopened() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("t.log");
        let d = Disk::start().unwrap();
        let log = d.open_log(&p, 1 << 20);
        log.write(b"one\n".to_vec()).await;
        synced(&d).await;
        std::fs::remove_file(&p).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read(&p).unwrap_or_default().is_empty() {
            assert!(Instant::now() < deadline, "never reopened");
            log.write(b"two\n".to_vec()).await;
            synced(&d).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn replace_is_atomic_and_retried() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let p = dir.join("f");
        let d = Disk::start().unwrap();
        let written = Arc::new(AtomicU64::new(0));
        d.replace_then(&p, b"v1".to_vec(), written.clone(), 7);
        synced(&d).await;
        assert!(!p.exists(), "no directory yet: failed, to be retried");
        assert_eq!(written.load(Ordering::Acquire), 0);
        std::fs::create_dir(&dir).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read(&p).ok().as_deref() != Some(b"v1") {
            assert!(Instant::now() < deadline, "never retried");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        synced(&d).await;
        assert_eq!(
            written.load(Ordering::Acquire),
            7,
            "the version is known written"
        );
        d.remove(&p);
        synced(&d).await;
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no temp left");
    }
}
