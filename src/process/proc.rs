//! The one place that reads `/proc`, on the maintained `procfs` crate:
//! process stat lines, executables, command lines, every thread's open
//! files, the TCP socket tables and the kernel's lock table. The daemon,
//! the CLI, the tests and the benchmark all read the process table through
//! these functions.
//!
//! One kernel detail shapes this module: right after SIGKILL (or a
//! parent-death signal) a multi-threaded process's thread-group leader is a
//! zombie while its other threads are still exiting and still hold its
//! sockets. The leader's own `/proc/PID/fd` is unreadable then, but each
//! live thread's `/proc/PID/task/TID/fd` is not, so the functions here look
//! at every thread, and [`Stat::exited`] counts a process as gone only when
//! no thread of it is left.

use procfs::process::{FDTarget, Process};
use procfs::{Current, FromBufRead, FromReadSI};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What we use of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Single-letter state: R, S, D, T, t, Z, X, ...
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Start time in clock ticks since boot: with the pid, an identity.
    pub start_time: u64,
    /// User + system CPU time, clock ticks.
    pub cpu_ticks: u64,
    /// Threads in the thread group (a zombie leader counts itself).
    pub threads: u64,
    /// Resident set size, pages.
    pub rss_pages: u64,
}

impl Stat {
    /// The thread-group leader has exited (zombie or dead), whether or not
    /// its other threads have.
    pub fn leader_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }

    /// The whole process has exited: its leader is a zombie and no other
    /// thread is left (it holds no file, socket or lock any more).
    pub fn exited(&self) -> bool {
        self.leader_exited() && self.threads <= 1
    }

    /// Stopped by a signal (SIGSTOP) or a tracer.
    pub fn stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }

    /// CPU time in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_ticks as f64 / procfs::ticks_per_second() as f64
    }

    /// Resident set size in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.rss_pages * procfs::page_size()
    }
}

#[cfg(test)]
impl From<procfs::process::Stat> for Stat {
    fn from(s: procfs::process::Stat) -> Self {
        Stat {
            state: s.state,
            ppid: s.ppid,
            pgrp: s.pgrp,
            start_time: s.starttime,
            cpu_ticks: s.utime.saturating_add(s.stime),
            threads: s.num_threads.max(0) as u64,
            rss_pages: s.rss,
        }
    }
}

/// Parse the text of a `/proc/PID/stat` line (pure; fuzzed by the
/// property tests, and checked against procfs's parser). Our own: a
/// health check reads two stat lines per service every second, and
/// procfs's parser (every one of 52 fields, the name allocated) was a
/// tenth of the idle daemon's work with a big stack (docs/benchmark.md).
pub fn parse_stat(text: &str) -> Option<Stat> {
    // "PID (COMM) STATE PPID ...": the name may hold anything, spaces and
    // parentheses too, so the fields start after the last ')'.
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    if close <= open || text[..open].trim().parse::<i32>().is_err() {
        return None;
    }
    let mut f = text[close + 1..].split_ascii_whitespace();
    let mut next = |skip: usize| f.nth(skip);
    let state = next(0)?;
    let mut chars = state.chars();
    let state = match (chars.next(), chars.next()) {
        (Some(c), None) => c,
        _ => return None,
    };
    let ppid = next(0)?.parse().ok()?;
    let pgrp = next(0)?.parse().ok()?;
    // Fields 14 and 15 (utime, stime), 20 (num_threads), 22 (starttime),
    // 24 (rss), counted from 1 as proc(5) does; the state is field 3.
    let utime: u64 = next(8)?.parse().ok()?;
    let stime: u64 = next(0)?.parse().ok()?;
    let threads: i64 = next(4)?.parse().ok()?;
    let start_time = next(1)?.parse().ok()?;
    let rss: i64 = next(1)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        pgrp,
        start_time,
        cpu_ticks: utime.saturating_add(stime),
        threads: threads.max(0) as u64,
        rss_pages: rss.max(0) as u64,
    })
}

/// `/proc/PID/stat`; `None` when there is no such process.
pub fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    // One open and one read into the stack (a stat line is a few hundred
    // bytes; the name is at most 64).
    let mut buf = [0u8; 1024];
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let n = std::io::Read::read(&mut file, &mut buf).ok()?;
    // A name need not be UTF-8; the fields after it are ASCII.
    parse_stat(&String::from_utf8_lossy(&buf[..n]))
}

/// The executable of `pid`, without the " (deleted)" suffix the kernel
/// adds when the file was replaced (an upgraded binary is not a new
/// process). `None` for a zombie.
pub fn exe(pid: i32) -> Option<PathBuf> {
    let link = Process::new(pid).ok()?.exe().ok()?;
    let s = link.to_string_lossy();
    Some(match s.strip_suffix(" (deleted)") {
        Some(stripped) => PathBuf::from(stripped),
        None => link,
    })
}

/// The short command name (`/proc/PID/comm`), readable even for a zombie.
pub fn comm(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(text.trim_end().to_string())
}

/// The command line (empty for a zombie or a kernel thread).
pub fn cmdline(pid: i32) -> Vec<String> {
    Process::new(pid)
        .and_then(|p| p.cmdline())
        .unwrap_or_default()
}

/// The environment of `pid` (empty when unreadable).
pub fn environ(pid: i32) -> std::collections::HashMap<std::ffi::OsString, std::ffi::OsString> {
    Process::new(pid)
        .and_then(|p| p.environ())
        .unwrap_or_default()
}

/// Every process visible to us.
pub fn pids() -> Vec<i32> {
    procfs::process::all_processes()
        .map(|it| it.flatten().map(|p| p.pid).collect())
        .unwrap_or_default()
}

/// Thread ids of `pid` (`/proc/PID/task`).
pub fn threads(pid: i32) -> Vec<i32> {
    Process::new(pid)
        .and_then(|p| p.tasks())
        .map(|it| it.flatten().map(|t| t.tid).collect())
        .unwrap_or_default()
}

/// Direct children of `pid`: every thread's `children` file, or, where
/// the kernel has none, a scan of every process's parent pid.
pub fn children(pid: i32) -> Vec<i32> {
    let listed: Option<Vec<i32>> =
        Process::new(pid)
            .and_then(|p| p.tasks())
            .ok()
            .and_then(|tasks| {
                let lists: Vec<Vec<u32>> =
                    tasks.flatten().filter_map(|t| t.children().ok()).collect();
                (!lists.is_empty()).then(|| lists.into_iter().flatten().map(|c| c as i32).collect())
            });
    listed.unwrap_or_else(|| {
        pids()
            .into_iter()
            .filter(|&p| stat(p).is_some_and(|s| s.ppid == pid))
            .collect()
    })
}

/// Clock ticks per second (the unit of [`Stat::cpu_ticks`]).
pub fn ticks_per_second() -> u64 {
    procfs::ticks_per_second()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): a record written
/// in another boot names processes that are gone, whatever runs under
/// their pids now.
pub fn boot_id() -> Option<String> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .clone()
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` writes them.
pub fn loadavg() -> String {
    procfs::LoadAverage::current()
        .map(|l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen))
        .unwrap_or_default()
}

/// The CPU's model name (`/proc/cpuinfo`), for reports.
pub fn cpu_model() -> String {
    procfs::CpuInfo::current()
        .ok()
        .and_then(|c| c.model_name(0).map(str::to_string))
        .unwrap_or_default()
}

/// The first port of the kernel's ephemeral range (where connect(2) picks
/// source ports); 32768 when unreadable.
pub fn ephemeral_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: i32) -> Option<usize> {
    Process::new(pid).ok()?.fd_count().ok()
}

/// Resident set size (`VmRSS`, bytes) and thread count from
/// `/proc/PID/status`.
pub fn memory_and_threads(pid: i32) -> Option<(u64, u64)> {
    let status = Process::new(pid).ok()?.status().ok()?;
    Some((status.vmrss? * 1024, status.threads))
}

/// The `/proc` directory whose `fd/` lists the open files of `pid`: its
/// own, or, when the leader is a zombie (its own `fd/` is then empty or
/// unreadable), that of a live thread (threads share one file table).
fn fd_owner(pid: i32) -> Option<Process> {
    let leader = Process::new(pid).ok()?;
    if !stat(pid)?.leader_exited() {
        return Some(leader);
    }
    threads(pid)
        .into_iter()
        .filter(|&tid| tid != pid)
        .filter_map(|tid| Process::new_with_root(format!("/proc/{pid}/task/{tid}").into()).ok())
        .find(|t| t.fd_count().is_ok_and(|n| n > 0))
}

/// Socket inodes `pid` holds open, through any of its threads.
pub fn socket_inodes(pid: i32) -> HashSet<u64> {
    let Some(owner) = fd_owner(pid) else {
        return HashSet::new();
    };
    owner
        .fd()
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| match fd.target {
                    FDTarget::Socket(inode) => Some(inode),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Does `pid` (through any of its threads) hold the file `(dev, ino)` open?
pub fn has_open(pid: i32, dev: u64, ino: u64) -> bool {
    let Some(owner) = fd_owner(pid) else {
        return false;
    };
    let Ok(fds) = owner.fd() else { return false };
    let dir = if owner.pid == pid {
        format!("/proc/{pid}/fd")
    } else {
        format!("/proc/{pid}/task/{}/fd", owner.pid)
    };
    fds.flatten().any(|fd| {
        matches!(fd.target, FDTarget::Path(_))
            && std::fs::metadata(format!("{dir}/{}", fd.fd))
                .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
    })
}

/// Sockets listening on TCP `port` (IPv4 and IPv6): local address and
/// socket inode.
pub fn listeners(port: u16) -> Vec<(SocketAddr, u64)> {
    let mut entries = procfs::net::tcp().unwrap_or_default();
    entries.extend(procfs::net::tcp6().unwrap_or_default());
    listening(&entries, port)
}

/// Inodes of the sockets listening on TCP `port` (IPv4 and IPv6).
pub fn listening_inodes(port: u16) -> Vec<u64> {
    listeners(port)
        .into_iter()
        .map(|(_, inode)| inode)
        .collect()
}

fn listening(entries: &[procfs::net::TcpNetEntry], port: u16) -> Vec<(SocketAddr, u64)> {
    entries
        .iter()
        .filter(|e| e.state == procfs::net::TcpState::Listen && e.local_address.port() == port)
        .map(|e| (e.local_address, e.inode))
        .collect()
}

/// Listening socket inodes on `port` in the text of a `/proc/net/tcp`
/// table (pure; fuzzed by the property tests).
pub fn parse_tcp_listeners(table: &str, port: u16) -> Vec<u64> {
    procfs::net::TcpNetEntries::from_read(table.as_bytes(), procfs::current_system_info())
        .map(|t| listening(&t.0, port).into_iter().map(|(_, i)| i).collect())
        .unwrap_or_default()
}

/// The pids the kernel's lock table (`/proc/locks`) names as holding a
/// lock on the file at `path`, each once, waiters (`->` lines) left out.
///
/// The kernel prints that table a page at a time and walks its lock list
/// again by position on every `read`, so a lock taken or dropped anywhere
/// between two reads shifts the entries after it: a reader that reads in
/// small pieces (as `read_to_string` does, starting with a 32-byte probe)
/// sees an entry twice (often, while other locks churn: the test below
/// measures it) or, when an entry before it goes, not at all; the
/// first cost an upgrade test its "one holder" in CI. [`read_lock_table`]
/// reads with one large buffer, which returns a whole page of entries per
/// `read`, so a table of up to a page (some 70 locks) is one snapshot plus,
/// at most, repeats that the dedup removes. A larger table can still miss
/// an entry: callers treat the answer as a lead to verify, never as the
/// lock's state (that is `flock` itself).
pub fn lock_holders(path: &Path) -> Vec<i32> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let Ok(table) = read_lock_table() else {
        return Vec::new();
    };
    holders_in(&table, &meta)
}

/// `/proc/locks`, read with a buffer far larger than the kernel's page of
/// output per `read`.
fn read_lock_table() -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open("/proc/locks")?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if buf.len() - len < 8 * 1024 {
            buf.resize(buf.len() * 2, 0);
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(std::io::Error::other)
}

/// The holders of locks on the file `meta` describes, in `table`.
fn holders_in(table: &str, meta: &std::fs::Metadata) -> Vec<i32> {
    let held: String = table
        .lines()
        .filter(|l| l.split_whitespace().nth(1) != Some("->"))
        .flat_map(|l| [l, "\n"])
        .collect();
    let Ok(locks) = procfs::Locks::from_buf_read(held.as_bytes()) else {
        return Vec::new();
    };
    let (major, minor) = (
        nix::sys::stat::major(meta.dev()) as u32,
        nix::sys::stat::minor(meta.dev()) as u32,
    );
    let mut pids: Vec<i32> = locks
        .0
        .into_iter()
        .filter(|l| l.inode == meta.ino() && l.devmaj == major && l.devmin == minor)
        .filter_map(|l| l.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Processes (other than us) that hold the file at `path` open, through
/// any thread. A scan of every process: for rare paths only.
pub fn processes_with_open(path: &Path) -> Vec<i32> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|&pid| pid != me && has_open(pid, meta.dev(), meta.ino()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::FromRead;

    #[test]
    fn parses_stat_with_hostile_comm() {
        let line = "123 (a) b (c) S 1 123 123 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 4 0 98765 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.pgrp, 123);
        assert_eq!(st.start_time, 98765);
        assert_eq!(st.cpu_ticks, 10);
        assert_eq!(st.threads, 4);
    }

    #[test]
    fn parses_stat_as_procfs_does() {
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        // After the state: every field but the first three (pid, name,
        // state), under a hostile name and another state.
        let tail = own[own.rfind(')').unwrap() + 4..].to_string();
        let lines = [
            own.clone(),
            std::fs::read_to_string("/proc/1/stat").unwrap(),
            format!("7 (a) (b)) Z {tail}"),
        ];
        for line in lines {
            let theirs = procfs::process::Stat::from_read(line.as_bytes()).unwrap();
            assert_eq!(parse_stat(&line), Some(Stat::from(theirs)), "{line}");
        }
        let me = stat(std::process::id() as i32).unwrap();
        let theirs = Process::myself().unwrap().stat().unwrap();
        assert_eq!((me.start_time, me.pgrp), (theirs.starttime, theirs.pgrp));
        assert!(me.threads >= 1);
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        let st = stat(me).unwrap();
        assert!(!st.leader_exited() && st.threads >= 1 && st.rss_bytes() > 0);
        assert!(exe(me).is_some() && open_fds(me).unwrap() > 0);
        assert!(threads(me).contains(&me));
        assert!(pids().contains(&me));
    }

    #[test]
    fn parses_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1C41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1C41 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(parse_tcp_listeners(table, 7233), vec![4242]);
        assert!(parse_tcp_listeners(table, 7234).is_empty());
    }

    #[test]
    fn finds_our_listener_and_lock() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let inodes = listening_inodes(port);
        assert_eq!(inodes.len(), 1);
        let me = std::process::id() as i32;
        assert!(socket_inodes(me).contains(&inodes[0]));

        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("l");
        let f = std::fs::File::create(&p).unwrap();
        f.try_lock().unwrap();
        assert_eq!(lock_holders(&p), vec![me]);
        let m = std::fs::metadata(&p).unwrap();
        assert!(has_open(me, m.dev(), m.ino()));
    }

    #[test]
    fn lock_holders_leave_out_waiters_and_repeats() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("l");
        std::fs::write(&p, "").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        let id = format!(
            "{:02x}:{:02x}:{}",
            nix::sys::stat::major(m.dev()),
            nix::sys::stat::minor(m.dev()),
            m.ino()
        );
        let table = format!(
            "1: FLOCK  ADVISORY  WRITE 700 {id} 0 EOF\n\
             1: -> FLOCK  ADVISORY  WRITE 800 {id} 0 EOF\n\
             2: POSIX  ADVISORY  WRITE 900 00:14:16200 0 EOF\n\
             3: FLOCK  ADVISORY  WRITE 700 {id} 0 EOF\n"
        );
        assert_eq!(holders_in(&table, &m), vec![700]);
        assert!(holders_in("", &m).is_empty());
    }

    /// `/proc/locks` is printed a page at a time, and each `read` walks the
    /// kernel's lock list again by position: a lock taken or dropped
    /// elsewhere between two reads shifts every later entry, so a reader
    /// that reads in small pieces sees an entry twice or not at all. Churn
    /// other locks while reading ours: every read finds our entry, and
    /// `lock_holders` names us exactly once.
    #[test]
    fn lock_holders_is_one_snapshot_while_other_locks_churn() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("ours");
        let f = std::fs::File::create(&p).unwrap();
        f.try_lock().unwrap();
        let me = std::process::id() as i32;
        // Held locks around ours, so the table spans several reads' worth
        // of boundaries.
        let held: Vec<std::fs::File> = (0..40)
            .map(|i| {
                let f = std::fs::File::create(tmp.path().join(format!("held{i}"))).unwrap();
                f.try_lock().unwrap();
                f
            })
            .collect();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let churn: Vec<std::fs::File> = (0..8)
                    .map(|i| std::fs::File::create(tmp.path().join(format!("churn{i}"))).unwrap())
                    .collect();
                while !stop.load(Ordering::Relaxed) {
                    for c in &churn {
                        c.try_lock().unwrap();
                    }
                    for c in &churn {
                        c.unlock().unwrap();
                    }
                }
            });
            // Stops the churn however this closure ends, before the scope
            // joins it (a panic below must not leave the test hanging).
            struct StopOnDrop<'a>(&'a AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = StopOnDrop(&stop);
            // Our entry is in every raw read of the table (a later read of
            // a one-page table can only repeat an entry, never drop one)
            // and named once by `lock_holders`.
            let ino = format!(":{} ", std::fs::metadata(&p).unwrap().ino());
            let seen: Vec<(usize, Vec<i32>)> = (0..3000)
                .map(|_| {
                    let raw = read_lock_table().unwrap();
                    (raw.matches(&ino).count().min(1), lock_holders(&p))
                })
                .collect();
            let torn: Vec<_> = seen.iter().filter(|(n, h)| *n != 1 || *h != [me]).collect();
            assert!(
                torn.is_empty(),
                "{} of 3000 reads: {:?}",
                torn.len(),
                &torn[..torn.len().min(5)]
            );
        });
        drop(held);
    }
}
