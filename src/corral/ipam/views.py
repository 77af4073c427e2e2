"""Admin pages for IP pools: the list with utilisation, a pool's page with its addresses, the
create and edit forms, and delete with a confirmation.

Forms are plain posts (they work without JavaScript): success redirects (303) to the pool's page,
which shows a fixed toast; a refused form is rendered again with the message next to the field
(422 for a bad value, 409 for a conflict such as a taken name). The address table is filtered and
paged with htmx, which swaps only its block.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.ipam.schemas import (
    MAX_DNS_SERVERS,
    MAX_ID,
    AddressFilter,
    AddressPage,
    AddressState,
    IpPoolCreate,
    IpPoolUpdate,
    PoolView,
    split_list,
)
from corral.ipam.service import ipam
from corral.kit.errors import PanelError
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.forms import done_toasts, field_errors
from corral.web.rendering import Toast, redirect, render

router = APIRouter(prefix="/admin/ip-pools", include_in_schema=False)

PoolId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.IPAM_READ)]
Manager = Annotated[Principal, require(Permission.IPAM_READ, Permission.IPAM_MANAGE)]
# Read generously and validated by the schemas, so a bad value is shown next to its field.
FormText = Annotated[str, Form(max_length=20_000)]

LIST_TEMPLATE = "ipam/list.html"
DETAIL_TEMPLATE = "ipam/detail.html"
FORM_TEMPLATE = "ipam/form.html"

# Outcome messages keyed by the `done` query parameter; only these fixed texts are ever shown.
DONE: dict[str, str] = {
    "created": "IP pool created.",
    "updated": "IP pool saved.",
    "deleted": "IP pool deleted.",
}
FIELD_LABELS = {
    "name": "Name",
    "network": "Network",
    "version": "IP version",
    "gateway": "Gateway",
    "dns_servers": "DNS servers",
    "location_id": "Location",
    "reserved": "Reserved addresses",
}


def _refusal_fields(error: PanelError) -> dict[str, str] | None:
    fields = error.details.get("fields")
    return {str(key): str(value) for key, value in fields.items()} if isinstance(fields, dict) else None


# ---------- List and detail ----------


@router.get("", response_class=HTMLResponse)
async def pool_list(
    request: Request,
    session: DbSession,
    principal: Reader,
    done: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    views = await ipam.pools(session)
    return render(request, LIST_TEMPLATE, {"views": views, "toasts": done_toasts(done, DONE)})


def _detail(
    request: Request,
    view: PoolView,
    page: AddressPage,
    *,
    confirm_delete: bool = False,
    toasts: list[Toast] | None = None,
    block: str | None = "addresses",
) -> HTMLResponse:
    context = {
        "view": view,
        "pool": view.pool,
        "page": page,
        "filters": page.filters,
        "states": [state.value for state in AddressState],
        "confirm_delete": confirm_delete,
        "toasts": toasts or [],
    }
    return render(request, DETAIL_TEMPLATE, context, block=block)


@router.get("/new", response_class=HTMLResponse)
async def new_pool(request: Request, session: DbSession, principal: Manager) -> HTMLResponse:
    return await _form(request, session, None, {"version": ""}, {})


@router.get("/{pool_id}", response_class=HTMLResponse)
async def pool_detail(
    request: Request,
    session: DbSession,
    principal: Reader,
    pool_id: PoolId,
    filters: Annotated[AddressFilter, Query()],
    done: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    """The pool and one page of its addresses; htmx swaps just the address table."""
    view = await ipam.pool(session, pool_id)
    page = await ipam.addresses(session, pool_id, filters)
    return _detail(request, view, page, toasts=done_toasts(done, DONE))


# ---------- Create and edit ----------


async def _form(
    request: Request,
    session: AsyncSession,
    view: PoolView | None,
    form: dict[str, str],
    errors: dict[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "view": view,
        "form": form,
        "errors": errors,
        "labels": FIELD_LABELS,
        "locations": await ipam.locations(session) if view is None else [],
        "max_dns": MAX_DNS_SERVERS,
    }
    return render(request, FORM_TEMPLATE, context, status_code=status_code)


def _edit_form(view: PoolView) -> dict[str, str]:
    return {
        "name": view.pool.name,
        "dns_servers": "\n".join(str(server) for server in view.pool.dns_servers),
        "reserved": "\n".join(str(address) for address in view.reserved),
    }


@router.post("")
async def create_pool(
    request: Request,
    session: DbSession,
    principal: Manager,
    name: FormText = "",
    network: FormText = "",
    version: FormText = "",
    gateway: FormText = "",
    dns_servers: FormText = "",
    location_id: FormText = "",
    reserved: FormText = "",
) -> Response:
    form = {
        "name": name,
        "network": network,
        "version": version,
        "gateway": gateway,
        "dns_servers": dns_servers,
        "location_id": location_id,
        "reserved": reserved,
    }
    # A blank choice is a missing field ("required"), not a value that fails to parse.
    body: dict[str, Any] = {key: value for key, value in form.items() if value.strip()}
    body.update(dns_servers=split_list(dns_servers), reserved=split_list(reserved))
    try:
        data = IpPoolCreate.model_validate(body)
        view = await ipam.create_pool(session, principal.actor, data)
    except ValidationError as error:
        return await _form(request, session, None, form, field_errors(error), status_code=422)
    except PanelError as error:
        fields = _refusal_fields(error)
        if fields is None:
            raise
        return await _form(request, session, None, form, fields, status_code=error.status_code)
    return redirect(request, f"/admin/ip-pools/{view.pool.id}?done=created")


@router.get("/{pool_id}/edit", response_class=HTMLResponse)
async def edit_pool(
    request: Request, session: DbSession, principal: Manager, pool_id: PoolId
) -> HTMLResponse:
    view = await ipam.pool(session, pool_id)
    return await _form(request, session, view, _edit_form(view), {})


@router.post("/{pool_id}/edit")
async def update_pool(
    request: Request,
    session: DbSession,
    principal: Manager,
    pool_id: PoolId,
    name: FormText = "",
    dns_servers: FormText = "",
    reserved: FormText = "",
) -> Response:
    form = {"name": name, "dns_servers": dns_servers, "reserved": reserved}
    body = {"name": name, "dns_servers": split_list(dns_servers), "reserved": split_list(reserved)}
    try:
        data = IpPoolUpdate.model_validate(body)
        await ipam.update_pool(session, principal.actor, pool_id, data)
    except ValidationError as error:
        view = await ipam.pool(session, pool_id)
        return await _form(request, session, view, form, field_errors(error), status_code=422)
    except PanelError as error:
        fields = _refusal_fields(error)
        if fields is None:
            raise
        view = await ipam.pool(session, pool_id)
        return await _form(request, session, view, form, fields, status_code=error.status_code)
    return redirect(request, f"/admin/ip-pools/{pool_id}?done=updated")


# ---------- Delete ----------


@router.get("/{pool_id}/delete", response_class=HTMLResponse)
async def confirm_delete(
    request: Request, session: DbSession, principal: Manager, pool_id: PoolId
) -> HTMLResponse:
    """The pool's page with the delete confirmation open (htmx swaps in just that panel)."""
    view = await ipam.pool(session, pool_id)
    page = await ipam.addresses(session, pool_id, AddressFilter())
    return _detail(request, view, page, confirm_delete=True, block="danger")


@router.post("/{pool_id}/delete")
async def delete_pool(request: Request, session: DbSession, principal: Manager, pool_id: PoolId) -> Response:
    await ipam.delete_pool(session, principal.actor, pool_id)
    return redirect(request, "/admin/ip-pools?done=deleted")
