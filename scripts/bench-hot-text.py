#!/usr/bin/env python3
"""The static build with and without its hot-text order, side by side.

scripts/build-static.sh links the functions stigmer runs first and
together (scripts/link-hot-first.sh, scripts/hot-text.txt). This builds
the same tree a second time linked in the compiler's order (into
target/plain-text; or takes --plain) and, in interleaved rounds (the order
alternates), puts each binary through the same work:

  start → serving; 20 `status`; 20 idempotent `start`s; GET /, /status,
  /metrics, /healthz; SIGKILL of Temporal (the pid its daemon reports)
  → serving again; --idle-secs idle; then the daemon's VmRSS (RssAnon,
  RssFile) and its page faults so far; `stop`.

Reported: each figure's median per binary and hot / plain.

  scripts/bench-hot-text.py                       # 4 rounds, 20 s idle
  scripts/bench-hot-text.py --hot BIN --plain BIN --rounds 6

Writes bench-results/hot-text/results.json (raw samples) and prints a table.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import faults, free_ports, wait_gone, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def build_plain() -> str:
    """The static build linked by the default linker, in rustc's order."""
    target = f"{os.uname().machine}-unknown-linux-musl"
    env = dict(os.environ)
    env[f"CC_{target.replace('-', '_')}"] = "musl-gcc"
    env["CARGO_TARGET_DIR"] = str(ROOT / "target" / "plain-text")
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "--bin", "stigmer", "--target", target],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return str(ROOT / "target" / "plain-text" / target / "release" / "stigmer")


def build_hot() -> str:
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-static.sh")], cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True
    )
    return str(ROOT / out.stdout.strip().splitlines()[-1])


def timed(cmd: list) -> tuple:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return (time.perf_counter() - t0) * 1000, p


def proc_status(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    out["minflt"], out["majflt"] = faults(pid)
    return out


def one(binary: str, idle: float, cycles: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="stigmer-hot-text-") as work:
        home = str(Path(work) / "home")
        port, http = free_ports(2)
        base = [binary, "local"]
        start = base + ["start", "--home", home, "--port", str(port), "--http-addr", f"127.0.0.1:{http}", "--headless"]
        status = base + ["status", "--home", home]
        r = {}
        ms, p = timed(start)
        if p.returncode != 0:
            raise SystemExit(f"bench-hot-text: start failed ({p.returncode}): {p.stderr.strip()}")
        r["start_ms"] = ms
        daemon = None
        try:
            doc = json.loads(subprocess.run(status + ["--json"], stdout=subprocess.PIPE, check=True).stdout)
            daemon = doc["supervisor"]["pid"]
            r["status_ms"] = statistics.median(timed(status)[0] for _ in range(cycles))
            r["start_idem_ms"] = statistics.median(timed(start)[0] for _ in range(cycles))
            for path in ("/", "/status", "/metrics", "/healthz"):
                urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=5).read()
            # SIGKILL the Temporal this daemon reports, then wait for a new
            # one serving.
            old = doc["temporal"]["pid"]
            os.kill(old, signal.SIGKILL)

            def serving_again():
                p = subprocess.run(status + ["--json"], stdout=subprocess.PIPE)
                d = json.loads(p.stdout or "{}")
                return p.returncode == 0 and d.get("temporal", {}).get("pid") not in (None, old)

            wait_until("Temporal serving again after SIGKILL", serving_again)
            time.sleep(idle)  # the idle window measured, not a wait
            r.update(proc_status(daemon))
        finally:
            t0 = time.perf_counter()
            subprocess.run(base + ["stop", "--home", home], stdout=subprocess.DEVNULL, check=True)
            r["stop_ms"] = (time.perf_counter() - t0) * 1000
            if daemon:
                wait_gone([daemon])
        return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hot", help="the static build with the hot-text order (default: build it)")
    ap.add_argument("--plain", help="the same build in rustc's order (default: build it)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--cycles", type=int, default=20, help="status and start commands per round")
    ap.add_argument("--idle-secs", type=float, default=20.0)
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "hot-text"))
    a = ap.parse_args()
    bins = {"hot": a.hot or build_hot(), "plain": a.plain or build_plain()}
    samples = {k: [] for k in bins}
    for i in range(a.rounds):
        order = ["hot", "plain"] if i % 2 == 0 else ["plain", "hot"]
        for k in order:
            print(f"round {i + 1}/{a.rounds}: {k}", file=sys.stderr)
            samples[k].append(one(bins[k], a.idle_secs, a.cycles))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": vars(a), "binaries": bins}
    (out / "results.json").write_text(json.dumps({"meta": meta, "samples": samples}, indent=1))
    keys = ["VmRSS", "RssAnon", "RssFile", "minflt", "majflt", "start_ms", "status_ms", "start_idem_ms", "stop_ms"]
    print(f"| figure (median of {a.rounds}) | hot | plain | hot / plain |")
    print("|---|---|---|---|")
    for k in keys:
        h = statistics.median(s[k] for s in samples["hot"])
        p = statistics.median(s[k] for s in samples["plain"])
        unit = " MiB" if k.startswith(("Vm", "Rss")) else ""
        ratio = f"{h / p:.2f}×" if p else "—"
        print(f"| {k} | {h:.2f}{unit} | {p:.2f}{unit} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
