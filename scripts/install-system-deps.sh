#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Corral needs, only those that are missing.
#   scripts/install-system-deps.sh          what `make demo` needs: Python venv, Node.js and npm, and
#                                           what pip needs to build libvirt-python (headers, compiler)
#   scripts/install-system-deps.sh --test   plus what the test suite needs: ssh-keygen, Chromium for browser
#                                           tests, a running libvirt daemon with QEMU, and sshd
#                                           (unpacked into .data/, never installed as a service)
set -euo pipefail
cd "$(dirname "$0")/.."

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

want=()
command -v python3 >/dev/null || want+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || want+=(python3-venv)
command -v node >/dev/null || want+=(nodejs)
command -v npm >/dev/null || want+=(npm)
# libvirt-python is only published as source on PyPI: pip compiles it against libvirt's headers.
pkg-config --exists libvirt 2>/dev/null || want+=(libvirt-dev pkg-config)
command -v gcc >/dev/null || want+=(gcc)
python3 - <<'PY' 2>/dev/null || want+=(python3-dev)
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
if [[ "${1:-}" == "--test" ]]; then
  [[ -x /usr/bin/chromium ]] || want+=(chromium)
  installed fonts-dejavu-core || want+=(fonts-dejavu-core)
  # The SSH key tests make real keys and compare fingerprints with `ssh-keygen -lf`.
  command -v ssh-keygen >/dev/null || want+=(openssh-client)
fi

if [[ ${#want[@]} -gt 0 ]]; then
  echo "installing system packages: ${want[*]}"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${want[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

if [[ "${1:-}" == "--test" ]]; then
  # The driver's end-to-end tests boot a real QEMU guest under libvirtd.
  scripts/setup-libvirt.sh
  # The ssh transport's test runs a private sshd on loopback. Only the program is needed: it is
  # unpacked from Debian's package into .data/ rather than installed, so that `make test` never
  # enables an SSH server on the machine.
  if [[ ! -x /usr/sbin/sshd && ! -x .data/sshd/usr/sbin/sshd ]]; then
    echo "unpacking sshd (openssh-server) into .data/sshd for the ssh transport test"
    mkdir -p .data/sshd
    (cd .data/sshd && apt-get download -qq -o APT::Sandbox::User=root openssh-server \
      && dpkg-deb -x openssh-server_*.deb . && rm -f openssh-server_*.deb)
  fi
  # sshd drops privileges to this user (the package's own install would create it).
  getent passwd sshd >/dev/null || useradd --system --no-create-home --home-dir /run/sshd \
    --shell /usr/sbin/nologin sshd
fi
