"""A customer cancelling their own server from its page (seed 000 6.3).

The server page includes ``servers/_cancellation.html`` (the panel); its forms post here. A plain
form post is answered with a redirect to the server page (``?done=cancel_requested`` /
``cancel_revoked``), an htmx one with ``HX-Redirect``. A wrong confirmation comes back as the
panel with the error beside the field (422): the panel alone for htmx, ``servers/cancel.html``
around it otherwise. ``GET /servers/{id}/cancel`` shows that page, or the locked "Deletion in
progress" page once the server is locked.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.kit.text import SingleLine
from corral.models.servers import CancelMode, Server
from corral.rbac.permissions import Permission
from corral.servers.cancellation import cancellations, locked_for_deletion
from corral.servers.errors import CancellationNotConfirmed
from corral.servers.status import display_status
from corral.web.deps import DbSession
from corral.web.rendering import redirect, render

router = APIRouter(include_in_schema=False)

MAX_ID = 2**63 - 1
ServerId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.SERVERS_READ)]
Manager = Annotated[Principal, require(Permission.SERVERS_MANAGE)]
FormText = Annotated[SingleLine, Form(max_length=200)]

PAGE_TEMPLATE = "servers/cancel.html"
DELETING_TEMPLATE = "servers/deleting.html"
PANEL_BLOCK = "cancellation"


def _page(
    request: Request,
    server: Server,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    display = display_status(server)
    if locked_for_deletion(server):
        context = {"server": server, "display": display}
        return render(request, DELETING_TEMPLATE, context, status_code=status_code)
    context = {"server": server, "display": display, "cancel_form": form or {}, "cancel_errors": errors or {}}
    return render(request, PAGE_TEMPLATE, context, status_code=status_code, block=PANEL_BLOCK)


@router.get("/servers/{server_id}/cancel", response_class=HTMLResponse)
async def cancel_page(
    request: Request, session: DbSession, principal: Reader, server_id: ServerId
) -> HTMLResponse:
    return _page(request, await cancellations.get(session, principal, server_id))


@router.post("/servers/{server_id}/cancel", response_class=HTMLResponse)
async def request_cancellation(
    request: Request,
    session: DbSession,
    principal: Manager,
    server_id: ServerId,
    mode: FormText = "",
    confirm: FormText = "",
) -> Response:
    form = {"mode": mode, "confirm": confirm}
    try:
        chosen = CancelMode(mode)
    except ValueError:
        server = await cancellations.get(session, principal, server_id)
        return _page(request, server, form=form, errors={"mode": "Choose how to cancel."}, status_code=422)
    try:
        await cancellations.request(session, principal, server_id, chosen, confirm=confirm)
    except CancellationNotConfirmed as error:
        server = await cancellations.get(session, principal, server_id)
        errors = {"confirm": f"{error.message} The name is {server.name}."}
        return _page(request, server, form=form, errors=errors, status_code=422)
    return redirect(request, f"/servers/{server_id}?done=cancel_requested")


@router.post("/servers/{server_id}/cancel/revoke")
async def revoke_cancellation(
    request: Request, session: DbSession, principal: Manager, server_id: ServerId
) -> Response:
    await cancellations.revoke(session, principal, server_id)
    return redirect(request, f"/servers/{server_id}?done=cancel_revoked")
