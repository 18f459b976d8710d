//! Small Linux helpers: processes (through the library's `process::proc`,
//! the one place that reads `/proc`), signals, ports, commands with a
//! deadline, and the reaper that kills everything the benchmark started.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use stigmer::process::proc;

pub use stigmer::process::proc::Stat;

/// `/proc/PID/stat`; `None` when the pid does not exist.
pub fn stat(pid: i32) -> Option<Stat> {
    proc::stat(pid)
}

/// Is the process `pid` that started at `start` gone for good: no such
/// pid, a different process under the same pid, or a zombie whose other
/// threads have all exited too? (Right after SIGKILL the main thread is a
/// zombie while other threads still hold the port for a moment.)
pub fn gone(pid: i32, start: u64) -> bool {
    match proc::stat(pid) {
        None => true,
        Some(s) => s.start_time != start || s.exited(),
    }
}

/// Alive and not a zombie?
pub fn alive(pid: i32) -> bool {
    proc::stat(pid).is_some_and(|s| !s.leader_exited())
}

/// Direct children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    proc::children(pid)
}

/// The command line with spaces ("" for zombies and kernel threads).
pub fn cmdline(pid: i32) -> String {
    proc::cmdline(pid).join(" ")
}

/// The executable of `pid`.
pub fn exe(pid: i32) -> Option<PathBuf> {
    proc::exe(pid)
}

/// Resident set size in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    proc::memory_and_threads(pid).map(|(rss, _)| rss / 1024)
}

/// Clock ticks per second.
pub fn clk_tck() -> f64 {
    proc::ticks_per_second() as f64
}

/// Send `sig` to `pid` (negative: a process group); true on success.
pub fn signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// A loopback port nobody listens on right now, *below* the ephemeral
/// range: an unused port inside that range can be "connected" to by a
/// TCP self-connect (source port = destination port), which would make a
/// stopped server look alive.
pub fn free_port() -> u16 {
    let low = proc::ephemeral_port_start().clamp(12000, 61000);
    let span = u32::from(low - 10000);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2654435761);
    for i in 0..span {
        let port = 10000 + ((seed.wrapping_add(i.wrapping_mul(7919))) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && !port_accepts(port) {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Does something accept TCP connections on 127.0.0.1:`port`? (A TCP
/// self-connect does not count.)
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
        Ok(s) => s.local_addr().ok() != Some(addr),
        Err(_) => false,
    }
}

/// Pids holding a listening TCP socket on `port`, with their command
/// lines, for diagnostics.
pub fn listeners(port: u16) -> Vec<(i32, String)> {
    let inodes = proc::listening_inodes(port);
    proc::pids()
        .into_iter()
        .filter(|&pid| {
            let held = proc::socket_inodes(pid);
            inodes.iter().any(|i| held.contains(i))
        })
        .map(|pid| (pid, cmdline(pid)))
        .collect()
}

/// The real executable behind `name` (PATH, then a pyenv shim resolved).
pub fn resolve(name: &str) -> Option<PathBuf> {
    stigmer::config::resolve_executable(name)
}

/// Outcome of a command run with a deadline.
pub struct Timed {
    /// Command issued → process exited (or the deadline).
    pub elapsed: Duration,
    /// Exit status; `None` when it outlived the deadline (it was killed).
    pub status: Option<ExitStatus>,
}

/// Run `cmd` (stdin/stdout/stderr to /dev/null unless already set) and
/// time it from spawn to exit; SIGKILL it after `deadline`.
pub fn run_timed(mut cmd: Command, deadline: Duration) -> Result<Timed, String> {
    cmd.stdin(Stdio::null());
    let t0 = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))?;
    wait_child(child, t0, deadline)
}

/// Wait for `child` (started at `t0`) on a helper thread so the exit is
/// timed precisely; SIGKILL it after `deadline`.
pub fn wait_child(mut child: Child, t0: Instant, deadline: Duration) -> Result<Timed, String> {
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = child.wait();
        let _ = tx.send((t0.elapsed(), r));
    });
    match rx.recv_timeout(deadline.saturating_sub(t0.elapsed())) {
        Ok((elapsed, Ok(status))) => Ok(Timed {
            elapsed,
            status: Some(status),
        }),
        Ok((_, Err(e))) => Err(format!("wait: {e}")),
        Err(_) => {
            signal(pid, libc::SIGKILL);
            let _ = rx.recv_timeout(Duration::from_secs(5));
            Ok(Timed {
                elapsed: t0.elapsed(),
                status: None,
            })
        }
    }
}

/// SIGKILL every process whose command line mentions `root` (the
/// benchmark's private temp dir: every supervisor, daemon, run script and
/// Temporal started here names it), repeating until none is left or 10 s
/// pass. Returns how many were signalled.
pub fn reap_all(root: &str) -> usize {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut total = 0;
    loop {
        let victims: Vec<i32> = proc::pids()
            .into_iter()
            .filter(|&p| p != me && alive(p) && cmdline(p).contains(root))
            .collect();
        if victims.is_empty() || Instant::now() > deadline {
            return total;
        }
        for p in victims {
            // SIGCONT too, in case it was stopped.
            signal(p, libc::SIGKILL);
            signal(p, libc::SIGCONT);
            total += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    proc::loadavg()
}

/// Sleep for `d`.
pub fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// Remove a file if present.
pub fn remove(p: &Path) {
    let _ = std::fs::remove_file(p);
}

/// How an ELF executable is linked: "static" when it has no program
/// interpreter (PT_INTERP), "dynamic" when it has one, "unknown" when it
/// is not a 64-bit little-endian ELF file. Start-up time depends on it
/// (docs/benchmark.md, "Start and status").
pub fn linkage(path: &Path) -> &'static str {
    const PT_INTERP: u32 = 3;
    let Ok(elf) = std::fs::read(path) else {
        return "unknown";
    };
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    // e_ident: magic, ELFCLASS64 (2), ELFDATA2LSB (1).
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return "unknown";
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return "unknown";
    };
    let headers = (0..usize::from(phnum)).map(|i| {
        usize::try_from(phoff)
            .unwrap_or(usize::MAX)
            .saturating_add(i * usize::from(phentsize))
    });
    let mut interp = false;
    for h in headers {
        match u32_at(h) {
            Some(PT_INTERP) => interp = true,
            Some(_) => {}
            None => return "unknown",
        }
    }
    if interp { "dynamic" } else { "static" }
}
