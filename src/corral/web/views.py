"""Pages that belong to no domain: the start page and the API documentation."""

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


@router.get("/api/docs", response_class=HTMLResponse)
async def api_docs(request: Request, principal: OptionalPrincipal) -> HTMLResponse:
    """The JSON API's reference: Swagger UI (served from /static/vendor, started by
    static/js/api-docs.js) reading the same document as /api/v1/openapi.json. Public, as that is."""
    spec_url = request.app.openapi_url or "/api/v1/openapi.json"
    return render(request, "pages/api_docs.html", {"spec_url": spec_url})
