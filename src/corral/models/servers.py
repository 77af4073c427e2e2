"""Customer servers: what the panel believes should exist, and what it last saw running."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base


class ServerStatus(enum.StrEnum):
    """The panel's lifecycle of a server (what the customer sees)."""

    AWAITING_SETUP = "awaiting_setup"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    REINSTALLING = "reinstalling"
    SUSPENDED = "suspended"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


class CancelMode(enum.StrEnum):
    """How a customer cancelled (seed 000 6.3): at the end of a grace period, or right away."""

    GRACE = "grace"  # 30 days, revocable until then
    IMMEDIATE = "immediate"  # 5 minutes, not revocable


class PowerState(enum.StrEnum):
    """What the hypervisor last reported."""

    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    CRASHED = "crashed"
    STARTING = "starting"
    UNKNOWN = "unknown"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(member.value) for member in values)})"


class Server(Base):
    __tablename__ = "servers"
    __table_args__ = (
        CheckConstraint(_in("status", ServerStatus), name="status_known"),
        CheckConstraint(_in("power_state", PowerState), name="power_state_known"),
        CheckConstraint("vcpus > 0 AND memory_mib > 0 AND disk_gib > 0", name="resources_positive"),
        CheckConstraint(f"cancel_mode IS NULL OR {_in('cancel_mode', CancelMode)}", name="cancel_mode_known"),
        # The cancellation processor looks for due cancellations every 30 seconds.
        Index("ix_servers_cancel_due", "cancel_due_at", postgresql_where=text("cancel_due_at IS NOT NULL")),
        # Unfinished orders are looked for every hour (servers.release_unfinished).
        Index(
            "ix_servers_awaiting_setup",
            "created_at",
            postgresql_where=text("status = 'awaiting_setup'"),
        ),
        # An order sent twice with the same key (a double click, a retried API call) is one server.
        Index(
            "uq_servers_user_order_key",
            "user_id",
            "order_key",
            unique=True,
            postgresql_where=text("order_key IS NOT NULL"),
        ),
        Index("ix_servers_user", "user_id", "status"),
        Index("ix_servers_node", "node_id", "status"),
        # The hypervisor's id is unique on its node.
        Index("uq_servers_node_external", "node_id", "external_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    location_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("locations.id"))
    node_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("nodes.id"))
    template_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("os_templates.id"))
    plan_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("plans.id"))
    # The customer's idempotency key for the order that made this server (unique per customer).
    order_key: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str | None] = mapped_column(String(253))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    disk_gib: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24), server_default=text("'awaiting_setup'"))
    power_state: Mapped[str] = mapped_column(String(16), server_default=text("'unknown'"))
    # The hypervisor's own id for this server (opaque to the panel).
    external_id: Mapped[str | None] = mapped_column(String(200))
    status_detail: Mapped[str | None] = mapped_column(Text)
    # When ``status`` last changed (servers.lifecycle.move sets both): the reconciler reports a
    # server stuck in a transitional status past a deadline.
    status_changed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    state_checked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    deleted_at: Mapped[datetime | None]
    # Suspension by staff: the owner sees the server read-only, with this reason.
    suspended_at: Mapped[datetime | None]
    suspended_reason: Mapped[str | None] = mapped_column(Text)
    # Cancellation: requested when and how, due when; the processor's attempts and last error.
    cancel_mode: Mapped[str | None] = mapped_column(String(16))
    cancel_requested_at: Mapped[datetime | None]
    cancel_due_at: Mapped[datetime | None]
    cancel_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cancel_error: Mapped[str | None] = mapped_column(Text)
    # An unfinished order (still awaiting setup): when its owner was told it will be released.
    # Set in the transaction that queues the email, so the reminder goes out once.
    setup_reminder_sent_at: Mapped[datetime | None]
