#!/usr/bin/env python3
"""Write scripts/hot-text.txt: the functions `stigmer local` runs, in the
order the static build's linker places them first (scripts/link-hot-first.sh
says why).

    sudo python3 scripts/profile-hot-text.py [--temporal-bin PATH] [--idle-secs 20]

How it knows which functions ran, exactly, without instrumenting them:
1. It builds the static binary with every function aligned to its own
   4 KiB page (LLVM's -align-all-functions=12), in target/hot-text/.
2. It turns read-ahead off on the disk that holds a fresh copy of that
   binary and drops the copy from the page cache. A page of it then enters
   the cache only when a process faults on it (the kernel's fault-around
   maps only pages already cached), so after each stage `mincore(2)` on the
   file lists exactly the pages run, and the page a function starts on says
   whether it was entered. Read-ahead is restored on exit.
3. The stages are what a developer does: `status` with no daemon; `start`
   (the CLI and the daemon's start-up, Temporal ready); `status` and an
   idempotent `start` against the daemon; the daemon at work (/metrics,
   /status, /healthz, the status page, a SIGKILL and a SIGSTOP of Temporal
   recovered, an idle window); `stop`. The list is in that order, so the
   short commands' code comes first.

Root only (read-ahead is a device setting). Kills only what it started.
Regenerate when the code changes much;
a stale list still links, it only orders less.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import free_ports, running, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAGE = 4096


def build() -> Path:
    target = f"{os.uname().machine}-unknown-linux-musl"
    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = str(ROOT / "target" / "hot-text")
    env[f"CARGO_TARGET_{target.upper().replace('-', '_')}_RUSTFLAGS"] = (
        "-C llvm-args=-align-all-functions=12"
    )
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-static.sh")], env=env, check=True,
        stdout=subprocess.PIPE, text=True,
    ).stdout.split()[-1]
    return ROOT / out


def text_functions(binary: Path) -> dict:
    """File page of each function's first byte -> the function's names."""
    loads = []
    for line in subprocess.run(["readelf", "-lW", str(binary)], check=True,
                               stdout=subprocess.PIPE, text=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            off, vaddr, filesz = int(f[1], 16), int(f[2], 16), int(f[4], 16)
            loads.append((vaddr, vaddr + filesz, off))
    pages = {}
    for line in subprocess.run(["nm", "--defined-only", str(binary)], check=True,
                               stdout=subprocess.PIPE, text=True).stdout.splitlines():
        f = line.split()
        if len(f) != 3 or f[1] not in "tT":
            continue
        addr = int(f[0], 16)
        for lo, hi, off in loads:
            if lo <= addr < hi:
                pages.setdefault((addr - lo + off) // PAGE, []).append(f[2])
    return pages


def resident(path: Path) -> set:
    """Pages of `path` in the page cache: mincore(2) on a read-only mapping
    (through libc, as Python's mmap does not give its address)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = path.stat().st_size
    n = (size + PAGE - 1) // PAGE
    vec = (ctypes.c_ubyte * n)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return {i for i in range(n) if vec[i] & 1}


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        for _ in range(10):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if not resident(path):
                return
            time.sleep(0.2)
    finally:
        os.close(fd)
    raise SystemExit(f"could not drop {path} from the page cache")


def read_ahead_file(path: Path) -> Path:
    """The queue/read_ahead_kb of the disk that holds `path`."""
    dev = os.stat(path).st_dev
    node = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}").resolve()
    if (node / "partition").exists():
        node = node.parent
    ra = node / "queue" / "read_ahead_kb"
    if not ra.exists():
        raise SystemExit(f"{path} is not on a block device with read-ahead ({ra}); "
                         "run from a checkout on a disk, not tmpfs or overlay")
    return ra


def get(url: str) -> None:
    try:
        urllib.request.urlopen(url, timeout=5).read()
    except OSError:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--temporal-bin", default=shutil.which("temporal"))
    ap.add_argument("--idle-secs", type=float, default=20.0)
    ap.add_argument("--out", default=str(ROOT / "scripts" / "hot-text.txt"))
    ap.add_argument("--binary", help="an already built aligned binary (skips the build)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("profile-hot-text: run as root (it turns read-ahead off for a while)")
    if not args.temporal_bin:
        raise SystemExit("profile-hot-text: no `temporal` on PATH; pass --temporal-bin")

    built = Path(args.binary) if args.binary else build()
    work = Path(tempfile.mkdtemp(prefix="hot-text.", dir=ROOT / "target"))
    binary = work / "stigmer"
    shutil.copyfile(built, binary)
    binary.chmod(0o755)
    home = work / "home"
    port, http = free_ports(2)
    ra = read_ahead_file(binary)
    saved = ra.read_text().strip()
    daemon = None
    stages = []  # (name, new pages)
    seen = set()

    def stage(name, run):
        run()
        now = resident(binary)
        stages.append((name, sorted(now - seen)))
        seen.update(now)

    def cli(*a):
        subprocess.run([str(binary), "local", *a, "--home", str(home)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def record():
        try:
            return json.loads((home / "stigmer.pid").read_text())
        except (OSError, ValueError):
            return {}

    def ready():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2).status == 200
        except OSError:
            return False

    def temporal_pid():
        return record().get("temporal", {}).get("pid")

    def recovered(old):
        wait_until("Temporal back", lambda: temporal_pid() not in (None, old) and ready())

    start = ["start", "--port", str(port), "--headless", "--http-addr", f"127.0.0.1:{http}",
             "--temporal-bin", args.temporal_bin, "--db-file", str(work / "temporal.db")]

    def at_work():
        for path in ("/metrics", "/status", "/healthz", "/livez", "/readyz", "/"):
            get(f"http://127.0.0.1:{http}{path}")
        old = temporal_pid()
        os.kill(old, signal.SIGKILL)
        recovered(old)
        old = temporal_pid()
        os.kill(old, signal.SIGSTOP)
        recovered(old)
        time.sleep(args.idle_secs)  # the idle window is the point, not a wait
        for path in ("/metrics", "/status"):
            get(f"http://127.0.0.1:{http}{path}")

    try:
        ra.write_text("0")
        evict(binary)
        stage("status, no daemon", lambda: cli("status"))
        stage("start", lambda: (cli(*start), wait_until("ready", ready)))
        daemon = record().get("daemon", {}).get("pid")
        stage("status and an idempotent start", lambda: [cli(*a) for a in
                                                         (["status"], start, ["status"])])
        stage("the daemon at work", at_work)
        stage("stop", lambda: cli("stop"))
    finally:
        ra.write_text(saved)
        if daemon and running(daemon):
            cli("stop")
    pages = text_functions(binary)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            stdout=subprocess.PIPE, text=True).stdout.strip()
    lines = [
        "# The functions `stigmer local` runs, in the order the static build",
        "# places them first (scripts/link-hot-first.sh). Made by",
        f"# scripts/profile-hot-text.py on {datetime.date.today()} at commit {commit}.",
    ]
    done = set()
    total = 0
    for name, new in stages:
        names = [s for p in new for s in pages.get(p, [])]
        names = [n for n in names if not (n in done or done.add(n))]
        total += len(names)
        lines.append(f"# {name}: {len(names)} functions")
        lines.extend(names)
        print(f"{name}: {len(new)} pages, {len(names)} new functions", file=sys.stderr)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}: {total} functions", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
