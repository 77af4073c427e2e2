"""A real libvirt daemon for the end-to-end tests, and throw-away storage pools on it.

``ensure_libvirtd`` runs ``scripts/setup-libvirt.sh`` (idempotent: installs missing Debian packages,
starts virtlogd and libvirtd without systemd) and returns the URI. It reports *why* no daemon could
be had, so that the one test that needs it can skip loudly; anything that goes wrong after the
daemon answers is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from corral.drivers.libvirt.xml import DirPoolConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup-libvirt.sh"
SYSTEM_URI = "qemu:///system"


class LibvirtUnavailable(RuntimeError):
    """No libvirt daemon could be started here; the message says what failed."""


def ensure_libvirtd(uri: str = SYSTEM_URI) -> str:
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        raise LibvirtUnavailable("not root and no sudo: cannot install or start libvirtd")
    command = [str(SETUP_SCRIPT)] if os.geteuid() == 0 else ["sudo", "-n", str(SETUP_SCRIPT)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LibvirtUnavailable(f"{SETUP_SCRIPT.name} could not run: {error}") from error
    if result.returncode != 0:
        raise LibvirtUnavailable(
            f"{SETUP_SCRIPT.name} exited {result.returncode}: {(result.stderr or result.stdout).strip()}"
        )
    try:
        libvirt.open(uri).close()
    except libvirt.libvirtError as error:
        raise LibvirtUnavailable(f"libvirtd started but {uri} does not answer: {error}") from error
    return uri


def qemu_readable_dir(prefix: str) -> Path:
    """A fresh directory QEMU (running as libvirt-qemu) can traverse: pytest's tmp_path lives under
    a 0700 directory, so guest files go under /var/tmp instead."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    return path


@dataclass(frozen=True)
class StoragePoolDir:
    name: str
    path: Path


@contextlib.contextmanager
def dir_pool(uri: str) -> Iterator[StoragePoolDir]:
    """A transient dir storage pool in a fresh directory, removed (with its files) afterwards."""
    path = qemu_readable_dir("corral-pool-")
    name = f"corral-test-{secrets.token_hex(4)}"
    conn: Any = libvirt.open(uri)
    pool = conn.storagePoolCreateXML(DirPoolConfig(name=name, path=str(path)).to_xml(), 0)
    try:
        yield StoragePoolDir(name=name, path=path)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            for volume in pool.listAllVolumes(0):
                volume.delete(0)
        with contextlib.suppress(libvirt.libvirtError):
            pool.destroy()  # a transient pool disappears when stopped
        conn.close()
        shutil.rmtree(path, ignore_errors=True)
