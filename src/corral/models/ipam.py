"""IP address pools and the addresses in them.

An address row is allocated by setting ``server_id``; the unique address per pool and row locks
in the allocation query make handing one address to two servers impossible.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CIDR, INET
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base


class IpPool(Base):
    __tablename__ = "ip_pools"
    __table_args__ = (
        CheckConstraint("version IN (4, 6)", name="version_known"),
        CheckConstraint("family(network) = version", name="network_matches_version"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    version: Mapped[int] = mapped_column(SmallInteger)
    network: Mapped[IPv4Network | IPv6Network] = mapped_column(CIDR)
    gateway: Mapped[IPv4Address | IPv6Address] = mapped_column(INET)
    dns_servers: Mapped[list[IPv4Address | IPv6Address]] = mapped_column(ARRAY(INET))
    location_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("locations.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class IpAddress(Base):
    __tablename__ = "ip_addresses"
    __table_args__ = (
        UniqueConstraint("pool_id", "address", name="uq_ip_addresses_pool_address"),
        Index(
            "ix_ip_addresses_free",
            "pool_id",
            "address",
            postgresql_where=text("server_id IS NULL AND NOT reserved"),
        ),
        Index("ix_ip_addresses_server", "server_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    pool_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ip_pools.id", ondelete="CASCADE"))
    address: Mapped[IPv4Address | IPv6Address] = mapped_column(INET)
    # Never handed out: the gateway, broadcast, or addresses the operator keeps for other uses.
    reserved: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    server_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("servers.id", ondelete="SET NULL"))
    allocated_at: Mapped[datetime | None]
