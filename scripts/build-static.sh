#!/usr/bin/env bash
# Build the release binary as one static executable (musl libc, non-PIE)
# and print its path on the last line of stdout:
#
#   scripts/build-static.sh            # -> target/<arch>-unknown-linux-musl/release/stigmer
#   install -m 0755 "$(scripts/build-static.sh | tail -n1)" ~/.local/bin/stigmer
#
# This is the build we ship (docker/Dockerfile) and benchmark
# (scripts/bench.sh): no dynamic loader, no shared libraries to map and
# relocate, and dlmalloc instead of musl's allocator (src/main.rs), so
# `stigmer local status` and an idempotent `start` take 0.5–0.8 ms less
# than with the glibc build `cargo build --release` makes
# (docs/benchmark.md, "Start and status"). Both builds behave the same;
# scripts/test.sh runs the integration suite against each.
#
# Adds the musl target with rustup if it is missing. Exit status 1 with one
# line on stderr when it cannot (no rustup, or no network for it).
set -euo pipefail
cd "$(dirname "$0")/.."

target="$(uname -m)-unknown-linux-musl"
if ! rustc --print target-libdir --target "$target" 2>/dev/null | xargs -r test -d; then
  if ! command -v rustup >/dev/null 2>&1 || ! rustup target add "$target" >&2; then
    echo "build-static: the Rust target $target is not installed and rustup could not add it; run \`rustup target add $target\`, or use \`cargo build --release\` (glibc build)" >&2
    exit 1
  fi
fi
# ring (rustls's crypto, for TLS to Temporal and OTLP) compiles a little C:
# with musl's headers, through musl-gcc (Debian: musl-tools).
if ! command -v musl-gcc >/dev/null 2>&1; then
  echo "build-static: musl-gcc not found; install it (Debian: \`apt-get install musl-tools\`), or use \`cargo build --release\` (glibc build)" >&2
  exit 1
fi
export "CC_${target//-/_}=musl-gcc"
# Linked by rust-lld (in every toolchain, beside rustc) with the functions
# the daemon and the short commands run placed first and together
# (scripts/link-hot-first.sh says why).
host="$(rustc -vV | sed -n 's/^host: //p')"
STIGMER_LINK_GCC_LD="$(rustc --print sysroot)/lib/rustlib/$host/bin/gcc-ld"
if [ ! -x "$STIGMER_LINK_GCC_LD/ld.lld" ]; then
  echo "build-static: $STIGMER_LINK_GCC_LD/ld.lld not found (rust-lld ships with rustc 1.60 and later); update the toolchain (\`rustup update\`), or use \`cargo build --release\` (glibc build)" >&2
  exit 1
fi
export STIGMER_LINK_GCC_LD
upper="$(echo "$target" | tr 'a-z-' 'A-Z_')"
export "CARGO_TARGET_${upper}_LINKER=$PWD/scripts/link-hot-first.sh"
cargo build --release --locked --bin stigmer --target "$target" >&2
echo "${CARGO_TARGET_DIR:-target}/$target/release/stigmer"
