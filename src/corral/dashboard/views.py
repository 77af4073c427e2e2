"""The dashboard page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.rbac.permissions import Permission
from corral.web.rendering import render

router = APIRouter(include_in_schema=False)


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(
    request: Request, principal: Annotated[Principal, require(Permission.ACCOUNT_READ)]
) -> HTMLResponse:
    return render(request, "dashboard/index.html", {"user": principal.user})
