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


def wait_gone(pids, limit: float = 60.0, what: str = "processes outlived the stop") -> None:
    deadline = time.monotonic() + limit
    while any(running(p) for p in pids):
        if time.monotonic() > deadline:
            raise SystemExit(what)
        time.sleep(0.002)
