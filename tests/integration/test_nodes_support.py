"""Shared helpers for the node, location and OS template tests (no tests of its own).

Each module overrides ``app`` with :func:`with_fleet_routes`, so the tests run whether or not
``create_app`` includes these routers yet, and signs people in with ``People`` from the admin tests:

    @pytest.fixture
    def app(app: FastAPI) -> FastAPI:
        return with_fleet_routes(app)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.audit import AuditEvent


def with_fleet_routes(app: FastAPI) -> FastAPI:
    """The panel as built by create_app: its ROUTERS include the fleet pages and APIs."""
    return app


async def audit_events(db: AsyncSession, prefix: str) -> Sequence[AuditEvent]:
    """Audit events whose action starts with ``prefix``, oldest first."""
    statement = select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.seq)
    return (await db.scalars(statement)).all()


def error_code(body: Any) -> str:
    assert isinstance(body, dict), body
    return str(body.get("code"))
