"""A private OpenSSH server on loopback, for the ssh transport's end-to-end test.

It runs Debian's ``sshd`` (installed, or unpacked into ``.data/sshd`` by
``scripts/install-system-deps.sh --test``) with a configuration of its own: a fresh host key, one
authorized key, public-key login only, on a free port of 127.0.0.1. The login is the user running
the tests (root here), which is who may reach libvirtd's socket on this machine.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
SSHD_CANDIDATES = (Path("/usr/sbin/sshd"), REPO_ROOT / ".data/sshd/usr/sbin/sshd")


def sshd_program() -> Path:
    for candidate in SSHD_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise AssertionError(
        "no sshd: run scripts/install-system-deps.sh --test (it unpacks one into .data/sshd)"
    )


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    host_key: str  # "type base64", as the node form takes it


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def running_sshd(authorized_key: str) -> Iterator[SshServer]:
    """sshd on 127.0.0.1 accepting ``authorized_key`` (one ``authorized_keys`` line) only."""
    program = sshd_program()
    # sshd's privilege separation needs this directory (a service install would create it).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="corral-sshd-") as folder:
        root = Path(folder)
        host_key = root / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(host_key)], check=True
        )
        (root / "authorized_keys").write_text(authorized_key.strip() + "\n")
        port = free_port()
        config = root / "sshd_config"
        # OpenSSH 9.8 and later run helper programs; an unpacked copy says where they are.
        helpers = [
            f"{option} {path}"
            for option, path in (
                ("SshdSessionPath", program.parent.parent / "lib/openssh/sshd-session"),
                ("SshdAuthPath", program.parent.parent / "lib/openssh/sshd-auth"),
            )
            if path.is_file() and not str(program).startswith("/usr/")
        ]
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {root / 'authorized_keys'}",
                    f"PidFile {root / 'sshd.pid'}",
                    f"AllowUsers {getpass.getuser()}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",
                    "UsePAM no",
                    *helpers,
                    "",
                ]
            )
        )
        process = subprocess.Popen(
            [str(program), "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(
                lambda: process.poll() is not None or _accepts(port), deadline_s=15, what="sshd to listen"
            )
            if process.poll() is not None:
                raise AssertionError(f"sshd exited: {process.stderr.read() if process.stderr else ''}")
            key_type, data = (root / "ssh_host_ed25519_key.pub").read_text().split()[:2]
            yield SshServer(
                host="127.0.0.1", port=port, user=getpass.getuser(), host_key=f"{key_type} {data}"
            )
        finally:
            process.terminate()
            process.wait(timeout=10)
