"""The dashboard: the customer's servers at a glance and the quick actions of seed 003's wireframe
that exist so far (deploy a server, SSH keys, security)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.rbac.permissions import Permission
from corral.servers.service import servers
from corral.web.deps import DbSession
from corral.web.rendering import render

router = APIRouter(include_in_schema=False)


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(
    request: Request, session: DbSession, principal: Annotated[Principal, require(Permission.ACCOUNT_READ)]
) -> HTMLResponse:
    views = (
        await servers.list_owned(session, principal.user_id) if principal.can(Permission.SERVERS_READ) else []
    )
    counts = {
        "total": len(views),
        "running": sum(1 for view in views if view.display.running),
        "attention": sum(1 for view in views if view.server.status in ("failed", "awaiting_setup")),
    }
    # The servers table polls while something is under way for a server (its badge has a spinner:
    # built, reinstalled, deleted), so the dashboard shows the outcome without a reload.
    polling = any(view.display.spinner for view in views)
    context = {"user": principal.user, "views": views, "counts": counts, "polling": polling}
    return render(request, "dashboard/index.html", context, block="dashboard_servers")
