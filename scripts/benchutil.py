"""What the benchmark scripts share: free ports and /proc readings."""

import os
import socket
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_ports(n: int) -> list:
    """`n` distinct ports free now (all bound at once, then released)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _stat(pid: int) -> list:
    """/proc/PID/stat's fields after the command name (field 3 on)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of `pid` so far."""
    f = _stat(pid)
    return (int(f[11]) + int(f[12])) / TICK


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def zombie(pid: int) -> bool:
    try:
        return _stat(pid)[0] == "Z"
    except OSError:
        return False


def running(pid: int) -> bool:
    """Exists and is not a zombie."""
    return Path(f"/proc/{pid}").exists() and not zombie(pid)


def faults(pid: int) -> tuple:
    """Minor and major page faults of `pid` so far."""
    f = _stat(pid)
    return int(f[7]), int(f[9])


def wait_until(what: str, cond, limit: float = 60.0, every: float = 0.01):
    """Poll `cond` until it is true (returned) or `limit` seconds pass (exit
    naming `what`)."""
    deadline = time.monotonic() + limit
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {limit:.0f} s: {what}")
        time.sleep(every)


def wait_gone(pids, limit: float = 60.0, what: str = "processes outlived the stop") -> None:
    wait_until(what, lambda: not any(running(p) for p in pids), limit, every=0.002)
