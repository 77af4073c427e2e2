"""What the node pages and API take and give.

Credentials go in (``NodeCredentials``) and never come out: reads say only whether some are set.
How a node is reached is a set of fields, never an address typed by an operator: a transport from
an allowlist, a host name or IP address, a port, a login name and one of the panel's own SSH keys.
The driver builds the hypervisor's address (a libvirt URI) from these itself, so nothing an
operator types is ever parsed by libvirt, ssh or a shell (issue 10: a URI parameter could carry
``;command=…`` to ssh, and a NUL could hide a file path from a check).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from corral.drivers.base import (
    REMOTE_TRANSPORTS,
    Endpoint,
    HostInfo,
    Transport,
    check_host,
    check_host_key,
    check_login,
)
from corral.drivers.registry import driver_kinds
from corral.kit.text import has_control_characters
from corral.models.nodes import Node, NodeStatus

MAX_ID = 2**63 - 1
MIB = 1024**2
GIB = 1024**3
OVERSELL_MIN = 1.0
OVERSELL_MAX = 10.0

# The transports each driver may be given. A driver not listed takes none (deny by default).
TRANSPORTS: dict[str, frozenset[Transport]] = {"libvirt": frozenset(Transport)}
TRANSPORT_LABELS: dict[Transport, str] = {
    Transport.SSH: "SSH (libvirtd on another machine, with a panel key)",
    Transport.TLS: "TLS (libvirtd's TLS port, libvirt client certificates)",
    Transport.LOCAL: "Local (libvirtd on the panel's machine)",
    Transport.TEST: "Test (libvirt's in-memory demo hypervisor)",
}

_RESOURCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
NodeName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=_RESOURCE_NAME),
    Field(description="1-100 letters, digits, dots, dashes or underscores, e.g. `syd1-hv03`."),
]
PoolName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=_RESOURCE_NAME)]
NodeHost = Annotated[
    str,
    StringConstraints(max_length=253),
    AfterValidator(check_host),
    Field(description="The node's DNS name or IP address (no port, user or path), e.g. `hv01.example.net`."),
]
Login = Annotated[
    str,
    StringConstraints(max_length=32),
    AfterValidator(check_login),
    Field(description="The login on the node for SSH, e.g. `corral`: lowercase letters, digits, `-`, `_`."),
]
HostKey = Annotated[
    str,
    StringConstraints(max_length=2000),
    AfterValidator(check_host_key),
    Field(
        description="The node's SSH host key, `type base64` (its /etc/ssh/ssh_host_ed25519_key.pub): "
        "the only key the panel accepts from it."
    ),
]
Port = Annotated[
    int, Field(ge=1, le=65535, description="Omit for the transport's default (SSH 22, TLS 16514).")
]
KeyId = Annotated[
    int, Field(ge=1, le=MAX_ID, description="One of the panel's node SSH keys (`/api/v1/admin/node-keys`).")
]
DriverKind = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
DomainType = Literal["kvm", "qemu"]
Oversell = Annotated[float, Field(ge=OVERSELL_MIN, le=OVERSELL_MAX)]
Cpus = Annotated[int, Field(gt=0, le=100_000)]
MemoryMib = Annotated[int, Field(gt=0, le=2**40)]
DiskGib = Annotated[int, Field(gt=0, le=2**40)]
# The connection's own fields, as stored on the node row.
ENDPOINT_FIELDS = ("transport", "host", "port", "ssh_user", "ssh_key_id", "ssh_host_key")


def check_driver(kind: str) -> str:
    if kind not in driver_kinds():
        raise ValueError(f"no driver named {kind!r}; choose one of {', '.join(driver_kinds())}")
    return kind


def check_endpoint(driver: str, values: dict[str, Any]) -> None:
    """Which fields go with which transport; raises ValueError naming the problem. Used when the
    fields arrive together and again on the merged row when only some of them change."""
    transport = values.get("transport")
    if transport is None:
        raise ValueError("choose how the panel reaches the node (transport)")
    allowed = TRANSPORTS.get(driver, frozenset())
    if transport not in allowed:
        names = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"the {driver} driver takes the transports: {names}")
    remote = transport in REMOTE_TRANSPORTS
    if remote and not values.get("host"):
        raise ValueError(f"the {transport} transport needs the node's host name or IP address")
    if not remote and (values.get("host") or values.get("port")):
        raise ValueError(f"the {transport} transport takes no host or port")
    ssh = transport == Transport.SSH
    if ssh and not (values.get("ssh_user") and values.get("ssh_key_id") and values.get("ssh_host_key")):
        raise ValueError(
            "the ssh transport needs a login name, one of the panel's SSH keys and the node's host key"
        )
    if not ssh and (values.get("ssh_user") or values.get("ssh_key_id") or values.get("ssh_host_key")):
        raise ValueError("a login name, SSH key and host key go with the ssh transport only")


def endpoint_of(values: Any, private_key: str | None = None) -> Endpoint:
    """The driver's view of a node's (or form's) connection fields."""
    return Endpoint(
        transport=Transport(values.transport),
        host=values.host,
        port=values.port,
        user=values.ssh_user,
        private_key=private_key,
        host_key=values.ssh_host_key,
    )


def describe(values: Any) -> str:
    """How a node is reached, in a few words (``ssh corral@hv01:22``), or what is missing."""
    if values.transport is None:
        return "not set: enter the connection again"
    return endpoint_of(values).describe()


class NodeCredentials(BaseModel):
    """How the panel logs in to the node. Stored encrypted; never shown or returned."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    password: Annotated[SecretStr, Field(max_length=1000)] | None = None

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None and has_control_characters(value):
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
    transport: Transport
    host: NodeHost | None = None
    port: Port | None = None
    ssh_user: Login | None = None
    ssh_key_id: KeyId | None = None
    ssh_host_key: HostKey | None = None
    credentials: NodeCredentials | None = None
    storage_pool: PoolName = "default"
    network: PoolName = "default"
    domain_type: DomainType = "kvm"

    _driver = field_validator("driver")(check_driver)

    @model_validator(mode="after")
    def _fields_fit_transport(self) -> Self:
        check_endpoint(self.driver, self.model_dump(include=set(ENDPOINT_FIELDS)))
        return self


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
    maintenance: StrictBool = Field(default=False, description="Start in maintenance instead of online.")
    allow_unreachable: StrictBool = Field(
        default=False,
        description="Save even if the connection test fails; the node is then stored offline with the error.",
    )


class NodeUpdate(BaseModel):
    """Fields to change. Changing how the node is reached runs the connection test again."""

    model_config = ConfigDict(extra="forbid")

    name: NodeName | None = None
    location_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    driver: DriverKind | None = None
    transport: Transport | None = None
    host: NodeHost | None = None
    port: Port | None = None
    ssh_user: Login | None = None
    ssh_key_id: KeyId | None = None
    ssh_host_key: HostKey | None = None
    credentials: NodeCredentials | None = Field(default=None, description="Replaces the stored ones.")
    clear_credentials: StrictBool = False
    storage_pool: PoolName | None = None
    network: PoolName | None = None
    domain_type: DomainType | None = None
    cpu_total: Cpus | None = None
    memory_total_mib: MemoryMib | None = None
    disk_total_gib: DiskGib | None = None
    cpu_oversell: Oversell | None = None
    memory_oversell: Oversell | None = None
    disk_oversell: Oversell | None = None
    allow_unreachable: StrictBool = False

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
        """Plain column changes (credentials are handled apart). Giving ``transport`` replaces the
        whole connection: its fields left out are cleared. Without it, the connection fields given
        change alone (a new host for the same ssh node, say)."""
        skip = {"credentials", "clear_credentials", "allow_unreachable"}
        found = {
            key: value
            for key, value in self.model_dump(exclude_unset=True, exclude_none=True).items()
            if key not in skip
        }
        if "transport" in found:
            found.update({name: found.get(name) for name in ENDPOINT_FIELDS})
        return found


class NodeMaintenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool = Field(description="True to put the node in maintenance, false to bring it back.")


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
    transport: Transport | None = Field(description="Null when the connection must be entered again.")
    host: str | None
    port: int | None
    ssh_user: str | None
    ssh_key_id: int | None
    ssh_host_key: str | None
    connection: str = Field(description="How the node is reached, in a few words, e.g. `ssh corral@hv01`.")
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
        values["connection"] = describe(node)
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
