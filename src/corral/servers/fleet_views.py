"""Staff pages for every customer's servers: ``/admin/servers`` (filterable list, failed
cancellations first and highlighted) and ``/admin/servers/{id}`` (details, suspend and unsuspend,
retry a cancellation the processor gave up on).

Forms post normally; a reason outside 3-500 characters re-renders the page with the error beside
the field (422). After a change the browser is redirected with a ``done`` key shown as a toast.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.rbac.permissions import Permission
from corral.servers.cancellation import cancellations
from corral.servers.fleet import fleet
from corral.servers.fleet_repository import FLEET_FILTERS
from corral.servers.suspension import REASON_MAX, SuspensionChange, suspensions
from corral.web.deps import DbSession
from corral.web.forms import Done, done_toasts, field_errors
from corral.web.rendering import Toast, redirect, render

router = APIRouter(prefix="/admin/servers", include_in_schema=False)

MAX_ID = 2**63 - 1
ServerId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.FLEET_SERVERS_READ)]
Suspender = Annotated[Principal, require(Permission.FLEET_SERVERS_SUSPEND)]
StatusFilter = Annotated[str | None, Query(pattern=f"^({'|'.join(FLEET_FILTERS)})?$")]
PageNumber = Annotated[int, Query(ge=1, le=100_000)]
# Longer than the limit, so an over-long reason gets the field's message, not a bare 422.
ReasonText = Annotated[str, Form(max_length=REASON_MAX * 4)]

LIST_TEMPLATE = "fleet_servers/list.html"
DETAIL_TEMPLATE = "fleet_servers/detail.html"
DONE: dict[str, str] = {
    "suspended": "Server suspended.",
    "unsuspended": "Suspension lifted.",
    "cancel_retried": "Cancellation retried: the deletion starts again within 30 seconds.",
}
# Where a retry was asked from, so the operator lands back there.
RetrySource = Annotated[str, Form(pattern="^(list|detail)$")]
HINTS: dict[str, str] = {"reason": "Give a reason of 3-500 characters."}


@router.get("", response_class=HTMLResponse)
async def server_list(
    request: Request,
    session: DbSession,
    principal: Reader,
    status: StatusFilter = None,
    page: PageNumber = 1,
    done: Done = None,
) -> HTMLResponse:
    chosen = status or None
    listing = await fleet.list(session, principal, status=chosen, page=page)
    context = {
        "listing": listing,
        "status": chosen,
        "filters": FLEET_FILTERS,
        "toasts": done_toasts(done, DONE),
    }
    return render(request, LIST_TEMPLATE, context, block="fleet_servers")


async def _detail(
    request: Request,
    session: DbSession,
    principal: Principal,
    server_id: int,
    *,
    action: str | None = None,
    reason: str = "",
    errors: dict[str, str] | None = None,
    toasts: list[Toast] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    row = await fleet.get(session, principal, server_id)
    context = {
        "row": row,
        "action": action,
        "reason": reason,
        "errors": errors or {},
        "toasts": toasts or [],
    }
    return render(request, DETAIL_TEMPLATE, context, status_code=status_code)


@router.get("/{server_id}", response_class=HTMLResponse)
async def server_page(
    request: Request, session: DbSession, principal: Reader, server_id: ServerId, done: Done = None
) -> HTMLResponse:
    return await _detail(request, session, principal, server_id, toasts=done_toasts(done, DONE))


async def _change(
    request: Request, session: DbSession, principal: Principal, server_id: int, action: str, reason: str
) -> Response:
    try:
        change = SuspensionChange.model_validate({"reason": reason})
    except ValidationError as error:
        return await _detail(
            request,
            session,
            principal,
            server_id,
            action=action,
            reason=reason,
            errors=field_errors(error, hints=HINTS),
            status_code=422,
        )
    if action == "suspend":
        await suspensions.suspend(session, principal, server_id, change)
        return redirect(request, f"/admin/servers/{server_id}?done=suspended")
    await suspensions.unsuspend(session, principal, server_id, change)
    return redirect(request, f"/admin/servers/{server_id}?done=unsuspended")


@router.post("/{server_id}/suspend", response_class=HTMLResponse)
async def suspend_server(
    request: Request, session: DbSession, principal: Suspender, server_id: ServerId, reason: ReasonText = ""
) -> Response:
    return await _change(request, session, principal, server_id, "suspend", reason)


@router.post("/{server_id}/unsuspend", response_class=HTMLResponse)
async def unsuspend_server(
    request: Request, session: DbSession, principal: Suspender, server_id: ServerId, reason: ReasonText = ""
) -> Response:
    return await _change(request, session, principal, server_id, "unsuspend", reason)


@router.post("/{server_id}/cancellation/retry", response_class=HTMLResponse)
async def retry_cancellation(
    request: Request,
    session: DbSession,
    principal: Suspender,
    server_id: ServerId,
    source: RetrySource = "detail",
) -> Response:
    await cancellations.retry(session, principal, server_id)
    back = "/admin/servers" if source == "list" else f"/admin/servers/{server_id}"
    return redirect(request, f"{back}?done=cancel_retried")
