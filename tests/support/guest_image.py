"""A tiny bootable guest for the end-to-end test: Debian's cloud kernel plus a busybox initramfs.

Built from Debian packages fetched with ``apt-get download`` (no root needed, nothing installed)
and cached under ``.data/guest-image/<kernel version>/``. The initramfs's ``/init`` acts like a
minimal cloud-init: it mounts the ``cidata`` CD-ROM, sets the host name from ``meta-data`` and
prints marker lines to the serial port (which libvirt logs to a file) and to the VGA console:

    CORRAL-HOSTNAME=<local-hostname>
    CORRAL-INSTANCE-ID=<instance-id>
    CORRAL-DISK-SECTORS=<size of /dev/vda in 512-byte sectors>
    CORRAL-READY

It also runs busybox ``acpid`` so that an ACPI power-button press (graceful shutdown) powers off.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".data" / "guest-image"
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
# The cloud kernel builds these as modules (CONFIG_ISO9660_FS=m, CONFIG_VIRTIO_BLK=m, ...). The CD-ROM
# sits on virtio-scsi (the cloud kernel has no AHCI driver); dependencies are resolved from the
# modules' own "depends=" records.
MODULES = ("virtio_pci", "virtio_scsi", "sr_mod", "isofs", "virtio_blk", "button", "evdev")
KERNEL_CMDLINE = "console=tty0 console=ttyS0,115200 loglevel=4"

INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "$1" > /dev/ttyS0; echo "$1" > /dev/tty0; }
for module in $(cat /modules/order); do insmod "/modules/$module" || say "CORRAL-INSMOD-FAILED=$module"; done
# -d: stay in the foreground (the daemonised acpid missed the button here) and log actions.
acpid -d > /dev/ttyS0 2>&1 &
# Devices appear asynchronously after the drivers load: wait (bounded) for the CD-ROM.
tries=0
while [ ! -b /dev/sr0 ] && [ $tries -lt 300 ]; do sleep 0.1; tries=$((tries + 1)); done
if mount -t iso9660 -o ro /dev/sr0 /mnt; then
  hostname "$(sed -n 's/^local-hostname: *//p' /mnt/meta-data)"
  say "CORRAL-HOSTNAME=$(hostname)"
  say "CORRAL-INSTANCE-ID=$(sed -n 's/^instance-id: *//p' /mnt/meta-data)"
else
  say "CORRAL-NO-SEED"
fi
tries=0
while [ ! -e /sys/block/vda/size ] && [ $tries -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
say "CORRAL-DISK-SECTORS=$(cat /sys/block/vda/size 2>/dev/null || echo none)"
say "CORRAL-UPTIME=$(cut -d ' ' -f1 /proc/uptime)"
say "CORRAL-READY"
while true; do sleep 3600; done
"""

POWER_BUTTON_SCRIPT = """#!/bin/sh
echo CORRAL-POWER-BUTTON > /dev/ttyS0
poweroff -f
"""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    cmdline: str


class GuestImageError(RuntimeError):
    pass


def _run(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise GuestImageError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def kernel_package() -> str:
    """The versioned kernel package the cloud meta-package points at (e.g. linux-image-6.1.0-56-…)."""
    out = _run("apt-cache", "depends", KERNEL_META_PACKAGE)
    match = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)", out)
    if not match:
        raise GuestImageError(f"apt-cache knows no {KERNEL_META_PACKAGE}; run apt-get update")
    return match.group(1)


def _download_and_extract(package: str, work: Path) -> Path:
    # The _apt sandbox user cannot write to a private temp dir; we only read public packages.
    _run("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package, cwd=work)
    debs = sorted(work.glob(f"{package}_*.deb"))
    if not debs:
        raise GuestImageError(f"apt-get download {package} produced no .deb")
    target = work / package
    _run("dpkg-deb", "-x", str(debs[-1]), str(target))
    return target


def _module_index(root: Path) -> dict[str, Path]:
    return {path.stem.replace("-", "_"): path for path in root.rglob("*.ko")}


def _depends(module: Path) -> list[str]:
    match = re.search(rb"\x00depends=([^\x00]*)\x00", module.read_bytes())
    if not match or not match.group(1):
        return []
    return [name.replace("-", "_") for name in match.group(1).decode().split(",")]


def resolve_modules(index: dict[str, Path], wanted: tuple[str, ...]) -> list[Path]:
    """``wanted`` and their dependencies, dependencies first (the order insmod needs)."""
    ordered: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in index:
            raise GuestImageError(f"kernel module {name} not found in the kernel package")
        for dependency in _depends(index[name]):
            visit(dependency)
        ordered.append(index[name])

    for name in wanted:
        visit(name)
    return ordered


class _Cpio:
    """A "newc" cpio archive, the format the kernel unpacks as an initramfs."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = [self._inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        self._inode += 1
        header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
        self._out.write(header + name.encode() + b"\x00")
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\x00" * (-self._out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def build_initramfs(busybox: bytes, modules: list[Path]) -> bytes:
    archive = _Cpio()
    for directory in ("bin", "dev", "proc", "sys", "mnt", "etc", "etc/acpi", "etc/acpi/PWRF", "modules"):
        archive.directory(directory)
    archive.char_device("dev/console", 5, 1)  # so /init has a console before devtmpfs is mounted
    archive.file("bin/busybox", busybox, 0o755)
    archive.file("init", INIT_SCRIPT.encode(), 0o755)
    archive.file("etc/acpi/PWRF/00000080", POWER_BUTTON_SCRIPT.encode(), 0o755)
    for module in modules:
        archive.file(f"modules/{module.name}", module.read_bytes())
    archive.file("modules/order", "".join(f"{m.name}\n" for m in modules).encode())
    return gzip.compress(archive.finish(), compresslevel=6)


def ensure_guest_image(cache_dir: Path = CACHE_DIR) -> GuestImage:
    """The cached image, building it on first use (a ~30 MB download, a few seconds)."""
    package = kernel_package()
    target = cache_dir / package
    image = GuestImage(kernel=target / "vmlinuz", initrd=target / "initrd.gz", cmdline=KERNEL_CMDLINE)
    if image.kernel.exists() and image.initrd.exists():
        return image
    with tempfile.TemporaryDirectory(prefix="corral-guest-") as tmp:
        work = Path(tmp)
        kernel_root = _download_and_extract(package, work)
        busybox_root = _download_and_extract(BUSYBOX_PACKAGE, work)
        vmlinuz = sorted((kernel_root / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise GuestImageError(f"{package} has no /boot/vmlinuz-*")
        modules = resolve_modules(_module_index(kernel_root / "lib" / "modules"), MODULES)
        initrd = build_initramfs((busybox_root / "bin" / "busybox").read_bytes(), modules)
        staging = cache_dir / f".{package}.{os.getpid()}"
        staging.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vmlinuz[-1], staging / "vmlinuz")
        (staging / "initrd.gz").write_bytes(initrd)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic: a half-built image is never seen as cached
    return image
