#!/usr/bin/env bash
# Install what the tests need (if missing) and run the whole suite.
# Safe to re-run; works on a fresh Debian machine with Rust and Python.
set -euo pipefail
cd "$(dirname "$0")/.."

# Everything the tests need (Temporal, Python packages, Debian packages).
source scripts/deps.sh

# A busy laptop: STIGMER_TEST_BURNERS=2 scripts/test.sh runs the suite
# with two processes burning a CPU each beside it (each in a process group
# of its own, killed with the group when this script ends however it
# ends). The suite must pass this way as it does on an idle machine.
burners=()
stop_burners() {
  for b in "${burners[@]}"; do kill -KILL -- "-$b" 2>/dev/null || true; done
}
trap stop_burners EXIT
for _ in $(seq 1 "${STIGMER_TEST_BURNERS:-0}"); do
  setsid sh -c 'while :; do :; done' &
  burners+=("$!")
done

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
