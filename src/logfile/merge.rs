//! One log for the stack: every unit's lines, interleaved in the order
//! they were read from the processes. Each log has a capture-time index
//! beside it ([`crate::disk::index_path`]); a line takes the time (and
//! pipe) of the last index record at or before its first byte. Lines of
//! a log without an index (written before it existed) have time 0 and
//! come first.

use crate::disk::{INDEX_RECORD, Stream, index_path};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One line of one unit's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Which of the followed logs (its position in the list given).
    pub unit: usize,
    /// When it was read from the process (Unix ms; 0 when unknown).
    pub ms: u64,
    /// Which pipe.
    pub stream: Stream,
    /// Where it starts in its file.
    pub offset: u64,
    /// The line, without its end.
    pub text: Vec<u8>,
}

/// A log's index: (offset, stamp) in file order.
#[derive(Debug, Default)]
struct Index(Vec<(u64, u64)>);

impl Index {
    fn load(log: &Path) -> Index {
        let Ok(bytes) = std::fs::read(index_path(log)) else {
            return Index::default();
        };
        Index(
            bytes
                .chunks_exact(INDEX_RECORD)
                .map(|r| {
                    let w = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap_or([0; 8]));
                    (w(0), w(8))
                })
                .collect(),
        )
    }

    /// (ms, stream) of the byte at `offset`.
    fn at(&self, offset: u64) -> (u64, Stream) {
        let i = self.0.partition_point(|(o, _)| *o <= offset);
        match i.checked_sub(1).map(|i| self.0[i].1) {
            Some(stamp) => (
                stamp / 2,
                if stamp % 2 == 1 {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                },
            ),
            None => (0, Stream::Stdout),
        }
    }

    /// The first offset whose time is `ms` or later.
    fn first_at_or_after(&self, ms: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|(_, stamp)| stamp / 2 >= ms)
            .map(|(o, _)| *o)
    }
}

/// The last `n` lines of `path` with their start offsets, reading backwards
/// block by block only as far as they reach (empty if absent).
pub fn tail_at(path: &Path, n: usize) -> io::Result<Vec<(u64, Vec<u8>)>> {
    tail_upto(path, n, u64::MAX)
}

/// [`tail_at`] of the file's first `end` bytes.
fn tail_upto(path: &Path, n: usize, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if n == 0 {
        return Ok(Vec::new());
    }
    const STEP: u64 = 64 * 1024;
    let len = f.metadata()?.len().min(end);
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0;
    let mut start = len;
    // The file's last byte ends the last line whether or not it is a
    // newline: a final newline does not start an empty line.
    let mut skip_final = true;
    while start > 0 && newlines <= n {
        let from = start.saturating_sub(STEP);
        let mut block = vec![0; (start - from) as usize];
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(&mut block)?;
        let mut counted = &block[..];
        if skip_final {
            skip_final = false;
            counted = counted.strip_suffix(b"\n").unwrap_or(counted);
        }
        newlines += memchr::memchr_iter(b'\n', counted).count();
        blocks.push(block);
        start = from;
    }
    let mut text = Vec::with_capacity(blocks.iter().map(Vec::len).sum());
    for b in blocks.iter().rev() {
        text.extend_from_slice(b);
    }
    let mut lines = split_lines(start, &text);
    // The first piece may be the end of a line that began before `start`.
    if lines.len() > n {
        lines.drain(..lines.len() - n);
    }
    Ok(lines)
}

/// The lines of `bytes` (which start at `offset` in their file) with their
/// offsets; a last line without its end counts.
fn split_lines(offset: u64, bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() && bytes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    for piece in body.split(|&b| b == b'\n') {
        out.push((offset + at as u64, piece.to_vec()));
        at += piece.len() + 1;
    }
    out
}

/// Every line of `path` from `offset` to `end`.
fn read_from(path: &Path, offset: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    f.take(end.saturating_sub(offset)).read_to_end(&mut bytes)?;
    Ok(split_lines(offset, &bytes))
}

fn stamped(unit: usize, index: &Index, lines: Vec<(u64, Vec<u8>)>) -> Vec<Line> {
    lines
        .into_iter()
        .map(|(offset, text)| {
            let (ms, stream) = index.at(offset);
            Line {
                unit,
                ms,
                stream,
                offset,
                text,
            }
        })
        .collect()
}

/// Put lines of several logs in time order (ties: the order the logs
/// were given, then the order they were read: the sort is stable).
pub fn interleave(lines: &mut [Line]) {
    lines.sort_by_key(|l| (l.ms, l.unit));
}

/// The last `n` lines of all `logs` together (or, with `since`, every
/// line read at or after it, Unix ms), in time order; each log read up to
/// its `ends` entry when given (where a [`Tailer`] goes on from).
pub fn recent(
    logs: &[PathBuf],
    n: usize,
    since: Option<u64>,
    ends: Option<&[u64]>,
) -> io::Result<Vec<Line>> {
    let mut all = Vec::new();
    for (unit, path) in logs.iter().enumerate() {
        let end = ends.and_then(|e| e.get(unit).copied()).unwrap_or(u64::MAX);
        let index = Index::load(path);
        let lines = match since {
            Some(ms) => match index.first_at_or_after(ms) {
                Some(offset) => read_from(path, offset, end)?,
                None if index.0.is_empty() => read_from(path, 0, end)?,
                None => Vec::new(),
            },
            None => tail_upto(path, n, end)?,
        };
        all.extend(
            stamped(unit, &index, lines)
                .into_iter()
                .filter(|l| since.is_none_or(|s| l.ms >= s)),
        );
    }
    interleave(&mut all);
    if since.is_none() && all.len() > n {
        all.drain(..all.len() - n);
    }
    Ok(all)
}

/// Follows several logs at once: each call returns the complete lines
/// written since the last (across rotation), in time order.
pub struct Tailer {
    logs: Vec<Followed>,
}

struct Followed {
    path: PathBuf,
    /// The open file, its inode, and how far it has been read.
    file: Option<(File, u64, u64)>,
    /// A line begun but not ended yet.
    partial: Vec<u8>,
    partial_at: u64,
}

impl Tailer {
    /// Start at the end of each of `logs`.
    pub fn at_end(logs: &[PathBuf]) -> Tailer {
        Tailer {
            logs: logs
                .iter()
                .map(|p| {
                    let file = File::open(p).ok().and_then(|f| {
                        let m = f.metadata().ok()?;
                        Some((f, m.ino(), m.len()))
                    });
                    Followed {
                        path: p.clone(),
                        file,
                        partial: Vec::new(),
                        partial_at: 0,
                    }
                })
                .collect(),
        }
    }

    /// Where each log is read up to (0 for one not there yet).
    pub fn positions(&self) -> Vec<u64> {
        self.logs
            .iter()
            .map(|f| f.file.as_ref().map_or(0, |(_, _, pos)| *pos))
            .collect()
    }

    /// The complete lines written since the last call, in time order.
    pub fn poll(&mut self) -> io::Result<Vec<Line>> {
        let mut out = Vec::new();
        for (unit, f) in self.logs.iter_mut().enumerate() {
            let mut lines = f.read_new()?;
            if lines.is_empty() {
                continue;
            }
            let index = Index::load(&f.path);
            // Lines of a log that was rotated away meanwhile have no
            // records in the new index: they take the time of now.
            let now = crate::model::clock::unix_now_ms();
            for l in &mut lines {
                l.unit = unit;
                let (ms, stream) = index.at(l.offset);
                (l.ms, l.stream) = if ms == 0 {
                    (now, Stream::Stdout)
                } else {
                    (ms, stream)
                };
            }
            out.extend(lines);
        }
        interleave(&mut out);
        Ok(out)
    }
}

impl Followed {
    /// Complete lines appended since the last read; on rotation (another
    /// inode at the path, or a shorter file), the rest of the old file,
    /// then the new one from its start.
    fn read_new(&mut self) -> io::Result<Vec<Line>> {
        let mut lines = Vec::new();
        if let Some((file, _, pos)) = &mut self.file {
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(*pos))?;
            file.read_to_end(&mut bytes)?;
            self.take_lines(&bytes, &mut lines);
        }
        let replaced = match (&self.file, std::fs::metadata(&self.path)) {
            (Some((_, ino, pos)), Ok(m)) => m.ino() != *ino || m.len() < *pos,
            (None, Ok(_)) => true,
            (_, Err(_)) => false,
        };
        if replaced && let Ok(f) = File::open(&self.path) {
            let ino = f.metadata()?.ino();
            self.file = Some((f, ino, 0));
            self.partial.clear();
            self.partial_at = 0;
            if let Some((file, _, _)) = &mut self.file {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)?;
                self.take_lines(&bytes, &mut lines);
            }
        }
        Ok(lines)
    }

    fn take_lines(&mut self, bytes: &[u8], out: &mut Vec<Line>) {
        let Some((_, _, pos)) = &mut self.file else {
            return;
        };
        let mut at = *pos;
        *pos += bytes.len() as u64;
        let mut rest = bytes;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let start = if self.partial.is_empty() {
                at
            } else {
                self.partial_at
            };
            let mut text = std::mem::take(&mut self.partial);
            text.extend_from_slice(&rest[..i]);
            out.push(Line {
                unit: 0,
                ms: 0,
                stream: Stream::Stdout,
                offset: start,
                text,
            });
            at += i as u64 + 1;
            rest = &rest[i + 1..];
        }
        if !rest.is_empty() {
            if self.partial.is_empty() {
                self.partial_at = at;
            }
            self.partial.extend_from_slice(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::stamp;

    fn log_with_index(dir: &Path, name: &str, chunks: &[(&str, u64, Stream)]) -> PathBuf {
        let p = dir.join(name);
        let mut bytes = Vec::new();
        let mut index = Vec::new();
        for (text, ms, stream) in chunks {
            index.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            index.extend_from_slice(&stamp(*ms, *stream).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
        std::fs::write(&p, bytes).unwrap();
        std::fs::write(index_path(&p), index).unwrap();
        p
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| format!("{}:{}", l.unit, String::from_utf8_lossy(&l.text)))
            .collect()
    }

    #[test]
    fn lines_of_several_logs_interleave_by_capture_time() {
        let d = tempfile::tempdir().unwrap();
        let a = log_with_index(
            d.path(),
            "a.log",
            &[
                ("a1\na2\n", 100, Stream::Stdout),
                ("a3\n", 300, Stream::Stderr),
            ],
        );
        let b = log_with_index(d.path(), "b.log", &[("b1\n", 200, Stream::Stdout)]);
        let all = recent(&[a.clone(), b.clone()], 10, None, None).unwrap();
        assert_eq!(texts(&all), ["0:a1", "0:a2", "1:b1", "0:a3"]);
        assert_eq!(all[3].stream, Stream::Stderr);
        assert_eq!(all[3].ms, 300);
        let last = recent(&[a.clone(), b.clone()], 2, None, None).unwrap();
        assert_eq!(texts(&last), ["1:b1", "0:a3"]);
        let since = recent(&[a.clone(), b.clone()], 0, Some(200), None).unwrap();
        assert_eq!(texts(&since), ["1:b1", "0:a3"]);
        let upto = recent(&[a, b], 10, None, Some(&[6, 0])).unwrap();
        assert_eq!(texts(&upto), ["0:a1", "0:a2"], "only up to the ends given");
    }

    #[test]
    fn a_tailer_sees_new_lines_only_once_and_whole() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.log");
        std::fs::write(&a, "old\n").unwrap();
        let mut t = Tailer::at_end(std::slice::from_ref(&a));
        assert!(t.poll().unwrap().is_empty());
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
        f.write_all(b"new 1\nnew ").unwrap();
        assert_eq!(texts(&t.poll().unwrap()), ["0:new 1"]);
        f.write_all(b"2\n").unwrap();
        assert_eq!(texts(&t.poll().unwrap()), ["0:new 2"]);
        // Rotated: the rest of the old file, then the new one.
        f.write_all(b"last old\n").unwrap();
        std::fs::rename(&a, d.path().join("a.log.1")).unwrap();
        std::fs::write(&a, "first new\n").unwrap();
        assert_eq!(texts(&t.poll().unwrap()), ["0:last old", "0:first new"]);
    }

    #[test]
    fn tail_at_gives_offsets_of_the_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.log");
        std::fs::write(&p, "one\ntwo\nthree").unwrap();
        assert_eq!(
            tail_at(&p, 2).unwrap(),
            [(4, b"two".to_vec()), (8, b"three".to_vec())]
        );
    }
}
