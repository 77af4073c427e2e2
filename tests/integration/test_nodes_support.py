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

from corral.locations.api import router as locations_api
from corral.locations.views import router as locations_views
from corral.models.audit import AuditEvent
from corral.nodes.api import router as nodes_api
from corral.nodes.views import router as nodes_views
from corral.templates.api import router as templates_api
from corral.templates.views import router as templates_views
from tests.support.admin import route_paths

_ROUTERS = (
    ("/admin/locations", locations_views),
    ("/api/v1/admin/locations", locations_api),
    ("/admin/nodes", nodes_views),
    ("/api/v1/admin/nodes", nodes_api),
    ("/admin/os-templates", templates_views),
    ("/api/v1/admin/os-templates", templates_api),
)


def with_fleet_routes(app: FastAPI) -> FastAPI:
    paths = route_paths(app)
    for path, router in _ROUTERS:
        if path not in paths:
            app.include_router(router)
    return app


async def audit_events(db: AsyncSession, prefix: str) -> Sequence[AuditEvent]:
    """Audit events whose action starts with ``prefix``, oldest first."""
    statement = select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.seq)
    return (await db.scalars(statement)).all()


def error_code(body: Any) -> str:
    assert isinstance(body, dict), body
    return str(body.get("code"))
