"""Operator pages for the fleet's servers: drift between the panel and the hypervisors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.rbac.permissions import Permission
from corral.servers.reconciler import open_drift_reports
from corral.web.deps import DbSession
from corral.web.rendering import render

router = APIRouter(include_in_schema=False)


@router.get("/admin/drift", response_class=HTMLResponse)
async def drift_page(
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, require(Permission.NODES_READ)],
) -> HTMLResponse:
    reports, node_names = await open_drift_reports(session)
    return render(
        request, "servers/drift.html", {"reports": reports, "node_names": node_names}, block="drift"
    )
