"""Shared helpers for the node, location and OS template tests (no tests of its own); people are
signed in with ``People`` from the admin tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.audit import AuditEvent


async def audit_events(db: AsyncSession, prefix: str) -> Sequence[AuditEvent]:
    """Audit events whose action starts with ``prefix``, oldest first."""
    statement = select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.seq)
    return (await db.scalars(statement)).all()


def error_code(body: Any) -> str:
    assert isinstance(body, dict), body
    return str(body.get("code"))
