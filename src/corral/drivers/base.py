"""The hypervisor driver contract: a small protocol, declared capabilities, panel-owned values, errors.

Drivers never touch the database. Jobs hand them panel value objects and get panel value objects
back; the hypervisor's own id for an instance travels only as the opaque ``external_id``. Optional
features are declared as ``Capability`` values so that a job is refused *before* it is enqueued
(and the button hidden), instead of failing at run time (Nova's ``capabilities`` idea).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from corral.kit.text import has_control_characters


class Capability(StrEnum):
    """Optional features; the core methods of ``HypervisorDriver`` are always available."""

    SNAPSHOTS = "snapshots"
    BACKUPS = "backups"
    ISO = "iso"
    MIGRATION = "migration"
    RDNS = "rdns"
    FIREWALL = "firewall"
    SERIAL_CONSOLE = "serial_console"
    VNC_CONSOLE = "vnc_console"


class InstanceState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    CRASHED = "crashed"
    STARTING = "starting"
    STOPPING = "stopping"
    UNKNOWN = "unknown"


# --- errors ---------------------------------------------------------------------------------------


class DriverError(Exception):
    """Base of everything a driver raises on purpose. ``message`` is safe to log."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class TransientDriverError(DriverError):
    """The node did not answer or was busy: retry the job with backoff."""


class DriverTimeout(TransientDriverError):
    """A call passed its deadline (connecting, or an operation on a connected node). The thread stuck
    in the hypervisor library cannot be stopped; the caller stops waiting and retries later."""


class PermanentDriverError(DriverError):
    """The request cannot succeed as asked; show the message to the user, do not retry."""


class InstanceNotFound(PermanentDriverError):
    """No instance with that ``external_id`` exists on the node."""


class UnsupportedOperation(DriverError):
    """The driver does not offer this (a missing ``Capability``, or not for this node)."""


class DriverAuthError(DriverError):
    """The node refused our credentials: mark the node unhealthy, do not retry blindly."""


class UnknownDriverKind(DriverError):
    """No driver is registered under that kind."""


# --- connection -----------------------------------------------------------------------------------


class Transport(StrEnum):
    """How the panel reaches a node's hypervisor. Operators choose one; the driver builds the address
    (a libvirt URI, say) from these fields itself, so no free text ever reaches the hypervisor
    library's own parser."""

    TEST = "test"  # libvirt's in-memory hypervisor, test:///default (demos and tests)
    LOCAL = "local"  # libvirtd on the panel's own machine, through its unix socket
    SSH = "ssh"  # libvirtd on another machine, through OpenSSH with a key the panel manages
    TLS = "tls"  # libvirtd's TLS port, with the machine's libvirt client certificates


# Which fields each transport takes; anything else is refused rather than ignored.
REMOTE_TRANSPORTS = frozenset({Transport.SSH, Transport.TLS})
DEFAULT_PORTS: Mapping[Transport, int] = {Transport.SSH: 22, Transport.TLS: 16514}

_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*$")
# POSIX-style login names: nothing an ssh command line or a URI could read as syntax.
_LOGIN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def check_host(value: str) -> str:
    """A DNS name (RFC 1123, lowercased) or an IPv4/IPv6 address without brackets or zone, else
    ValueError. Nothing else: no ports, paths, user names, options or escapes."""
    if has_control_characters(value):
        raise ValueError("a host may not contain control characters")
    candidate = value.strip().lower().removesuffix(".")
    if ":" in candidate or candidate.replace(".", "").isdigit():
        if "%" in candidate:
            raise ValueError("an IPv6 zone (%…) is not allowed in a node address")
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            raise ValueError("not a valid IP address (a host is a DNS name or an IP address only)") from None
    if not _HOST_NAME.match(candidate):
        raise ValueError("a host name is letters, digits, dashes and dots (RFC 1123), or an IP address")
    return candidate


def check_login(value: str) -> str:
    if not _LOGIN.match(value):
        raise ValueError("a login name is 1-32 lowercase letters, digits, dashes or underscores")
    return value


HOST_KEY_TYPES = frozenset(
    {"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"}
)


def check_host_key(value: str) -> str:
    """An SSH host public key as ``type base64`` (a comment after it is dropped), e.g. the first two
    fields of the node's ``/etc/ssh/ssh_host_ed25519_key.pub``; ValueError otherwise."""
    fields = value.strip().split()
    if len(fields) < 2 or fields[0] not in HOST_KEY_TYPES:
        raise ValueError(
            "a host key is one line such as `ssh-ed25519 AAAA…`"
            " (the node's /etc/ssh/ssh_host_ed25519_key.pub)"
        )
    key_type, data = fields[0], fields[1]
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the host key's data is not valid base64") from None
    # The blob starts with its own type name, length-prefixed: a pasted key of another type or a
    # truncated one is caught here rather than at connection time.
    length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if blob[4 : 4 + length].decode("ascii", "replace") != key_type or len(blob) < 4 + length + 16:
        raise ValueError("the host key's data does not match its type (was it cut short?)")
    return f"{key_type} {data}"


@dataclass(frozen=True)
class Endpoint:
    """Where a node's hypervisor answers, as validated fields. An ``ssh`` endpoint logs in with
    ``private_key`` (OpenSSH text, a panel-managed key) and trusts only ``host_key``."""

    transport: Transport
    host: str | None = None
    port: int | None = None
    user: str | None = None
    private_key: str | None = field(default=None, repr=False)
    host_key: str | None = None

    def __post_init__(self) -> None:
        # Checked again here (the schemas check first): a driver must be unable to receive an
        # address that was not built from valid fields, whoever constructs it.
        remote = self.transport in REMOTE_TRANSPORTS
        _check(
            remote == (self.host is not None),
            f"the {self.transport} transport {'needs' if remote else 'takes no'} host",
        )
        if self.host is not None:
            _check(check_host(self.host) == self.host, "the host must be given in its normal form")
        _check(self.port is None or (remote and 1 <= self.port <= 65535), "invalid port for this transport")
        ssh = self.transport == Transport.SSH
        _check((self.user is not None) == ssh, "a login name goes with the ssh transport only")
        if self.user is not None:
            check_login(self.user)
        _check(self.private_key is None or ssh, "a private key goes with the ssh transport only")
        _check(
            (self.host_key is not None) == ssh, "a host key goes with the ssh transport (and it needs one)"
        )
        if self.host_key is not None:
            _check(check_host_key(self.host_key) == self.host_key, "the host key must be `type base64`")

    def describe(self) -> str:
        """A short description for pages and messages (never the key)."""
        if self.transport not in REMOTE_TRANSPORTS:
            return str(self.transport)
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.transport} {user}{host}{port}"


@dataclass(frozen=True)
class DriverTimeouts:
    """Deadlines for one node's calls (``CORRAL_DRIVERS__…`` settings, per driver kind).

    ``connect_s`` bounds opening the connection; ``operation_s`` every call on an open one;
    ``build_s`` the calls that copy disks (create, reinstall, resize, destroy). ``threads`` is how many
    calls to this node may block at once: calls past it wait their turn (and their deadline), so a
    node that never answers holds at most that many threads and never the ones other nodes use.
    """

    connect_s: float = 30.0
    operation_s: float = 120.0
    build_s: float = 1800.0
    threads: int = 4

    def __post_init__(self) -> None:
        _check(min(self.connect_s, self.operation_s, self.build_s) > 0, "deadlines must be positive")
        _check(self.threads >= 1, "a node needs at least one thread")


@dataclass(frozen=True)
class DriverConnection:
    """How to reach one node: what the nodes service stores (secrets decrypted) and hands over.

    ``options`` holds driver-specific settings as strings (each driver validates its own keys), so
    the nodes table needs one JSON column rather than a column per driver.
    """

    endpoint: Endpoint
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    storage_pool: str = "default"
    network: str = "default"
    options: Mapping[str, str] = field(default_factory=dict)
    timeouts: DriverTimeouts = field(default_factory=DriverTimeouts)


# --- value objects in -----------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class NetworkInterface:
    """One NIC. ``addresses`` are CIDR strings (IPv4 and IPv6 alike); the MAC is panel-assigned so
    that a reinstall keeps it. ``network`` overrides the node's default network or bridge."""

    mac: str
    addresses: tuple[str, ...] = ()
    gateway4: str | None = None
    gateway6: str | None = None
    nameservers: tuple[str, ...] = ()
    network: str | None = None

    def __post_init__(self) -> None:
        _check(bool(_MAC.match(self.mac)), f"not a lower-case MAC address: {self.mac!r}")
        for address in self.addresses:
            ipaddress.ip_interface(address)  # raises ValueError on garbage
        for gateway in (self.gateway4, self.gateway6):
            if gateway is not None:
                ipaddress.ip_address(gateway)
        for server in self.nameservers:
            ipaddress.ip_address(server)


@dataclass(frozen=True)
class DirectKernelBoot:
    """Boot a kernel (and initrd) that lives on the node, instead of the disk's boot loader."""

    kernel: str
    initrd: str | None = None
    cmdline: str = ""


@dataclass(frozen=True)
class ImageRef:
    """The OS template an instance's disk starts from: a volume in a storage pool of the node."""

    volume: str
    pool: str | None = None  # None: the connection's storage pool
    format: Literal["qcow2", "raw"] = "qcow2"
    kernel_boot: DirectKernelBoot | None = None


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a driver needs to build (or rebuild) one instance.

    ``name`` is the hypervisor-side name (unique per node, chosen by the panel); ``server_id`` is
    the panel's id, recorded on the instance so the reconciler can recognise it.
    """

    server_id: str
    name: str
    hostname: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    image: ImageRef
    interfaces: tuple[NetworkInterface, ...] = ()
    root_password_hash: str | None = field(default=None, repr=False)
    ssh_authorized_keys: tuple[str, ...] = ()
    vnc_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check(bool(_NAME.match(self.name)), f"instance name not allowed: {self.name!r}")
        _check(bool(self.server_id) and len(self.server_id) <= 128, "server_id must be 1-128 chars")
        labels = self.hostname.split(".")
        _check(
            len(self.hostname) <= 253 and all(_HOSTNAME_LABEL.match(label) for label in labels),
            f"not a lower-case RFC 1123 host name: {self.hostname!r}",
        )
        _check(self.vcpus >= 1, "vcpus must be at least 1")
        _check(self.memory_mib >= 32, "memory_mib must be at least 32")
        _check(self.disk_gib >= 1, "disk_gib must be at least 1")
        # VNC's classic authentication uses only the first 8 characters; refuse longer ones
        # rather than silently weakening what the user was shown.
        _check(
            self.vnc_password is None or 1 <= len(self.vnc_password) <= 8,
            "vnc_password must be 1-8 characters",
        )
        for key in self.ssh_authorized_keys:
            _check("\n" not in key and key.strip() != "", "ssh keys are single non-empty lines")
        macs = [nic.mac for nic in self.interfaces]
        _check(len(macs) == len(set(macs)), "duplicate MAC address")


@dataclass(frozen=True)
class ResizeSpec:
    vcpus: int
    memory_mib: int
    disk_gib: int

    def __post_init__(self) -> None:
        _check(self.vcpus >= 1 and self.memory_mib >= 32 and self.disk_gib >= 1, "resize below minimum")


# --- value objects out ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceRef:
    """An instance as the node sees it. ``server_id`` is None for domains the panel did not make."""

    external_id: str
    name: str
    server_id: str | None
    state: InstanceState


@dataclass(frozen=True)
class HostInfo:
    hostname: str
    cpus: int
    cpu_model: str
    cpu_mhz: int
    memory_bytes: int
    free_memory_bytes: int
    storage_total_bytes: int
    storage_free_bytes: int
    hypervisor: str
    hypervisor_version: str
    driver_version: str


@dataclass(frozen=True)
class InstanceStats:
    """Counters since the instance started (cumulative); the stats job stores deltas."""

    sampled_at: datetime
    cpu_time_ns: int
    vcpus: int
    memory_bytes: int
    memory_used_bytes: int | None
    memory_available_bytes: int | None
    disk_read_bytes: int
    disk_write_bytes: int
    net_rx_bytes: int
    net_tx_bytes: int


@dataclass(frozen=True)
class ConsoleEndpoint:
    """Where the instance's console listens. ``host`` is as seen from the node (VNC listens on the
    node's loopback); ``tunnel_host`` names the node to reach it through, None for a local node."""

    protocol: Literal["vnc"]
    host: str
    port: int
    password: str | None = field(repr=False)
    tunnel_host: str | None = None


# --- the protocol ---------------------------------------------------------------------------------


@runtime_checkable
class HypervisorDriver(Protocol):
    """One node. Methods are idempotent where a retried job needs it (``destroy`` of a missing
    instance succeeds; ``create`` of an instance that already exists for the same server returns
    it). Every method may raise the ``DriverError`` subclasses above and nothing else on purpose."""

    kind: str
    capabilities: frozenset[Capability]

    async def host_info(self) -> HostInfo: ...

    async def list_instances(self) -> list[InstanceRef]: ...

    async def create(self, spec: InstanceSpec, *, start: bool = True) -> InstanceRef: ...

    async def destroy(self, external_id: str) -> None: ...

    async def start(self, external_id: str) -> None: ...

    async def shutdown(self, external_id: str) -> None:
        """Ask the guest to power off (ACPI) and return at once."""
        ...

    async def stop(self, external_id: str, *, force: bool, timeout_s: float = 60.0) -> None:
        """Power off: ``force`` pulls the plug; otherwise ACPI and wait up to ``timeout_s``, then
        raise ``TransientDriverError`` (the job decides whether to escalate to ``force``)."""
        ...

    async def reboot(self, external_id: str, *, force: bool = False) -> None: ...

    async def state(self, external_id: str) -> InstanceState: ...

    async def reinstall(self, external_id: str, spec: InstanceSpec) -> InstanceRef:
        """Fresh disk from ``spec.image``, fresh cloud-init seed, same MACs; leaves it running.

        The new disk is made before the old one is touched: when this raises, the instance is left
        on its previous disk, running if it was (the panel then hands the server back as it was).
        """
        ...

    async def resize(self, external_id: str, resize: ResizeSpec) -> None:
        """Change CPU, memory and disk size of a stopped instance (disks only grow)."""
        ...

    async def console(self, external_id: str) -> ConsoleEndpoint: ...

    async def stats(self, external_id: str) -> InstanceStats: ...

    async def aclose(self) -> None: ...


def require(driver: HypervisorDriver, capability: Capability) -> None:
    """Raise ``UnsupportedOperation`` unless the driver declares ``capability``: call it before a
    job for an optional feature is enqueued."""
    if capability not in driver.capabilities:
        raise UnsupportedOperation(f"the {driver.kind} driver does not support {capability.value}")
