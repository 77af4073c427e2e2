"""The tamper-evident audit log: an append-only, HMAC hash-chained table plus signed checkpoints.

The database itself refuses UPDATE, DELETE and TRUNCATE on both tables (triggers created by the
migration), so rows can only be appended.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Identity, Index, String, Text, text
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint("result IN ('success', 'failure', 'pending')", name="result_known"),
        CheckConstraint("seq > 0", name="seq_positive"),
        Index("ix_audit_events_actor", "actor_id", "seq"),
        Index("ix_audit_events_target", "target_type", "target_id", "seq"),
        Index("ix_audit_events_action", "action", "seq"),
    )

    # Position in the chain: 1, 2, 3 … with no gaps. Assigned under a lock by the audit service.
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_label: Mapped[str] = mapped_column(String(400))
    actor_role: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(120))
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    result: Mapped[str] = mapped_column(String(16))
    # psycopg hands INET values back as ipaddress objects.
    ip: Mapped[IPv4Address | IPv6Address | None] = mapped_column(INET)
    reason: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    # Which audit key signed the row (a fingerprint, never the key).
    key_id: Mapped[str] = mapped_column(String(16))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditCheckpoint(Base):
    """A signed note of the chain head at some moment, so truncating the chain's tail is detected."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(64))
