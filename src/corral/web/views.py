"""Pages that belong to no domain: the start page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from corral.auth.deps import OptionalPrincipal
from corral.kit.clock import utcnow
from corral.web.rendering import render

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, principal: OptionalPrincipal) -> HTMLResponse:
    """The landing page; an HTMX request for it gets just the status card."""
    return render(request, "pages/home.html", {"now": utcnow()}, block="status")
