"""What IP address management takes and gives, and the address arithmetic behind the rules.

Usable addresses of a network: an IPv4 network shorter than /31 loses its network and broadcast
addresses; an IPv6 network shorter than /127 loses its first address (the subnet-router anycast
address, RFC 4291 2.6.1). /31 and /127 point-to-point links use both addresses (RFC 3021,
RFC 6164). The gateway is always one of the usable addresses and is reserved with the pool.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from corral.kit.text import SingleLine
from corral.models.ipam import IpAddress, IpPool
from corral.models.locations import Location

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

# Every usable IPv4 address is a row, so the size of a pool is capped: a /16 is 65,534 rows.
MIN_V4_PREFIX = 16
MAX_DNS_SERVERS = 4
MAX_RESERVED = 1024
MAX_ID = 2**63 - 1  # ids are BIGINT; larger ones are a 422, not a database error
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Above this the exact count stops meaning anything to a person; pages show a power of two.
_EXACT_LABEL_LIMIT = 10**9
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_SEPARATORS = re.compile(r"[\s,;]+")

PoolName = Annotated[
    SingleLine,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Field(description="Unique name shown to operators, e.g. `syd1-public-v4`."),
]


# ---------- Address arithmetic ----------


def usable_bounds(network: Network) -> tuple[Address, Address]:
    """The first and last address a pool may hold (gateway and reserved ones included)."""
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.version == 4 and network.prefixlen < 31:
        first, last = first + 1, last - 1
    elif network.version == 6 and network.prefixlen < 127:
        first += 1
    return ip_address(first), ip_address(last)


def usable_count(network: Network) -> int:
    first, last = usable_bounds(network)
    return int(last) - int(first) + 1


def count_label(count: int) -> str:
    """``65,534``, or ``≈ 2⁶⁴`` for counts only an IPv6 network reaches."""
    if count < _EXACT_LABEL_LIMIT:
        return f"{count:,}"
    return "≈ 2" + str(round(math.log2(count))).translate(_SUPERSCRIPT)


def split_list(text: str) -> list[str]:
    """Addresses typed into one box, separated by commas, semicolons, spaces or new lines."""
    return [item for item in _SEPARATORS.split(text) if item]


def _parse_network(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # an ip_network object already, or garbage the type check refuses
    text = value.strip()
    if "/" not in text:
        raise PydanticCustomError(
            "ip_network_prefix", "Write the network with its prefix length, e.g. 203.0.113.0/24."
        )
    try:
        network = ip_network(text, strict=True)
    except ValueError as error:
        try:
            loose = ip_network(text, strict=False)
        except ValueError:
            raise PydanticCustomError(
                "ip_network", "{value} is not an IPv4 or IPv6 network in CIDR notation.", {"value": text}
            ) from error
        raise PydanticCustomError(
            "ip_network_host_bits",
            "{value} has host bits set: the network is {network}.",
            {"value": text, "network": str(loose)},
        ) from error
    if network.version == 4 and network.prefixlen < MIN_V4_PREFIX:
        raise PydanticCustomError(
            "ip_network_too_large",
            "IPv4 pools are limited to /{limit} (65,534 usable addresses);"
            " split {network} into several pools.",
            {"limit": MIN_V4_PREFIX, "network": str(network)},
        )
    if usable_count(network) < 2:
        raise PydanticCustomError(
            "ip_network_too_small",
            "{network} has no room for a server once its gateway is reserved.",
            {"network": str(network)},
        )
    return network


def _parse_address(value: Any, what: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return ip_address(value.strip())
    except ValueError as error:
        raise PydanticCustomError(
            "ip_address", "{value} is not an IP address ({what}).", {"value": value.strip(), "what": what}
        ) from error


def _parse_addresses(value: Any, what: str) -> Any:
    if isinstance(value, str):
        value = split_list(value)
    if not isinstance(value, list | tuple):
        return value
    return [_parse_address(item, what) for item in value]


def _dedupe(addresses: Iterable[Address]) -> list[Address]:
    return list(dict.fromkeys(addresses))


def gateway_problem(network: Network, gateway: Address) -> str | None:
    if gateway.version != network.version:
        return f"The gateway must be an IPv{network.version} address, like the network {network}."
    first, last = usable_bounds(network)
    if gateway not in network:
        return f"The gateway {gateway} is outside {network}."
    if not int(first) <= int(gateway) <= int(last):
        return f"The gateway {gateway} is the network or broadcast address of {network}."
    return None


def reserved_problem(network: Network, addresses: Sequence[Address]) -> str | None:
    """What is wrong with the first bad address in a reserved list, or None."""
    first, last = usable_bounds(network)
    for address in addresses:
        if address.version != network.version or address not in network:
            return f"{address} is outside {network}."
        if not int(first) <= int(address) <= int(last):
            return f"{address} is the network or broadcast address of {network}; it is never handed out."
    return None


def normalise_reserved(gateway: Address, addresses: Iterable[Address]) -> list[Address]:
    """Sorted, without duplicates, without the gateway (which is always reserved anyway)."""
    return sorted((a for a in _dedupe(addresses) if a != gateway), key=int)


def _network_of(info: ValidationInfo) -> Network | None:
    network = info.data.get("network")
    return network if isinstance(network, IPv4Network | IPv6Network) else None


# ---------- Request bodies ----------


class IpPoolCreate(BaseModel):
    """A new pool. Fields are checked in order; each check that needs the network runs only when the
    network itself was valid, so a form shows one clear message per field."""

    model_config = ConfigDict(extra="forbid")

    name: PoolName
    network: Network = Field(description="CIDR, host bits clear, e.g. `203.0.113.0/24` or `2001:db8::/64`.")
    version: Literal[4, 6] | None = Field(default=None, description="Optional; must match the network.")
    gateway: Address = Field(description="Inside the network; reserved automatically.")
    dns_servers: list[Address] = Field(min_length=1, max_length=MAX_DNS_SERVERS)
    location_id: int = Field(ge=1, le=MAX_ID)
    reserved: list[Address] = Field(
        default_factory=list,
        max_length=MAX_RESERVED,
        description="Addresses inside the network that are never handed out.",
    )

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, value: Any) -> Any:
        return _parse_network(value)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # An HTML form sends "4" or "6"; JSON sends the number.
        return int(value) if isinstance(value, str) and value.strip() in ("4", "6") else value

    @field_validator("version")
    @classmethod
    def _version(cls, value: int | None, info: ValidationInfo) -> int | None:
        network = _network_of(info)
        if value is not None and network is not None and value != network.version:
            raise PydanticCustomError(
                "ip_version_mismatch",
                "{network} is an IPv{actual} network, not IPv{value}.",
                {"network": str(network), "actual": network.version, "value": value},
            )
        return value

    @field_validator("gateway", mode="before")
    @classmethod
    def _gateway_text(cls, value: Any) -> Any:
        return _parse_address(value, "gateway")

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: Address, info: ValidationInfo) -> Address:
        network = _network_of(info)
        problem = gateway_problem(network, value) if network is not None else None
        if problem:
            raise PydanticCustomError("ip_gateway", problem)
        return value

    @field_validator("dns_servers", mode="before")
    @classmethod
    def _dns_text(cls, value: Any) -> Any:
        return _parse_addresses(value, "DNS server")

    @field_validator("dns_servers")
    @classmethod
    def _dns(cls, value: list[Address]) -> list[Address]:
        return _dedupe(value)

    @field_validator("reserved", mode="before")
    @classmethod
    def _reserved_text(cls, value: Any) -> Any:
        return _parse_addresses(value, "reserved address")

    @field_validator("reserved")
    @classmethod
    def _reserved(cls, value: list[Address], info: ValidationInfo) -> list[Address]:
        network = _network_of(info)
        problem = reserved_problem(network, value) if network is not None else None
        if problem:
            raise PydanticCustomError("ip_reserved", problem)
        gateway = info.data.get("gateway")
        return normalise_reserved(gateway, value) if gateway is not None else _dedupe(value)

    @property
    def ip_version(self) -> int:
        return self.network.version


class IpPoolUpdate(BaseModel):
    """Changes to a pool; a field left out (or null) stays as it is. ``reserved`` replaces the whole
    list of extra reserved addresses. The network, gateway and location never change: servers hold
    addresses that depend on them."""

    model_config = ConfigDict(extra="forbid")

    name: PoolName | None = None
    dns_servers: Annotated[list[Address], Field(min_length=1, max_length=MAX_DNS_SERVERS)] | None = None
    reserved: Annotated[list[Address], Field(max_length=MAX_RESERVED)] | None = None

    @field_validator("dns_servers", mode="before")
    @classmethod
    def _dns_text(cls, value: Any) -> Any:
        return _parse_addresses(value, "DNS server")

    @field_validator("dns_servers")
    @classmethod
    def _dns(cls, value: list[Address] | None) -> list[Address] | None:
        return _dedupe(value) if value is not None else None

    @field_validator("reserved", mode="before")
    @classmethod
    def _reserved_text(cls, value: Any) -> Any:
        return _parse_addresses(value, "reserved address")


class AddressState(enum.StrEnum):
    ALLOCATED = "allocated"
    FREE = "free"
    RESERVED = "reserved"


class AddressFilter(BaseModel):
    """Which addresses of a pool to list, one page at a time (in address order)."""

    model_config = ConfigDict(extra="ignore")

    state: AddressState | None = None
    page: int = Field(default=1, ge=1, le=1_000_000)
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("state", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        # HTML forms send "" for "any state".
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def query(self, **changes: Any) -> dict[str, str]:
        values: dict[str, Any] = {"state": self.state, "page": self.page}
        if self.limit != DEFAULT_PAGE_SIZE:
            values["limit"] = self.limit
        values.update(changes)
        if values["page"] == 1:
            del values["page"]
        return {key: str(value) for key, value in values.items() if value is not None}


# ---------- Responses ----------


class Utilisation(BaseModel):
    """``total`` usable addresses = ``allocated`` + ``reserved`` + ``free``. ``percent_used`` is the
    share of the allocatable ones (total minus reserved) that servers hold."""

    total: int
    allocated: int
    reserved: int
    free: int
    percent_used: float

    @classmethod
    def of(cls, network: Network, allocated: int, reserved: int) -> Utilisation:
        total = usable_count(network)
        allocatable = total - reserved
        percent = round(100 * allocated / allocatable, 2) if allocatable > 0 else 100.0
        return cls(
            total=total,
            allocated=allocated,
            reserved=reserved,
            free=total - allocated - reserved,
            percent_used=percent,
        )

    @property
    def allocatable(self) -> int:
        return self.total - self.reserved

    @property
    def percent_label(self) -> str:
        if self.allocated and self.percent_used < 0.1:
            return "< 0.1%"  # an IPv6 pool in use: "0%" would read as empty
        return f"{self.percent_used:.1f}".removesuffix(".0") + "%"

    def label(self, field: Literal["total", "allocated", "reserved", "free"]) -> str:
        return count_label(int(getattr(self, field)))


class IpPoolRead(BaseModel):
    id: int
    name: str
    version: int
    network: str
    gateway: str
    dns_servers: list[str]
    reserved: list[str] = Field(description="Extra reserved addresses (the gateway is always reserved).")
    location_id: int
    location_slug: str
    utilisation: Utilisation
    created_at: datetime


class IpAddressRead(BaseModel):
    address: str
    state: AddressState
    server_id: int | None
    server_name: str | None
    allocated_at: datetime | None


class IpAddressPage(BaseModel):
    items: list[IpAddressRead]
    total: int
    page: int
    pages: int


# ---------- Values the service hands to pages and callers ----------


@dataclass(frozen=True)
class PoolView:
    pool: IpPool
    location: Location
    reserved: list[Address]
    utilisation: Utilisation

    def read(self) -> IpPoolRead:
        pool = self.pool
        return IpPoolRead(
            id=pool.id,
            name=pool.name,
            version=pool.version,
            network=str(pool.network),
            gateway=str(pool.gateway),
            dns_servers=[str(server) for server in pool.dns_servers],
            reserved=[str(address) for address in self.reserved],
            location_id=pool.location_id,
            location_slug=self.location.slug,
            utilisation=self.utilisation,
            created_at=pool.created_at,
        )


@dataclass(frozen=True)
class AddressRow:
    """One address row of a pool, with the name of the server holding it."""

    row: IpAddress
    server_name: str | None

    @property
    def state(self) -> AddressState:
        if self.row.server_id is not None:
            return AddressState.ALLOCATED
        return AddressState.RESERVED if self.row.reserved else AddressState.FREE

    def read(self) -> IpAddressRead:
        return IpAddressRead(
            address=str(self.row.address),
            state=self.state,
            server_id=self.row.server_id,
            server_name=self.server_name,
            allocated_at=self.row.allocated_at,
        )


@dataclass(frozen=True)
class AddressPage:
    rows: list[AddressRow]
    total: int
    filters: AddressFilter

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.filters.limit))

    def read(self) -> IpAddressPage:
        return IpAddressPage(
            items=[row.read() for row in self.rows],
            total=self.total,
            page=self.filters.page,
            pages=self.pages,
        )


@dataclass(frozen=True)
class AddressConfig:
    """One allocated address as a guest configures it (cloud-init network config)."""

    version: int
    address: Address
    prefix_length: int
    gateway: Address
    dns_servers: tuple[Address, ...]

    @property
    def cidr(self) -> str:
        """``203.0.113.10/24``: the address with its on-link prefix, as cloud-init writes it."""
        return f"{self.address}/{self.prefix_length}"


@dataclass(frozen=True)
class ServerNetwork:
    """All addresses of a server, shaped for a driver's network interface."""

    addresses: tuple[AddressConfig, ...]

    @property
    def cidrs(self) -> tuple[str, ...]:
        return tuple(config.cidr for config in self.addresses)

    def _gateway(self, version: int) -> str | None:
        return next((str(c.gateway) for c in self.addresses if c.version == version), None)

    @property
    def gateway4(self) -> str | None:
        return self._gateway(4)

    @property
    def gateway6(self) -> str | None:
        return self._gateway(6)

    @property
    def nameservers(self) -> tuple[str, ...]:
        servers = (str(server) for config in self.addresses for server in config.dns_servers)
        return tuple(dict.fromkeys(servers))
