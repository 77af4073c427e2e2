"""What the node pages and API take and give.

Credentials go in (``NodeCredentials``) and never come out: reads say only whether some are set.
A connection URI may not carry a password (that belongs in the encrypted credentials), may only
use the schemes its driver is meant for, and may not pass libvirt options that run commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from corral.drivers.base import HostInfo
from corral.drivers.registry import driver_kinds
from corral.models.nodes import Node, NodeStatus

MAX_ID = 2**63 - 1
MIB = 1024**2
GIB = 1024**3
OVERSELL_MIN = 1.0
OVERSELL_MAX = 10.0

# URI schemes each driver may be given. ``qemu+ext`` (runs a local command) and plain ``qemu+tcp``
# (no encryption, usually no authentication) are left out on purpose.
URI_SCHEMES: dict[str, frozenset[str]] = {
    "libvirt": frozenset(
        {"test", "qemu", "qemu+ssh", "qemu+libssh", "qemu+libssh2", "qemu+tls", "qemu+unix"}
    ),
}
# Drivers not listed above speak HTTPS APIs (Proxmox, VirtFusion).
DEFAULT_URI_SCHEMES = frozenset({"https"})
# libvirt URI parameters an operator may set. The others can name a command to run on either end
# (command, netcat, proxy), a local socket, or switch off host key checks (no_verify).
URI_PARAMETERS = frozenset({"keyfile", "known_hosts", "known_hosts_verify", "pkipath", "sshauth", "mode"})

_RESOURCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
NodeName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=_RESOURCE_NAME),
    Field(description="1-100 letters, digits, dots, dashes or underscores, e.g. `syd1-hv03`."),
]
PoolName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=_RESOURCE_NAME)]
ConnectionUri = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]
DriverKind = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
DomainType = Literal["kvm", "qemu"]
Oversell = Annotated[float, Field(ge=OVERSELL_MIN, le=OVERSELL_MAX)]
Cpus = Annotated[int, Field(gt=0, le=100_000)]
MemoryMib = Annotated[int, Field(gt=0, le=2**40)]
DiskGib = Annotated[int, Field(gt=0, le=2**40)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_driver(kind: str) -> str:
    if kind not in driver_kinds():
        raise ValueError(f"no driver named {kind!r}; choose one of {', '.join(driver_kinds())}")
    return kind


def check_uri(uri: str, driver: str) -> str:
    """Refuse a URI the driver should not be given; returns it unchanged otherwise."""
    if _CONTROL.search(uri) or " " in uri:
        raise ValueError("the URI may not contain spaces or control characters")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  # raises ValueError on a malformed port
    except ValueError as error:
        raise ValueError(f"not a valid URI: {error}") from None
    allowed = URI_SCHEMES.get(driver, DEFAULT_URI_SCHEMES)
    if parts.scheme not in allowed:
        raise ValueError(f"the {driver} driver takes URIs starting with {', '.join(sorted(allowed))}")
    if parts.scheme == "test" and not (parts.path == "/default" or parts.path.endswith(".xml")):
        # libvirt's test driver reads the named file: keep it to its own world, or XML fixtures.
        raise ValueError("test URIs are test:///default or test:///<file>.xml")
    if parts.password is not None:
        raise ValueError("put the password in the credentials, not in the URI (URIs are shown on pages)")
    if driver in URI_SCHEMES:
        names = {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
        refused = sorted(names - URI_PARAMETERS)
        if refused:
            raise ValueError(f"URI parameters not allowed: {', '.join(refused)}")
    return uri


class NodeCredentials(BaseModel):
    """How the panel logs in to the node. Stored encrypted; never shown or returned."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    password: Annotated[SecretStr, Field(max_length=1000)] | None = None

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None and _CONTROL.search(value):
            raise ValueError("the username may not contain control characters")
        return value or None

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    def is_empty(self) -> bool:
        return self.username is None and self.password is None

    def plain(self) -> dict[str, str]:
        """The JSON that gets encrypted."""
        values: dict[str, str] = {}
        if self.username is not None:
            values["username"] = self.username
        if self.password is not None:
            values["password"] = self.password.get_secret_value()
        return values


class NodeConnectionFields(BaseModel):
    """What reaching a node takes: shared by create and by the connection test."""

    model_config = ConfigDict(extra="forbid")

    driver: DriverKind = "libvirt"
    connection_uri: ConnectionUri
    credentials: NodeCredentials | None = None
    storage_pool: PoolName = "default"
    network: PoolName = "default"
    domain_type: DomainType = "kvm"

    _driver = field_validator("driver")(check_driver)

    @field_validator("connection_uri")
    @classmethod
    def _uri_fits_driver(cls, value: str, info: ValidationInfo) -> str:
        driver = info.data.get("driver")
        # An unknown driver has its own error already; the URI is judged once the driver is known.
        return check_uri(value, driver) if isinstance(driver, str) else value


class NodeConnectionTest(NodeConnectionFields):
    """A connection test of form values; ``node_id`` lends the stored credentials of a node being
    edited when no new ones are given."""

    node_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class NodeCreate(NodeConnectionFields):
    name: NodeName
    location_id: int = Field(ge=1, le=MAX_ID)
    cpu_total: Cpus | None = Field(default=None, description="Omit to use what the node reports.")
    memory_total_mib: MemoryMib | None = Field(default=None, description="Omit to use what the node reports.")
    disk_total_gib: DiskGib | None = Field(
        default=None, description="Omit to use the storage pool's size as the node reports it."
    )
    cpu_oversell: Oversell = 1.0
    memory_oversell: Oversell = 1.0
    disk_oversell: Oversell = 1.0
    maintenance: bool = Field(default=False, description="Start in maintenance instead of online.")
    allow_unreachable: bool = Field(
        default=False,
        description="Save even if the connection test fails; the node is then stored offline with the error.",
    )


class NodeUpdate(BaseModel):
    """Fields to change. Changing how the node is reached runs the connection test again."""

    model_config = ConfigDict(extra="forbid")

    name: NodeName | None = None
    location_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    driver: DriverKind | None = None
    connection_uri: ConnectionUri | None = None
    credentials: NodeCredentials | None = Field(default=None, description="Replaces the stored ones.")
    clear_credentials: bool = False
    storage_pool: PoolName | None = None
    network: PoolName | None = None
    domain_type: DomainType | None = None
    cpu_total: Cpus | None = None
    memory_total_mib: MemoryMib | None = None
    disk_total_gib: DiskGib | None = None
    cpu_oversell: Oversell | None = None
    memory_oversell: Oversell | None = None
    disk_oversell: Oversell | None = None
    allow_unreachable: bool = False

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str | None) -> str | None:
        return None if value is None else check_driver(value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.clear_credentials and self.credentials is not None and not self.credentials.is_empty():
            raise ValueError("give new credentials or clear them, not both")
        return self

    def changes(self) -> dict[str, Any]:
        """Plain column changes (credentials are handled apart)."""
        skip = {"credentials", "clear_credentials", "allow_unreachable"}
        return {
            key: value
            for key, value in self.model_dump(exclude_unset=True, exclude_none=True).items()
            if key not in skip
        }


class NodeMaintenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(description="True to put the node in maintenance, false to bring it back.")


class HostInfoRead(BaseModel):
    hostname: str
    cpus: int
    cpu_model: str
    cpu_mhz: int
    memory_mib: int
    free_memory_mib: int
    storage_total_gib: int
    storage_free_gib: int
    hypervisor: str
    hypervisor_version: str
    driver_version: str

    @classmethod
    def of(cls, host: HostInfo) -> HostInfoRead:
        return cls(
            hostname=host.hostname,
            cpus=host.cpus,
            cpu_model=host.cpu_model,
            cpu_mhz=host.cpu_mhz,
            memory_mib=host.memory_bytes // MIB,
            free_memory_mib=host.free_memory_bytes // MIB,
            storage_total_gib=host.storage_total_bytes // GIB,
            storage_free_gib=host.storage_free_bytes // GIB,
            hypervisor=host.hypervisor,
            hypervisor_version=host.hypervisor_version,
            driver_version=host.driver_version,
        )


class ConnectionTestResult(BaseModel):
    """The outcome of asking the node for its host information. A failure is a result, not an
    error: ``ok`` is false and ``error`` holds the driver's message (never a traceback)."""

    ok: bool
    status: NodeStatus = Field(description="The status the node would have after this result.")
    error: str | None = None
    host: HostInfoRead | None = None


class NodeUsage(BaseModel):
    """What the node's servers take, against what may be sold (capacity times oversell)."""

    servers: int = 0
    vcpus: int = 0
    memory_mib: int = 0
    disk_gib: int = 0


class NodeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    location_id: int
    driver: str
    connection_uri: str
    credentials_set: bool
    storage_pool: str
    network: str
    domain_type: str
    cpu_total: int
    memory_total_mib: int
    disk_total_gib: int
    cpu_oversell: float
    memory_oversell: float
    disk_oversell: float
    status: NodeStatus
    last_checked_at: datetime | None
    last_error: str | None
    created_at: datetime
    usage: NodeUsage = Field(default_factory=NodeUsage)

    @classmethod
    def of(cls, node: Node, usage: NodeUsage | None = None) -> NodeRead:
        values = {name: getattr(node, name) for name in cls.model_fields if hasattr(node, name)}
        values["credentials_set"] = node.credentials_encrypted is not None
        values["usage"] = usage or NodeUsage()
        return cls.model_validate(values)


class NodeTemplateRead(BaseModel):
    template_id: int
    slug: str
    name: str
    image_ref: str
    present: bool
    checked_at: datetime | None
    active: bool


class NodeDetailRead(NodeRead):
    location_slug: str
    templates: list[NodeTemplateRead] = Field(default_factory=list)


@dataclass(frozen=True)
class NodeRow:
    """A node for the list page: the row, its location's name and what its servers use."""

    node: Node
    location_name: str
    usage: NodeUsage

    def sellable(self, resource: Literal["cpu", "memory", "disk"]) -> float:
        node = self.node
        if resource == "cpu":
            return node.cpu_total * node.cpu_oversell
        if resource == "memory":
            return node.memory_total_mib * node.memory_oversell
        return node.disk_total_gib * node.disk_oversell

    def read(self) -> NodeRead:
        return NodeRead.of(self.node, self.usage)


class NodeCheckRead(BaseModel):
    """A health check run on demand: the node afterwards, and what the node said."""

    node: NodeRead
    previous_status: NodeStatus
    result: ConnectionTestResult
