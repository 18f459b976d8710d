#!/usr/bin/env bash
# Build stigmer 0.1.0, the release before the protocol change (commit
# e309311), for the compatibility tests (tests/integration/compat.rs), and
# print its path. It is built from this clone's history (a shallow clone is
# deepened first), in the main target directory,
# so the dependencies the two trees share are compiled once.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=e309311
out="$PWD/target/previous/stigmer-0.1.0"
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
if ! git cat-file -e "$rev^{commit}" 2>/dev/null && [ "$(git rev-parse --is-shallow-repository)" = true ]; then
  git fetch --quiet --unshallow >&2 || true
fi
if ! git cat-file -e "$rev^{commit}" 2>/dev/null; then
  echo "commit $rev (stigmer 0.1.0) is not in this clone; run \`git fetch --unshallow\`" >&2
  exit 1
fi
src="$PWD/target/previous/src"
rm -rf "$src"
mkdir -p "$src"
git archive "$rev" | tar -x -C "$src"
# Its binary lands where ours does: move it away before ours is built.
cargo build --quiet --manifest-path "$src/Cargo.toml" --target-dir "$PWD/target" --bin stigmer >&2
cp target/debug/stigmer "$out"
rm target/debug/stigmer
echo "$out"
