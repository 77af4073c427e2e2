"""Opening (and re-opening) a libvirt connection, per-node options, and error translation.

libvirt-python is blocking. Everything here runs inside a worker thread (the driver runs each
operation on its node's pool, ``corral.drivers.executor``, with a deadline); libvirt connections
are safe to share between threads.

A dead or hung peer is noticed two ways. The driver's deadline stops the caller waiting; and
libvirt's keepalive (a ping every ``KEEPALIVE_INTERVAL_S``; the connection is closed after
``KEEPALIVE_COUNT`` unanswered) makes a call blocked on an open connection return with an error,
which frees its thread. Keepalive needs libvirt's event loop, which runs in one daemon thread per
process. Nothing of ours can free a thread stuck *opening* a connection (an ssh or TLS handshake
the peer never answers, a libvirtd that never replies to the first call); only the transport's own
timeout, if it has one (libssh gives up after 10 s), or the peer closing the socket does. The
bounded per-node pool is what keeps such threads from starving anything else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import quote, urlencode

import libvirt

from corral.drivers.base import (
    DriverAuthError,
    DriverConnection,
    DriverError,
    Endpoint,
    InstanceNotFound,
    PermanentDriverError,
    TransientDriverError,
    Transport,
    UnsupportedOperation,
)


def _ignore_libvirt_error(_context: object, _error: object) -> None:
    """libvirt's default handler prints every error to stderr, even the ones we expect and handle
    (a missing domain on an idempotent destroy); errors still arrive as exceptions."""


libvirt.registerErrorHandler(_ignore_libvirt_error, None)

KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
_event_loop_lock = threading.Lock()
_event_loop_started = False


def _run_event_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def start_event_loop() -> None:
    """libvirt's default event loop, once per process, in a daemon thread (keepalive needs it)."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


@dataclass(frozen=True)
class LibvirtOptions:
    """Per-node settings, from ``DriverConnection.options`` (all strings there)."""

    domain_type: Literal["kvm", "qemu", "test"] = "kvm"
    disk_mode: Literal["overlay", "copy"] = "overlay"
    cdrom_bus: Literal["sata", "ide", "scsi"] = "sata"
    network_type: Literal["network", "bridge", "user"] = "network"
    serial_log_dir: str = "/var/log/libvirt/qemu"
    vnc_listen: str = "127.0.0.1"
    machine: str | None = None
    video: str = "vga"

    @classmethod
    def parse(cls, options: Mapping[str, str], *, transport: Transport) -> LibvirtOptions:
        choices: dict[str, tuple[str, ...]] = {
            "domain_type": ("kvm", "qemu"),
            "disk_mode": ("overlay", "copy"),
            "cdrom_bus": ("sata", "ide", "scsi"),
            "network_type": ("network", "bridge", "user"),
        }
        free_text = {"serial_log_dir", "vnc_listen", "machine", "video"}
        unknown = set(options) - set(choices) - free_text
        if unknown:
            raise PermanentDriverError(f"unknown libvirt node options: {sorted(unknown)}")
        for key, allowed in choices.items():
            if key in options and options[key] not in allowed:
                raise PermanentDriverError(f"libvirt option {key} must be one of {allowed}")
        values: dict[str, Any] = dict(options)
        # libvirt's in-memory test driver only accepts its own domain type.
        if transport == Transport.TEST:
            values["domain_type"] = "test"
        return cls(**values)


# --- addresses ------------------------------------------------------------------------------------


def uri_for(endpoint: Endpoint, files: SshFiles | None = None) -> str:
    """The libvirt URI for ``endpoint``, built only from its validated fields.

    Nothing typed by an operator is pasted in as text that libvirt would parse further: the host is
    a checked name or address, the login a checked name, and the only query parameters are ours.
    SSH goes through libvirt's libssh transport, which (unlike the one that runs the ``ssh``
    program) takes a known-hosts file of our own: the node's pinned host key, checked strictly
    (``known_hosts_verify=normal``: an unknown or changed key is refused, never added), and the
    panel's key as the only way to log in (``sshauth=privkey``). libvirt splits parameters on ``&``
    and ``;``, so every value is percent-encoded whatever it holds.
    """
    if endpoint.transport == Transport.TEST:
        return "test:///default"
    if endpoint.transport == Transport.LOCAL:
        return "qemu:///system"
    assert endpoint.host is not None  # Endpoint checks this
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    port = f":{endpoint.port}" if endpoint.port else ""
    if endpoint.transport == Transport.TLS:
        return f"qemu+tls://{host}{port}/system"
    params: dict[str, str] = {"known_hosts_verify": "normal", "sshauth": "privkey"}
    if files is not None:
        params.update(keyfile=str(files.key), known_hosts=str(files.known_hosts))
    query = urlencode(params, quote_via=quote, safe="/")
    return f"qemu+libssh://{endpoint.user}@{host}{port}/system?{query}"


def known_hosts_line(endpoint: Endpoint) -> str:
    """The node's pinned host key as a known_hosts line (``[host]:port`` off port 22)."""
    assert endpoint.host is not None  # Endpoint checks both for ssh
    assert endpoint.host_key is not None
    port = endpoint.port or 22
    name = endpoint.host if port == 22 else f"[{endpoint.host}]:{port}"
    return f"{name} {endpoint.host_key}\n"


class SshFiles:
    """What libssh reads from files: the panel key's private half and the node's pinned host key, in
    a fresh 0700 directory (files 0600), removed when the connection closes."""

    def __init__(self, endpoint: Endpoint) -> None:
        assert endpoint.private_key is not None
        self._dir = Path(tempfile.mkdtemp(prefix="corral-ssh-"))
        self.key = self._dir / "id_node"
        self.known_hosts = self._dir / "known_hosts"
        key = endpoint.private_key
        self._write(self.key, key if key.endswith("\n") else key + "\n")
        self._write(self.known_hosts, known_hosts_line(endpoint))

    @staticmethod
    def _write(path: Path, text: str) -> None:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(text)

    def remove(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


# --- errors ---------------------------------------------------------------------------------------

_AUTH_CODES = frozenset(
    {
        libvirt.VIR_ERR_AUTH_FAILED,
        libvirt.VIR_ERR_AUTH_CANCELLED,
        libvirt.VIR_ERR_AUTH_UNAVAILABLE,
        libvirt.VIR_ERR_ACCESS_DENIED,
    }
)
_TRANSIENT_CODES = frozenset(
    {
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_INVALID_CONN,
        libvirt.VIR_ERR_SYSTEM_ERROR,  # socket refused/reset, ssh failures
        libvirt.VIR_ERR_RPC,
        libvirt.VIR_ERR_OPERATION_TIMEOUT,
        libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
        libvirt.VIR_ERR_RESOURCE_BUSY,
    }
)
_TRANSIENT_DOMAINS = frozenset(
    {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE, libvirt.VIR_FROM_SSH, libvirt.VIR_FROM_LIBSSH}
)
# Errors after which the cached connection is useless and must be reopened.
_RECONNECT_CODES = frozenset({libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_RPC})


def error_code(error: libvirt.libvirtError) -> int:
    code = error.get_error_code()
    return int(code) if code is not None else 0


def translate(error: libvirt.libvirtError) -> DriverError:
    """One libvirt error as one of our classes (the table the jobs' retry policy relies on)."""
    code = error_code(error)
    domain = error.get_error_domain()
    message = str(error.get_error_message() or error)
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return InstanceNotFound(message)
    if code in _AUTH_CODES:
        return DriverAuthError(message)
    if code == libvirt.VIR_ERR_NO_SUPPORT:
        return UnsupportedOperation(message)
    if code in _TRANSIENT_CODES or domain in _TRANSIENT_DOMAINS:
        return TransientDriverError(message)
    return PermanentDriverError(message)


def raise_translated(error: libvirt.libvirtError) -> NoReturn:
    raise translate(error) from error


# --- the connection -------------------------------------------------------------------------------


class Connection:
    """A lazily opened, shared ``virConnect`` that is reopened after the node went away."""

    def __init__(self, settings: DriverConnection) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._conn: Any = None
        self._ssh_files: SshFiles | None = None
        self._closed = False

    def _credentials(self, credentials: list[list[Any]], _opaque: object) -> int:
        for credential in credentials:
            if credential[0] == libvirt.VIR_CRED_AUTHNAME:
                credential[4] = self._settings.username or credential[3]
            elif credential[0] == libvirt.VIR_CRED_PASSPHRASE:
                if self._settings.password is None:
                    return -1
                credential[4] = self._settings.password
            else:
                return -1
        return 0

    @property
    def connected(self) -> bool:
        """Whether a connection is open (without asking the node: no call that could block)."""
        return self._conn is not None

    def get(self) -> Any:
        with self._lock:
            if self._closed:
                raise TransientDriverError(f"the connection to {self.safe_uri} was closed")
            if self._conn is not None:
                try:
                    if self._conn.isAlive() == 1:
                        return self._conn
                except libvirt.libvirtError:
                    pass
                self._close_quietly()
            auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], self._credentials, None]
            endpoint = self._settings.endpoint
            if endpoint.private_key is not None and self._ssh_files is None:
                self._ssh_files = SshFiles(endpoint)
            if endpoint.transport != Transport.TEST:
                start_event_loop()
            try:
                conn = libvirt.openAuth(uri_for(endpoint, self._ssh_files), auth, 0)
            except libvirt.libvirtError as error:
                translated = translate(error)
                if isinstance(translated, PermanentDriverError):
                    # Failing to open is about reaching the node, never about a user's request.
                    translated = TransientDriverError(f"cannot connect to {self.safe_uri}: {error}")
                raise translated from error
            finally:
                if self._closed:  # closed while we were opening: the closer left the cleanup to us
                    self._remove_files()
            if self._closed:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
                self._remove_files()
                raise TransientDriverError(f"the connection to {self.safe_uri} was closed")
            self._conn = conn
            if endpoint.transport != Transport.TEST:
                self._keep_alive(conn)
            return conn

    @staticmethod
    def _keep_alive(conn: Any) -> None:
        # Best effort: an old libvirtd without keepalive still works, only without this early warning.
        with contextlib.suppress(libvirt.libvirtError):
            conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)

    def forget_if_broken(self, error: libvirt.libvirtError) -> None:
        if error_code(error) in _RECONNECT_CODES:
            with self._lock:
                self._close_quietly()

    def close(self) -> None:
        """Close now, or, while another thread is still opening (a peer that never answers), mark
        the connection closed and return at once: that thread closes it and removes the key files
        when (if) its attempt ends. Closing never waits for an attempt to open."""
        self._closed = True
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._close_quietly()
            self._remove_files()
        finally:
            self._lock.release()

    def _remove_files(self) -> None:
        if self._ssh_files is not None:
            self._ssh_files.remove()
            self._ssh_files = None

    def _close_quietly(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    @property
    def safe_uri(self) -> str:
        """Where the node is, for messages (never the key file)."""
        return self._settings.endpoint.describe()

    @property
    def remote_host(self) -> str | None:
        """The node's host name for a remote endpoint, None when libvirtd runs on this machine."""
        return self._settings.endpoint.host
