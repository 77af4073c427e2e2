"""Hypervisor nodes, the OS templates present on each, and drift between panel and hypervisor."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base


class NodeStatus(enum.StrEnum):
    ONLINE = "online"
    MAINTENANCE = "maintenance"
    OFFLINE = "offline"
    UNHEALTHY = "unhealthy"


class NodeSshKey(Base):
    """An SSH key pair the panel made for reaching nodes: the public half goes into the node's
    ``authorized_keys``; the private half is sealed (AES-GCM, bound to this row) and opened only to
    connect. Operators choose one per node instead of typing key paths."""

    __tablename__ = "node_ssh_keys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(100))
    private_key_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (
        CheckConstraint("status IN ('online', 'maintenance', 'offline', 'unhealthy')", name="status_known"),
        # NULL: a connection from before structured fields that could not be converted; the node
        # stays unhealthy until an operator enters it again.
        CheckConstraint("transport IN ('test', 'local', 'ssh', 'tls')", name="transport_known"),
        CheckConstraint("port IS NULL OR port BETWEEN 1 AND 65535", name="port_range"),
        CheckConstraint(
            "cpu_oversell >= 1 AND memory_oversell >= 1 AND disk_oversell >= 1", name="oversell_min"
        ),
        CheckConstraint("domain_type IN ('kvm', 'qemu')", name="domain_type_known"),
        Index("ix_nodes_location_status", "location_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    location_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("locations.id"))
    driver: Mapped[str] = mapped_column(String(32))
    # How the panel reaches the hypervisor, as fields; drivers build their address from these.
    transport: Mapped[str | None] = mapped_column(String(16))
    host: Mapped[str | None] = mapped_column(String(253))
    port: Mapped[int | None] = mapped_column(Integer)
    ssh_user: Mapped[str | None] = mapped_column(String(32))
    ssh_key_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("node_ssh_keys.id", ondelete="RESTRICT"), index=True
    )
    # The node's SSH host key ("type base64"): the only one accepted, so a changed key is refused.
    ssh_host_key: Mapped[str | None] = mapped_column(Text)
    # Credentials (SSH key, API token…) encrypted with AES-GCM; "kid:nonce:ciphertext", never plain.
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    storage_pool: Mapped[str] = mapped_column(String(100), server_default=text("'default'"))
    network: Mapped[str] = mapped_column(String(100), server_default=text("'default'"))
    # kvm on real hosts; qemu (TCG, software emulation) where hardware virtualisation is missing.
    domain_type: Mapped[str] = mapped_column(String(8), server_default=text("'kvm'"))
    # Driver-specific settings as strings (each driver validates its own keys), e.g. libvirt's
    # network_type or cdrom_bus; see corral.drivers.libvirt.connection.LibvirtOptions.
    driver_options: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    cpu_total: Mapped[int] = mapped_column(Integer)
    memory_total_mib: Mapped[int] = mapped_column(BigInteger)
    disk_total_gib: Mapped[int] = mapped_column(BigInteger)
    cpu_oversell: Mapped[float] = mapped_column(Numeric(5, 2, asdecimal=False), server_default=text("1"))
    memory_oversell: Mapped[float] = mapped_column(Numeric(5, 2, asdecimal=False), server_default=text("1"))
    disk_oversell: Mapped[float] = mapped_column(Numeric(5, 2, asdecimal=False), server_default=text("1"))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'offline'"))
    last_checked_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class OsTemplate(Base):
    __tablename__ = "os_templates"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Stable key, e.g. "debian-12"; names change, keys do not.
    slug: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    os_family: Mapped[str] = mapped_column(String(40))
    os_version: Mapped[str] = mapped_column(String(40))
    min_disk_gib: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    cloud_init: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    default_user: Mapped[str] = mapped_column(String(40), server_default=text("'root'"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class NodeTemplate(Base):
    """A template's image on one node's storage pool. A template is offered only where it exists."""

    __tablename__ = "node_templates"
    __table_args__ = (UniqueConstraint("node_id", "template_id", name="uq_node_templates_node_template"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    node_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("nodes.id", ondelete="CASCADE"))
    template_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("os_templates.id", ondelete="CASCADE"))
    # The volume in the node's storage pool (or kernel/initrd reference) the driver builds disks from.
    image_ref: Mapped[str] = mapped_column(String(500))
    # For images without a boot loader: boot this kernel (and initrd) from the node's disk instead.
    boot_kernel: Mapped[str | None] = mapped_column(String(500))
    boot_initrd: Mapped[str | None] = mapped_column(String(500))
    boot_cmdline: Mapped[str | None] = mapped_column(String(1000))
    # Set by the node check: false when the image is missing on the node.
    present: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    checked_at: Mapped[datetime | None]


class DriftKind(enum.StrEnum):
    UNKNOWN_INSTANCE = "unknown_instance"  # the hypervisor runs something the panel does not know
    MISSING_INSTANCE = "missing_instance"  # the panel expects an instance the hypervisor lacks
    STUCK_SERVER = "stuck_server"  # a server has been building, reinstalling or deleting too long


class DriftReport(Base):
    """A disagreement found by the reconciler. Reported to operators, never fixed automatically."""

    __tablename__ = "drift_reports"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('unknown_instance', 'missing_instance', 'stuck_server')", name="kind_known"
        ),
        # One open report per thing; a later run updates last_seen_at instead of adding rows.
        Index(
            "uq_drift_reports_open",
            "node_id",
            "kind",
            "external_id",
            unique=True,
            postgresql_where=text("resolved_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    node_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("nodes.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    server_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("servers.id", ondelete="SET NULL"))
    detail: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(server_default=func.now())
    resolved_at: Mapped[datetime | None]
