#!/usr/bin/env bash
# Gets a libvirt daemon with QEMU running on this machine, for the driver's end-to-end tests and for
# a single-box install. Idempotent: installs only missing Debian packages, creates only missing
# users and folders, starts only daemons that are not running. No systemd needed (containers, CI).
#
#   scripts/setup-libvirt.sh            install + start; exits 0 when qemu:///system answers
#   scripts/setup-libvirt.sh --install  install packages and the user only, start nothing
set -euo pipefail

mode="${1:-start}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup-libvirt: need root (or sudo)" >&2; exit 1; }
  sudo=(sudo)
fi

# Packages: the daemon and its QEMU driver, the emulator (with its BIOS and NIC ROMs), qemu-img for
# the dir pool's qcow2 overlays, virsh for people, libvirt-dev + pkg-config so pip can build
# libvirt-python. libvirt-daemon-system is left out on purpose: it wants systemd units and polkit.
want=()
for pkg in libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config \
  qemu-system-x86 qemu-utils seabios ipxe-qemu; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || want+=("$pkg")
done
# The guest image for the tests is built from packages fetched with `apt-get download`, which needs
# package lists that know the cloud kernel.
lists_ok=1
apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || lists_ok=0
if [[ ${#want[@]} -gt 0 || $lists_ok -eq 0 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
fi
if [[ ${#want[@]} -gt 0 ]]; then
  echo "setup-libvirt: installing ${want[*]}"
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

# The user QEMU runs as under qemu:///system (Debian's build default). libvirt-daemon-system's
# maintainer scripts would create it; we do the same by hand.
getent group kvm >/dev/null || "${sudo[@]}" groupadd --system kvm
getent group libvirt-qemu >/dev/null || "${sudo[@]}" groupadd --system libvirt-qemu
if ! id libvirt-qemu >/dev/null 2>&1; then
  "${sudo[@]}" useradd --system --gid kvm --groups libvirt-qemu --home-dir /var/lib/libvirt \
    --no-create-home --shell /usr/sbin/nologin libvirt-qemu
fi
"${sudo[@]}" mkdir -p /var/log/libvirt/qemu /var/run/libvirt /var/lib/libvirt/images
if [[ -e /dev/kvm ]]; then
  "${sudo[@]}" chgrp kvm /dev/kvm 2>/dev/null || true
  "${sudo[@]}" chmod 0660 /dev/kvm 2>/dev/null || true
fi

if [[ "$mode" == "--install" ]]; then
  exit 0
fi

running() { pgrep -x "$1" >/dev/null 2>&1; }
# virtlogd writes the guests' serial logs (and QEMU's own log); libvirtd refuses to start a guest
# without it when stdio_handler is the default "logd".
running virtlogd || "${sudo[@]}" virtlogd -d
running libvirtd || "${sudo[@]}" libvirtd -d

# The daemon forks before its socket is ready: wait for it to answer, with a deadline.
for _ in $(seq 1 100); do
  if "${sudo[@]}" virsh -c qemu:///system version >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.1
done
echo "setup-libvirt: libvirtd did not answer on qemu:///system within 10 s" >&2
exit 1
