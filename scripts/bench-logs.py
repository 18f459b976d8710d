#!/usr/bin/env python3
"""Log throughput: a service writing short lines as fast as it can.

Three ways to get the same bytes (`yes LINE | head -c SIZE`) into a file,
in interleaved rounds:

  redirect   the program redirected straight to a file (the floor)
  cat        the program piped through `cat` into a file (CPU of `cat`)
  stigmer    the program as a service of `stigmer local`: its output
             pumped by the daemon into its log (rotating, with the
             capture-time index)

Reported per round: throughput (MiB/s of wall time from start until the
last byte is in the file) and CPU seconds of the copier (`cat`, or the
daemon's own CPU time from /proc). Then 10 such services at once while
Temporal's health checks run: failed checks and restarts must stay 0
(`--parallel-rounds N` runs the floods N times; each run also reports the
checks that timed out and were asked again instead of counted).

  scripts/bench-logs.py                     # 1 GiB, 5 rounds, 10 services of 1 GiB
  scripts/bench-logs.py --size-mib 64 --rounds 1 --parallel-mib 32   # CI smoke

Writes bench-results/logs/results.json (raw samples) and prints a table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import cpu_seconds, free_ports, wait_gone  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LINE = "a short log line of forty-odd bytes, as services print"


def writer(size: int) -> str:
    return f"yes '{LINE}' | head -c {size}"


def redirect(size: int, out: Path) -> dict:
    t0 = time.monotonic()
    subprocess.run(["sh", "-c", f"{writer(size)} > {out}"], check=True)
    wall = time.monotonic() - t0
    assert out.stat().st_size == size
    return {"wall_s": wall, "cpu_s": None}


def cat(size: int, out: Path) -> dict:
    t0 = time.monotonic()
    prog = subprocess.Popen(["sh", "-c", writer(size)], stdout=subprocess.PIPE)
    with open(out, "wb") as f:
        c = subprocess.Popen(["cat"], stdin=prog.stdout, stdout=f)
        prog.stdout.close()
        _, status, usage = os.wait4(c.pid, 0)
    prog.wait()
    wall = time.monotonic() - t0
    assert out.stat().st_size == size
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}


class Stigmer:
    """One instance in its own home, with `services` writers of `size`."""

    def __init__(self, binary: str, work: Path, services: int, size: int):
        self.bin = binary
        self.home = work / "home"
        self.http = free_ports(1)[0]
        port = free_ports(1)[0]
        # Each writer waits for the file `go`, so the daemon's CPU and the
        # wall time are measured from the first byte on.
        self.go = work / "go"
        gate = f"while [ ! -e {self.go} ]; do sleep 0.005; done; "
        svc = "".join(
            f"[services.w{i}]\ncommand = ['sh', '-c', \"{gate}{writer(size)}\"]\n"
            f"restart = 'never'\n"
            for i in range(services)
        )
        self.config = work / "stigmer.toml"
        self.config.write_text(
            f"[temporal]\nport = {port}\nheadless = true\n"
            f"http_addr = '127.0.0.1:{self.http}'\n\n{svc}"
        )
        self.names = [f"w{i}" for i in range(services)]

    def cmd(self, *args: str) -> list:
        return [self.bin, "local", *args, "--home", str(self.home)]

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/status", timeout=5) as r:
            return json.load(r)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def run(self, size: int) -> dict:
        """Start, let the writers go, wait until their bytes are in the logs."""
        subprocess.run(
            self.cmd("start", "--config", str(self.config)),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        daemon = int(json.loads((self.home / "stigmer.pid").read_text())["daemon"]["pid"])
        pids = [self.status()["services"][n]["pid"] for n in self.names]
        cpu0 = cpu_seconds(daemon)
        t0 = time.monotonic()
        self.go.write_text("")
        # Until the writers are done, watch them in /proc, not through the
        # daemon: a /status request every few ms would cost the daemon CPU
        # that this benchmark counts as the copy's.
        wait_gone(pids, 600, "stigmer: the writers did not finish in 600 s")
        deadline = time.monotonic() + 600
        while True:
            doc = self.status()
            written = sum(doc["services"][n]["log_written_bytes"] for n in self.names)
            dropped = sum(doc["services"][n]["log_dropped_bytes"] for n in self.names)
            if written + dropped >= size * len(self.names):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"stigmer: only {written} bytes written after 600 s")
            time.sleep(0.002)
        wall = time.monotonic() - t0
        # The writers started with the stack; the daemon's CPU since it ran.
        cpu = cpu_seconds(daemon) - cpu0
        result = {
            "wall_s": wall,
            "cpu_s": cpu,
            "dropped": dropped,
            "grpc_failures": self.metric(
                'stigmer_temporal_health_check_failures_total{layer="grpc"}'
            ),
            "restarts": doc["restarts"]["count"],
            # Timed-out checks asked again instead of counted.
            "second_looks": {
                reason: self.metric(
                    f'stigmer_temporal_health_check_retries_total{{reason="{reason}"}}'
                )
                for reason in ("cpu_pressure", "late_timer")
            },
        }
        subprocess.run(self.cmd("stop"), check=True, stdout=subprocess.DEVNULL)
        # A failed check says why in the daemon's log, which goes with the
        # temporary home: keep those lines.
        log = self.home / "logs" / "daemon.log"
        result["failed_checks"] = [
            line for line in log.read_text(errors="replace").splitlines()
            if "health check failed" in line or "not counted" in line
        ] if log.exists() else []
        return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--parallel-mib", type=int, default=1024)
    ap.add_argument("--parallel-rounds", type=int, default=1, help="runs of the parallel floods")
    ap.add_argument("--stigmer-bin", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "logs"))
    a = ap.parse_args()
    binary = a.stigmer_bin or str(ROOT / "target" / "release" / "stigmer")
    if not Path(binary).exists():
        raise SystemExit(f"{binary} does not exist: build it (scripts/build-static.sh) or pass --stigmer-bin")
    size = a.size_mib << 20
    samples = {"redirect": [], "cat": [], "stigmer": []}
    order = ["redirect", "cat", "stigmer"]
    for r in range(a.rounds):
        for name in order[r % 3 :] + order[: r % 3]:
            with tempfile.TemporaryDirectory(prefix="stigmer-bench-logs-", dir=ROOT / "target") as t:
                work = Path(t)
                if name == "redirect":
                    s = redirect(size, work / "out")
                elif name == "cat":
                    s = cat(size, work / "out")
                else:
                    s = Stigmer(binary, work, 1, size).run(size)
                s["mib_per_s"] = a.size_mib / s["wall_s"]
                samples[name].append(s)
                print(f"round {r + 1} {name:<9} {s['mib_per_s']:8.0f} MiB/s  cpu {s['cpu_s']}", flush=True)
    floods = []
    for r in range(a.parallel_rounds):
        with tempfile.TemporaryDirectory(prefix="stigmer-bench-logs-", dir=ROOT / "target") as t:
            f = Stigmer(binary, Path(t), a.parallel, a.parallel_mib << 20).run(a.parallel_mib << 20)
        f["mib_per_s"] = a.parallel * a.parallel_mib / f["wall_s"]
        floods.append(f)
        print(f"floods {r + 1}: {f['mib_per_s']:.0f} MiB/s, gRPC failures {f['grpc_failures']:.0f}, "
              f"second looks {f['second_looks']}, restarts {f['restarts']}", flush=True)
        for line in f["failed_checks"]:
            print(f"  {line}", flush=True)
    total = lambda key: sum(f[key] for f in floods)
    par = {
        "mib_per_s": statistics.median(f["mib_per_s"] for f in floods),
        "grpc_failures": total("grpc_failures"),
        "restarts": total("restarts"),
        "dropped": total("dropped"),
        "second_looks": {k: sum(f["second_looks"][k] for f in floods) for k in floods[0]["second_looks"]},
    }
    med = lambda name, key: statistics.median(s[key] for s in samples[name])
    table = {
        "size_mib": a.size_mib,
        "rounds": a.rounds,
        "throughput_mib_s": {n: med(n, "mib_per_s") for n in samples},
        "throughput_vs_redirect": med("stigmer", "mib_per_s") / med("redirect", "mib_per_s"),
        "cpu_s": {"cat": med("cat", "cpu_s"), "stigmer": med("stigmer", "cpu_s")},
        "cpu_vs_cat": med("stigmer", "cpu_s") / med("cat", "cpu_s"),
        "parallel": {
            "services": a.parallel,
            "mib_each": a.parallel_mib,
            "mib_per_s": par["mib_per_s"],
            "grpc_failures": par["grpc_failures"],
            "restarts": par["restarts"],
            "dropped": par["dropped"],
            "second_looks": par["second_looks"],
            "runs": a.parallel_rounds,
            "samples": floods,
        },
        "samples": samples,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(table, indent=2))
    print()
    print("| figure | redirect | cat | stigmer | ratio |")
    print("|---|---|---|---|---|")
    t = table["throughput_mib_s"]
    print(f"| throughput MiB/s (median of {a.rounds}) | {t['redirect']:.0f} | {t['cat']:.0f} | {t['stigmer']:.0f} | {table['throughput_vs_redirect']:.2f}× redirect |")
    print(f"| CPU s of the copier | – | {table['cpu_s']['cat']:.2f} | {table['cpu_s']['stigmer']:.2f} | {table['cpu_vs_cat']:.2f}× cat |")
    p = table["parallel"]
    print(f"| {p['services']} services × {p['mib_each']} MiB at once, {p['runs']} run(s) | | | {p['mib_per_s']:.0f} MiB/s (median) | gRPC failures {p['grpc_failures']:.0f}, restarts {p['restarts']}, dropped {p['dropped']}, second looks {p['second_looks']['cpu_pressure']:.0f} (CPU pressure) {p['second_looks']['late_timer']:.0f} (late timer) |")
    ok = p["grpc_failures"] == 0 and p["restarts"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
