#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Corral needs, only those that are missing.
#   scripts/install-system-deps.sh          what `make demo` needs (Python venv, Node.js, npm)
#   scripts/install-system-deps.sh --test   plus what the test suite needs (Chromium for browser tests)
set -euo pipefail

want=()
python3 -c 'import venv, ensurepip' 2>/dev/null || want+=(python3-venv)
command -v python3 >/dev/null || want+=(python3)
command -v node >/dev/null || want+=(nodejs)
command -v npm >/dev/null || want+=(npm)
if [[ "${1:-}" == "--test" ]]; then
  [[ -x /usr/bin/chromium ]] || want+=(chromium)
  fc-list 2>/dev/null | grep -qi dejavu || want+=(fonts-dejavu-core)
fi

if [[ ${#want[@]} -eq 0 ]]; then
  exit 0
fi
echo "installing system packages: ${want[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${want[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
