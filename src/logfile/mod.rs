//! Process logs: the daemon pumps each child's stdout/stderr into a
//! size-rotated file (`temporal.log` or `NAME.log`, `.1`, `.2`) through
//! the disk thread ([`pump`]), and `stigmer local logs` reads its tail
//! and follows it across rotation ([`tail`], [`follow`]), in time linear
//! in what it prints, whatever bytes the file holds; [`merge`] reads
//! several units' logs as one, by the capture times beside them.

pub mod merge;
mod pump;

pub use crate::disk::open_append;
pub use pump::{MAX_LINE, OnLine, Pump, pump};

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// Default size at which a log rotates.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Where the daemon's logs are written: the disk thread, and a runtime
/// of their own that reads every child's pipes (a child that floods its
/// output costs this thread, not the supervisor's).
#[derive(Clone, Debug)]
pub struct Logs {
    /// The writer thread.
    pub disk: crate::disk::Disk,
    pumps: tokio::runtime::Handle,
}

impl Logs {
    /// Start the pumps' thread; logs are written through `disk`.
    pub fn start(disk: crate::disk::Disk) -> io::Result<Logs> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let pumps = rt.handle().clone();
        std::thread::Builder::new()
            .name("stigmer-logs".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))?;
        Ok(Logs { disk, pumps })
    }

    /// Copy the pipe `fd` into `log` (see [`pump()`]).
    pub fn pump(
        &self,
        fd: std::os::fd::OwnedFd,
        stream: crate::disk::Stream,
        log: crate::disk::LogStream,
        on_line: Option<OnLine>,
    ) -> io::Result<Pump> {
        pump(&self.pumps, fd, stream, log, on_line)
    }
}

/// The last `n` lines of the file at `path` (empty if absent), invalid
/// UTF-8 shown lossily. Reads backwards, block by block, only as far as
/// the `n` lines reach.
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<String>> {
    Ok(merge::tail_at(path, n)?
        .into_iter()
        .map(|(_, l)| String::from_utf8_lossy(&l).into_owned())
        .collect())
}

/// Why [`follow`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// The output went away (e.g. `| head` is done).
    OutputClosed,
    /// `keep_going` said to stop.
    Stopped,
}

/// How often [`follow`] looks for new lines (as `tail -F` does).
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// Print lines appended to `path`, each complete line as soon as it is
/// there (flushed, so `| grep` sees it), invalid UTF-8 shown lossily,
/// reopening the file when it is rotated or recreated, until the output
/// goes away or `keep_going` (asked between reads) says to stop.
pub fn follow(
    path: &Path,
    out: &mut impl Write,
    mut keep_going: impl FnMut() -> bool,
) -> io::Result<Followed> {
    let open = || File::open(path).map(io::BufReader::new);
    let mut reader = loop {
        match open() {
            Ok(mut r) => {
                r.seek(SeekFrom::End(0))?;
                break r;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !keep_going() {
                    return Ok(Followed::Stopped);
                }
                std::thread::sleep(FOLLOW_EVERY)
            }
            Err(e) => return Err(e),
        }
    };
    let mut ino = reader.get_ref().metadata()?.ino();
    let mut line = Vec::new();
    loop {
        let mut printed = false;
        loop {
            let limit = (MAX_LINE - line.len().min(MAX_LINE)) as u64 + 1;
            let got = (&mut reader).take(limit).read_until(b'\n', &mut line)?;
            if got == 0 {
                break;
            }
            // A line is printed once complete (or at the cap), so a line
            // written in two pieces is not split by the reader.
            if line.ends_with(b"\n") || line.len() >= MAX_LINE {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                if write_lossy(out, &line).is_err() {
                    return Ok(Followed::OutputClosed);
                }
                line.clear();
                printed = true;
            }
        }
        if printed && out.flush().is_err() {
            return Ok(Followed::OutputClosed);
        }
        if !keep_going() {
            return Ok(Followed::Stopped);
        }
        // At EOF: rotated away or truncated? Then read the new file from
        // its start.
        match std::fs::metadata(path) {
            Ok(m) if m.ino() != ino => {
                if let Ok(r) = open() {
                    ino = r.get_ref().metadata()?.ino();
                    reader = r;
                    continue;
                }
            }
            Ok(m) if m.len() < reader.stream_position()? => {
                reader.seek(SeekFrom::Start(0))?;
            }
            _ => {}
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}

/// Write `bytes`, invalid UTF-8 replaced (U+FFFD).
pub fn write_lossy(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    match String::from_utf8_lossy(bytes) {
        std::borrow::Cow::Borrowed(s) => out.write_all(s.as_bytes()),
        std::borrow::Cow::Owned(s) => out.write_all(s.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Disk;
    use std::sync::{Arc, Mutex};

    #[test]
    fn tails_whole_lines_from_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("t.log");
        let text: String = (0..30).map(|i| format!("line {i:02}\n")).collect();
        std::fs::write(&p, &text).unwrap();
        assert_eq!(tail(&p, 2).unwrap(), ["line 28", "line 29"]);
        assert_eq!(tail(&p, 0).unwrap(), Vec::<String>::new());
        assert_eq!(tail(&p, 100).unwrap().len(), 30);
        std::fs::write(&p, "a\nb").unwrap();
        assert_eq!(tail(&p, 1).unwrap(), ["b"], "a last line without its end");
        std::fs::write(&p, "a\n\nb\n").unwrap();
        assert_eq!(tail(&p, 2).unwrap(), ["", "b"], "an empty line counts");
    }

    #[test]
    fn tail_of_missing_file_is_empty_and_of_short_file_is_all() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(tail(&tmp.path().join("nope"), 5).unwrap().is_empty());
        let p = tmp.path().join("s");
        std::fs::write(&p, "a\nb\n").unwrap();
        assert_eq!(tail(&p, 10).unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn tail_reads_across_blocks_and_shows_bad_bytes_lossily() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("t.log");
        let mut bytes = vec![b'x'; 200_000];
        bytes.extend_from_slice(b"\nok \xff\xfe\n");
        std::fs::write(&p, &bytes).unwrap();
        let last = tail(&p, 2).unwrap();
        assert_eq!(last[0].len(), 200_000);
        assert_eq!(last[1], "ok \u{fffd}\u{fffd}");
    }

    /// Pump `input` through a pipe into a log; the log's bytes and the
    /// lines shown to the watcher.
    async fn pumped(input: Vec<u8>) -> (Vec<u8>, Vec<Vec<u8>>) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("l");
        let disk = Disk::start().unwrap();
        let log = disk.open_log(&path, 1 << 30);
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let p = pump(
            &tokio::runtime::Handle::current(),
            rx,
            crate::disk::Stream::Stdout,
            log,
            Some(Box::new(move |line: &[u8]| {
                s.lock().unwrap().push(line.to_vec());
                true
            })),
        )
        .unwrap();
        let writer = std::thread::spawn(move || {
            let mut w = File::from(tx);
            w.write_all(&input).unwrap();
        });
        p.finished().await;
        writer.join().unwrap();
        assert!(disk.sync(Duration::from_secs(10)).await);
        let lines = seen.lock().unwrap().clone();
        (std::fs::read(&path).unwrap(), lines)
    }

    #[tokio::test]
    async fn pump_shows_each_line_without_its_end_of_line() {
        let (log, lines) = pumped(b"ready\r\nnext\nlast".to_vec()).await;
        assert_eq!(log, b"ready\r\nnext\nlast\n");
        assert_eq!(lines, [b"ready".to_vec(), b"next".to_vec()]);
    }

    #[tokio::test]
    async fn a_line_longer_than_the_cap_is_written_in_pieces() {
        let mut input = vec![b'a'; 3 * MAX_LINE + 10];
        input.extend_from_slice(b"\nshort\n");
        let (log, lines) = pumped(input.clone()).await;
        let pieces: Vec<&[u8]> = log.split(|&b| b == b'\n').collect();
        assert_eq!(
            pieces.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [MAX_LINE, MAX_LINE, MAX_LINE, 10, 5, 0]
        );
        assert_eq!(
            log.len(),
            input.len() + 3,
            "nothing lost, three newlines added"
        );
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE));
        assert_eq!(lines.last().unwrap(), b"short");
    }

    #[tokio::test]
    async fn a_handed_back_pipe_loses_and_repeats_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("l");
        let disk = Disk::start().unwrap();
        let log = disk.open_log(&path, 1 << 20);
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let p = pump(
            &tokio::runtime::Handle::current(),
            rx,
            crate::disk::Stream::Stdout,
            log,
            Some(Box::new(move |line: &[u8]| {
                let _ = seen_tx.send(line.to_vec());
                true
            })),
        )
        .unwrap();
        let mut w = File::from(tx);
        w.write_all(b"a\nb\npartial").unwrap();
        assert_eq!(seen.recv().await.unwrap(), b"a");
        assert_eq!(seen.recv().await.unwrap(), b"b");
        let fd = p.hand_back().await.expect("the pipe comes back");
        w.write_all(b"-rest\n").unwrap();
        drop(w);
        assert!(disk.sync(Duration::from_secs(10)).await);
        let mut rest = Vec::new();
        let mut r = File::from(fd);
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

    /// A writer the test can read while [`follow`] writes to it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "waited for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn follow_prints_whole_lines_lossily_across_rotation() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f.log");
        std::fs::write(&p, "old\n").unwrap();
        let out = Shared::default();
        let rounds = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let follower = {
            let (path, mut out, rounds, stop) =
                (p.clone(), out.clone(), rounds.clone(), stop.clone());
            std::thread::spawn(move || {
                follow(&path, &mut out, || {
                    rounds.fetch_add(1, Ordering::SeqCst);
                    !stop.load(Ordering::SeqCst)
                })
                .unwrap()
            })
        };
        // Once it has looked at the file, it reads from the end.
        wait_for("the first look", || rounds.load(Ordering::SeqCst) > 0);
        let append = |bytes: &[u8]| {
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(bytes).unwrap();
        };
        let text = || String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned();
        append(b"one \xff");
        append(b"two\n");
        wait_for("the first line", || text().contains("two"));
        // Rotation: the file is renamed away and a new one starts.
        std::fs::rename(&p, tmp.path().join("f.log.1")).unwrap();
        std::fs::write(&p, "three\n").unwrap();
        wait_for("the line after rotation", || text().contains("three"));
        stop.store(true, Ordering::SeqCst);
        assert_eq!(follower.join().unwrap(), Followed::Stopped);
        assert_eq!(text(), "one \u{fffd}two\nthree\n");
    }
}
