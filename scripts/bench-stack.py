#!/usr/bin/env python3
"""A 50-service stack: how the supervisor's cost grows with the stack.

Fifty small HTTP servers (`python3 -m http.server`, each on its own port,
in an empty directory), half of them depending on one of the other half.
In interleaved rounds, the same programs are started and stopped by:

  floor        a script that starts the first level in parallel, waits
               for their ports, then the second level, and waits again;
               stop: SIGTERM to each, wait until every one is gone
  stigmer      `stigmer local start` (ready = http, depends_on), `stop`
  supervisord  every program at once (no dependencies, no readiness:
               start is timed until every port answers), `shutdown`
  honcho       a Procfile (no dependencies either), SIGTERM

Then the idle cost of `stigmer local` with the 50 services at their
default health checks (every second each): CPU seconds per minute of the
daemon (from /proc) and its RSS.

  scripts/bench-stack.py                     # 50 services, 5 rounds, 60 s idle
  scripts/bench-stack.py --services 6 --rounds 1 --idle-secs 5 --contenders floor,stigmer   # CI smoke

Writes bench-results/stack/results.json (raw samples) and prints a table.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import cpu_seconds, free_ports, rss_mib, wait_gone  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PY = shutil.which("python3")


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_ports(ports, limit=120.0) -> None:
    deadline = time.monotonic() + limit
    left = set(ports)
    while left:
        left = {p for p in left if not answers(p)}
        if left and time.monotonic() > deadline:
            raise SystemExit(f"ports {sorted(left)[:5]}... never answered")
        if left:
            time.sleep(0.005)


# HTTP/1.1 (keep-alive), as the servers of every maintained web framework
# speak it; `--protocol HTTP/1.0` for the server that closes after each
# answer (http.server's own default).
PROTOCOL = "HTTP/1.1"


def server(port: int) -> list:
    return [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--protocol", PROTOCOL]


class Stack:
    def __init__(self, n: int, work: Path):
        self.work = work
        self.www = work / "www"
        self.www.mkdir()
        self.ports = free_ports(n)
        half = n // 2
        self.first = self.ports[:half]
        self.second = self.ports[half:]
        # Service i of the second level depends on service i % half of the first.
        self.dep = {p: self.first[i % max(half, 1)] for i, p in enumerate(self.second)}

    def name(self, port: int) -> str:
        return f"s{self.ports.index(port)}"


def floor(st: Stack) -> dict:
    t0 = time.monotonic()
    procs = []
    for level in (st.first, st.second):
        procs += [
            subprocess.Popen(server(p), cwd=st.www, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for p in level
        ]
        wait_ports(level)
    start = time.monotonic() - t0
    t1 = time.monotonic()
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait()
    return {"start_s": start, "stop_s": time.monotonic() - t1}


def stigmer_config(st: Stack, http: int, temporal: str) -> str:
    # Attached to the run's one Temporal: its own start and stop are not
    # what this benchmark measures (the floor script has no Temporal).
    out = [f"[temporal]\naddress = '{temporal}'\nhttp_addr = '127.0.0.1:{http}'\n"]
    for p in st.ports:
        deps = f"depends_on = ['{st.name(st.dep[p])}']\n" if p in st.dep else ""
        out.append(
            f"[services.{st.name(p)}]\ncommand = {json.dumps(server(p))}\ncwd = '{st.www}'\n"
            f"ready = {{ http = 'http://127.0.0.1:{p}/' }}\n{deps}"
        )
    return "\n".join(out)


def stigmer(st: Stack, binary: str, temporal: str, idle_secs: float = 0) -> dict:
    home = st.work / "home"
    (http,) = free_ports(1)
    cfg = st.work / "stigmer.toml"
    cfg.write_text(stigmer_config(st, http, temporal))
    cmd = lambda *a: [binary, "local", *a, "--home", str(home)]
    t0 = time.monotonic()
    subprocess.run(cmd("start", "--config", str(cfg)), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic() - t0
    out = {"start_s": start}
    daemon = int(json.loads((home / "stigmer.pid").read_text())["daemon"]["pid"])
    if idle_secs:
        time.sleep(2)  # past the start: only the steady state counts
        c0 = cpu_seconds(daemon)
        time.sleep(idle_secs)
        c1 = cpu_seconds(daemon)
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/status", timeout=5) as r:
            doc = json.load(r)
        # Each service's http check runs every second (the default).
        checks = sum(1 for s in doc["services"].values() if "http" in s["health"])
        out.update(
            idle_cpu_s_per_min=(c1 - c0) * 60 / idle_secs,
            idle_rss_mib=rss_mib(daemon),
            checks_per_s=checks,  # each service's http check runs every second
            restarts=sum(s["restarts"]["count"] for s in doc["services"].values()),
        )
    t1 = time.monotonic()
    subprocess.run(cmd("stop"), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out["stop_s"] = time.monotonic() - t1
    return out


def supervisord(st: Stack) -> dict:
    conf = st.work / "supervisord.conf"
    sock = st.work / "supervisor.sock"
    lines = [
        f"[unix_http_server]\nfile={sock}\n",
        f"[supervisord]\nnodaemon=false\nlogfile={st.work}/supervisord.log\npidfile={st.work}/supervisord.pid\n",
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
        f"[supervisorctl]\nserverurl=unix://{sock}\n",
    ]
    for p in st.ports:
        lines.append(
            f"[program:{st.name(p)}]\ncommand={' '.join(server(p))}\ndirectory={st.www}\n"
            "startsecs=0\nstopwaitsecs=10\nstdout_logfile=NONE\nstderr_logfile=NONE\n"
        )
    conf.write_text("\n".join(lines))
    t0 = time.monotonic()
    subprocess.run([shutil.which("supervisord"), "-c", str(conf)], check=True)
    wait_ports(st.ports)
    start = time.monotonic() - t0
    pid = int((st.work / "supervisord.pid").read_text())
    t1 = time.monotonic()
    subprocess.run([shutil.which("supervisorctl"), "-c", str(conf), "shutdown"], check=True, stdout=subprocess.DEVNULL)
    wait_gone([pid])
    return {"start_s": start, "stop_s": time.monotonic() - t1}


def honcho(st: Stack) -> dict:
    (st.work / "Procfile").write_text(
        "".join(f"{st.name(p)}: {' '.join(server(p))}\n" for p in st.ports)
    )
    t0 = time.monotonic()
    h = subprocess.Popen(
        [shutil.which("honcho"), "-d", str(st.www), "-f", str(st.work / "Procfile"), "start"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_ports(st.ports)
    start = time.monotonic() - t0
    t1 = time.monotonic()
    h.send_signal(signal.SIGTERM)
    h.wait()
    wait_ports_closed(st.ports)
    return {"start_s": start, "stop_s": time.monotonic() - t1}


class Temporal:
    """One dev server for the whole run, which every stigmer round attaches to."""

    def __init__(self, work: Path):
        port, ui = free_ports(2)
        self.address = f"127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [shutil.which("temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
             "--port", str(port), "--http-port", str(ui), "--log-level", "error"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_ports([port], limit=60)

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait()


def wait_ports_closed(ports, limit=60.0) -> None:
    deadline = time.monotonic() + limit
    while any(answers(p) for p in ports):
        if time.monotonic() > deadline:
            raise SystemExit("servers outlived the stop")
        time.sleep(0.005)


def main() -> int:
    global PROTOCOL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--idle-secs", type=float, default=60)
    ap.add_argument("--contenders", default="floor,stigmer,supervisord,honcho")
    ap.add_argument("--stigmer-bin", default=None)
    ap.add_argument("--protocol", default=PROTOCOL, choices=["HTTP/1.1", "HTTP/1.0"])
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "stack"))
    a = ap.parse_args()
    PROTOCOL = a.protocol
    binary = a.stigmer_bin or str(ROOT / "target" / "release" / "stigmer")
    contenders = a.contenders.split(",")
    for c, tool in (("supervisord", "supervisord"), ("honcho", "honcho")):
        if c in contenders and not shutil.which(tool):
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "supervisor" if c == "supervisord" else "honcho"], check=True)
    keep = tempfile.TemporaryDirectory(prefix="stigmer-bench-temporal-")
    temporal = Temporal(Path(keep.name)) if "stigmer" in contenders else None
    try:
        return measure(a, contenders, binary, temporal)
    finally:
        if temporal:
            temporal.close()
        keep.cleanup()


def measure(a, contenders, binary, temporal) -> int:
    run = {
        "floor": floor,
        "stigmer": lambda st: stigmer(st, binary, temporal.address),
        "supervisord": supervisord,
        "honcho": honcho,
    }
    samples = {c: [] for c in contenders}
    for r in range(a.rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for c in order:
            with tempfile.TemporaryDirectory(prefix="stigmer-bench-stack-") as t:
                s = run[c](Stack(a.services, Path(t)))
            samples[c].append(s)
            print(f"round {r + 1} {c:<12} start {s['start_s']:.3f} s  stop {s['stop_s']:.3f} s", flush=True)
    idle = None
    if "stigmer" in contenders and a.idle_secs > 0:
        with tempfile.TemporaryDirectory(prefix="stigmer-bench-stack-") as t:
            idle = stigmer(Stack(a.services, Path(t)), binary, temporal.address, a.idle_secs)
    med = lambda c, k: statistics.median(s[k] for s in samples[c])
    table = {
        "services": a.services,
        "protocol": PROTOCOL,
        "rounds": a.rounds,
        "start_s": {c: med(c, "start_s") for c in contenders},
        "stop_s": {c: med(c, "stop_s") for c in contenders},
        "idle": idle,
        "samples": samples,
    }
    if "floor" in contenders and "stigmer" in contenders:
        table["start_vs_floor"] = med("stigmer", "start_s") / med("floor", "start_s")
        table["stop_minus_floor_s"] = med("stigmer", "stop_s") - med("floor", "stop_s")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(table, indent=2))
    print()
    print("| contender | start → all ready (median s) | stop → all gone (median s) |")
    print("|---|---|---|")
    for c in contenders:
        print(f"| {c} | {table['start_s'][c]:.3f} | {table['stop_s'][c]:.3f} |")
    if "start_vs_floor" in table:
        print(f"\nstigmer start {table['start_vs_floor']:.2f}× the floor; stop floor + {table['stop_minus_floor_s'] * 1000:.0f} ms")
    if idle:
        print(
            f"idle with {a.services} services: {idle['idle_cpu_s_per_min']:.3f} CPU s/min "
            f"({idle['idle_cpu_s_per_min'] / 60 * 100:.2f} % of a core), RSS {idle['idle_rss_mib']:.1f} MiB, "
            f"{idle['checks_per_s']:.0f} health checks/s ({idle['idle_cpu_s_per_min'] / 60 / max(idle['checks_per_s'], 1) * 1e6:.0f} µs CPU each), restarts {idle['restarts']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
