//! Small Linux helpers: /proc, signals, ports, commands with a deadline,
//! and the reaper that kills everything the benchmark started.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the benchmark needs from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    /// R, S, D, T, t, Z, X …
    pub state: char,
    /// User + system CPU time, clock ticks.
    pub cpu_ticks: u64,
    /// Start time, clock ticks since boot (identifies the process).
    pub start: u64,
}

/// Parse `/proc/PID/stat`; `None` when the pid does not exist.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field k is f[k - 3].
    let num = |k: usize| f.get(k - 3).and_then(|s| s.parse::<u64>().ok());
    Some(Stat {
        state: f.first()?.chars().next()?,
        cpu_ticks: num(14)? + num(15)?,
        start: num(22)?,
    })
}

/// Is the process `pid` that started at `start` gone for good: no such
/// pid, a different process under the same pid, or a zombie whose other
/// threads have all exited too? (Right after SIGKILL the main thread is a
/// zombie while other threads still hold the port for a moment.)
pub fn gone(pid: i32, start: u64) -> bool {
    match stat(pid) {
        None => true,
        Some(s) if s.start != start => true,
        Some(s) if s.state == 'Z' || s.state == 'X' => task_count(pid) <= 1,
        Some(_) => false,
    }
}

/// Threads listed under `/proc/PID/task` (0 when the pid is gone).
pub fn task_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Alive and not a zombie?
pub fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some(s) if s.state != 'Z' && s.state != 'X')
}

/// Direct children of `pid`, from every thread's `children` file, falling
/// back to a scan of `/proc/*/stat` when those files do not exist.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut found_file = false;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                found_file = true;
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    if !found_file {
        for p in all_pids() {
            let Ok(text) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let Some(i) = text.rfind(')') else { continue };
            let ppid = text[i + 1..]
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<i32>().ok());
            if ppid == Some(pid) {
                out.push(p);
            }
        }
    }
    out
}

/// Every pid in `/proc`.
pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `/proc/PID/cmdline` with NULs as spaces ("" for zombies and kernel threads).
pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim_end()
                .to_string()
        })
        .unwrap_or_default()
}

/// `/proc/PID/exe`.
pub fn exe(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Clock ticks per second.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
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
    let low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
        .clamp(12000, 61000);
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

/// Pids holding a listening TCP socket on `port` (from /proc/net/tcp*
/// inodes matched against every process's fds), for diagnostics.
pub fn listeners(port: u16) -> Vec<(i32, String)> {
    let mut inodes = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in fs::read_to_string(f).unwrap_or_default().lines().skip(1) {
            let c: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (c.get(1), c.get(3), c.get(9)) else {
                continue;
            };
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if p == Some(port) && *state == "0A" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    let mut out = Vec::new();
    for pid in all_pids() {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            fs::read_link(fd.path())
                .map(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
                .unwrap_or(false)
        });
        if holds {
            out.push((pid, cmdline(pid)));
        }
    }
    out
}

/// The real executable behind `name`: `$PATH` lookup, then, if that is a
/// pyenv shim (a script that re-execs through bash), `pyenv which name`.
pub fn resolve(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    })?;
    let mut head = [0u8; 4096];
    let n = fs::File::open(&found)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..n];
    if head.starts_with(b"#!") && head.windows(5).any(|w| w == b"pyenv") {
        let out = Command::new("pyenv").args(["which", name]).output().ok()?;
        if out.status.success() {
            let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if is_executable(&p) {
                return Some(p);
            }
        }
    }
    Some(found)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
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
        let victims: Vec<i32> = all_pids()
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

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Sleep for `d`.
pub fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// Remove a file if present.
pub fn remove(p: &Path) {
    let _ = fs::remove_file(p);
}
