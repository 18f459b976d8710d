#!/usr/bin/env bash
# The linker of the static build (scripts/build-static.sh sets it): the C
# compiler driver rustc would call, with rust-lld (shipped with every Rust
# toolchain) and the functions listed in scripts/hot-text.txt placed first
# and together in .text, in that order.
#
# Why: the kernel maps a program's code in 64 KiB blocks around each page
# fault ("fault-around"), so a process's resident code is every 64 KiB
# block that holds any function it ever ran. Linked in the compiler's
# order, the functions the daemon runs are spread over most of the code;
# listed first, they fill a few blocks. The same holds for
# the short commands (`status`, an idempotent `start`): fewer faults.
# The list is made by scripts/profile-hot-text.py; what it saves is in
# docs/benchmark.md ("hot text first", measured by scripts/bench-hot-text.py).
#
# The list holds exact symbol names. Their hashes (legacy mangling's
# `17h<hash>E`, v0's crate disambiguators) change with a crate's version,
# so a name not found as it is is matched without them, when that leaves
# exactly one candidate (generic functions' instances differ only in the
# hash). A stale list only orders less: a function no longer there is
# skipped, a new one is placed after the listed ones.
#
# Environment (build-static.sh sets both):
#   STIGMER_LINK_CC      the C compiler driver (default: cc)
#   STIGMER_LINK_GCC_LD  the toolchain's gcc-ld directory (holds ld.lld)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
list="$here/hot-text.txt"
cc="${STIGMER_LINK_CC:-cc}"
: "${STIGMER_LINK_GCC_LD:?set by scripts/build-static.sh}"

# The objects and archives rustc passes (after LTO: its own object files,
# plus the C libraries' archives); an @file holds more arguments.
objs=()
for a in "$@"; do
  case "$a" in
    @*) while IFS= read -r line; do
          line="${line%\"}"; line="${line#\"}"
          case "$line" in *.o | *.rlib | *.a) objs+=("$line") ;; esac
        done <"${a#@}" ;;
    *.o | *.rlib | *.a) objs+=("$a") ;;
  esac
done

order="$(mktemp "${TMPDIR:-/tmp}/stigmer-order.XXXXXX")"
trap 'rm -f "$order"' EXIT
if ! command -v nm >/dev/null 2>&1; then
  echo "link-hot-first: nm not found (Debian: binutils); linking in rustc's order" >&2
elif [ -s "$list" ] && [ "${#objs[@]}" -gt 0 ]; then
  # Names defined in a text section, keyed by their hash-less form; then
  # the list's order, every exact name for each listed key. A member nm
  # cannot read only leaves its functions unordered.
  { nm --defined-only "${objs[@]}" 2>/dev/null || true; } |
    awk 'NF == 3 && ($2 == "t" || $2 == "T") { print $3 }' |
    sort -u |
    awk -v list="$list" '
      BEGIN {  # mawk has no {16}
        hash = "17h"; for (i = 0; i < 16; i++) hash = hash "[0-9a-f]"; hash = hash "E$"
      }
      function key(s) {
        sub(/\.llvm\.[0-9]+$/, "", s)
        sub(hash, "", s)
        gsub(/Cs[0-9A-Za-z]*_/, "", s)
        return s
      }
      { have[$0] = 1; k = key($0); n[k]++; one[k] = $0 }
      END {
        while ((getline line < list) > 0) {
          if (line ~ /^#/ || line == "") continue
          if (line in have) name = line
          else if (n[key(line)] == 1) name = one[key(line)]
          else continue
          if (!done[name]++) print name
        }
      }' >"$order"
fi
# Not exec: the EXIT trap removes the order file once the link is done.
"$cc" "$@" -fuse-ld=lld -B"$STIGMER_LINK_GCC_LD" \
  -Wl,--symbol-ordering-file="$order" -Wl,--no-warn-symbol-ordering
