"""A customer's server pages: the list, ordering (phase one), the setup wizard (phase two) and the
server page with its live status, power, reinstall, rename and task timeline.

Order and wizard are plain form posts (they work without script) answered with a redirect; an
invalid form comes back with what was typed and the problem beside each field (422), a refusal
(limit, capacity) with the reason above the form (409). On the server page every action is an htmx
post answered with the updated fragment and a toast; the same forms also work as plain posts
(redirect back with a ``done`` toast). The live block polls itself: every 2 s while something is
happening to the server, every 10 s otherwise.

Each service call that can be refused half-way runs in a savepoint, so a refusal that is shown as
a page (and so commits the request) never keeps half of what was written.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.kit.errors import Conflict, PanelError, ValidationFailed
from corral.locations.schemas import MAX_ID
from corral.models.servers import ServerStatus
from corral.models.ssh_keys import SshKey
from corral.plans.service import plans
from corral.rbac.permissions import Permission
from corral.servers.cancellation import locked_for_deletion
from corral.servers.errors import ServerNotFound
from corral.servers.schemas import (
    POWER_LABELS,
    PowerAction,
    ServerOrderCreate,
    ServerReinstall,
    ServerRename,
    ServerSetupCreate,
    ServerView,
    task_label,
)
from corral.servers.service import SETUP_STATES, TIMELINE_PAGE, PlanOrder, servers
from corral.servers.unfinished import unfinished_orders
from corral.ssh_keys.service import ssh_keys
from corral.templates.service import templates
from corral.web.deps import DbSession
from corral.web.forms import Done, FormPage, done_toasts, field_errors
from corral.web.rendering import is_htmx, redirect, render, toast

router = APIRouter(include_in_schema=False)

ServerId = Annotated[int, Path(ge=1, le=MAX_ID)]
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.SERVERS_READ)]
Manager = Annotated[Principal, require(Permission.SERVERS_MANAGE)]
FormText = Annotated[str, Form(max_length=300)]
# The timeline: the oldest job id the page first showed (see ServerService.view), sent back by its
# polls and actions (hx-vals on the live block); and the cursor of an older page.
Since = Annotated[int | None, Query(ge=0, le=MAX_ID)]
SinceField = Annotated[int | None, Form(ge=0, le=MAX_ID)]
Before = Annotated[int, Query(ge=1, le=MAX_ID)]
LongText = Annotated[str, Form(max_length=200_000)]

PAGE = "servers/detail.html"
DONE: dict[str, str] = {
    "setup": "Your server is being built. This page updates by itself.",
    "reinstalling": "Reinstalling: the disk is wiped and the operating system installed again.",
    "renamed": "Server renamed.",
    "cancel_requested": "Cancellation requested.",
    "cancel_revoked": "Cancellation revoked: your server stays.",
    "gone": "That server has been deleted.",
}
HINTS: dict[str, str] = {
    "plan_id": "Choose a plan.",
    "location_id": "Choose a location.",
    "template_id": "Choose an operating system.",
    "root_password": "Leave it empty, or use 12-128 characters.",
    # The one rule across fields (NoWayToSignIn), said for a person rather than an API client.
    "form": "Choose or paste at least one SSH key, or set a root password: otherwise nobody can sign in.",
}
POWER_DONE = {
    "start": "Starting the server.",
    "shutdown": "Asked the server to shut down.",
    "restart": "Restarting the server.",
    "stop": "Forcing the server off.",
}
DONE.update({f"power_{action}": message for action, message in POWER_DONE.items()})
DONE["retried"] = "Trying again."
# Toasts announcing something under way are shown only while the server is still in that state:
# "being built" on a server that already runs (a late or repeated visit) would be untrue.
DONE_WHILE: dict[str, str] = {"setup": "provisioning", "reinstalling": "reinstalling"}


# --- the list and the order ---------------------------------------------------------------------


@router.get("/servers", response_class=HTMLResponse)
async def server_list(
    request: Request, session: DbSession, principal: Reader, done: Done = None
) -> HTMLResponse:
    views = await servers.list_owned(session, principal.user_id)
    return render(
        request, "servers/list.html", {"views": views, "toasts": done_toasts(done, DONE)}, block="servers"
    )


async def _order_page(
    request: Request, session: DbSession, principal: Principal, page: FormPage = FormPage()
) -> HTMLResponse:
    # The limit is shown before the form is filled in; at the limit there is no form to fill in.
    allowance = await servers.allowance(session, principal.user_id)
    offers = await plans.list_orderable(session)
    locations = {location.id: location for offer in offers for location in offer.locations}
    values = page.values(
        {
            "plan_id": str(offers[0].plan.id) if offers else "",
            "location_id": str(offers[0].locations[0].id) if offers else "",
            "name": "",
        }
    )
    # A fresh key for every rendering that may be submitted: the same form posted twice (a double
    # click, a resubmit after "back") carries the same key and orders once.
    values.setdefault("order_key", secrets.token_urlsafe(24))
    context = {
        "offers": offers,
        "locations": sorted(locations.values(), key=lambda location: location.name),
        "form": values,
        "allowance": allowance,
    }
    return page.render(request, "servers/order.html", context)


@router.get("/servers/new", response_class=HTMLResponse)
async def order_page(request: Request, session: DbSession, principal: Manager) -> HTMLResponse:
    return await _order_page(request, session, principal)


@router.post("/servers/new", response_class=HTMLResponse)
async def order_server(
    request: Request,
    session: DbSession,
    principal: Manager,
    plan_id: FormText = "",
    location_id: FormText = "",
    name: FormText = "",
    order_key: FormText = "",
) -> Response:
    form = {"plan_id": plan_id, "location_id": location_id, "name": name, "order_key": order_key}
    try:
        data = ServerOrderCreate.model_validate({**form, "order_key": order_key or None})
    except ValidationError as error:
        errors = field_errors(error, hints=HINTS)
        if "order_key" in errors:
            form.pop("order_key")  # a mangled key: give the form a new one
        return await _order_page(request, session, principal, FormPage(form, errors, status_code=422))
    try:
        async with session.begin_nested():
            server = await servers.order(
                session,
                principal.actor,
                principal.user_id,
                PlanOrder(
                    plan_id=data.plan_id,
                    location_id=data.location_id,
                    name=data.name,
                    order_key=data.order_key,
                ),
            )
    except ValidationFailed as error:  # the plan is not offered there (any more)
        return await _order_page(
            request, session, principal, FormPage(form, {"plan_id": error.message}, status_code=422)
        )
    except Conflict as error:  # over the limit, no room, no addresses left
        page = FormPage(form, refusal=error.message, status_code=409)
        return await _order_page(request, session, principal, page)
    return RedirectResponse(f"/servers/{server.id}/setup", status_code=303)


# --- the setup wizard ----------------------------------------------------------------------------


async def _wizard(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    server_id: int,
    page: FormPage = FormPage(),
) -> Response:
    view = await servers.view(session, server_id, owner_id=principal.user_id)
    server = view.server
    if server.status not in SETUP_STATES:
        return RedirectResponse(f"/servers/{server.id}", status_code=303)
    offered = await templates.offered_on(session, server.node_id) if server.node_id is not None else []
    values = page.values(
        {
            "template_id": str(offered[0].id) if offered else "",
            "hostname": "",
            "ssh_key_ids": [],
            "ssh_keys": "",
        }
    )
    context = {
        "view": view,
        "server": server,
        "offered": offered,
        "saved_keys": await _saved_keys(session, principal),
        "form": values,
    }
    return page.render(request, "servers/setup.html", context)


@router.get("/servers/{server_id}/setup", response_class=HTMLResponse)
async def setup_page(
    request: Request, session: DbSession, principal: Manager, server_id: ServerId
) -> Response:
    return await _wizard(request, session, principal, server_id)


def _pasted_keys(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _setup_errors(error: ValidationError) -> dict[str, str]:
    """Field errors of the wizard or the reinstall form. The rule spanning fields (some way to
    sign in) has no field of its own: it is shown beside the SSH keys."""
    errors = field_errors(error, hints=HINTS)
    spanning = errors.pop("form", None)
    if spanning is not None:
        errors.setdefault("ssh_keys", spanning)
    return errors


async def _saved_keys(session: AsyncSession, principal: Principal) -> Sequence[SshKey]:
    """The account's SSH keys, offered as checkboxes by the wizard and the reinstall form."""
    if not principal.can(Permission.SSH_KEYS_MANAGE):
        return []
    return await ssh_keys.list(session, principal)


@router.post("/servers/{server_id}/setup", response_class=HTMLResponse)
async def setup_server(
    request: Request,
    session: DbSession,
    principal: Manager,
    server_id: ServerId,
    template_id: FormText = "",
    hostname: FormText = "",
    ssh_key_ids: Annotated[list[str] | None, Form(max_length=50)] = None,
    ssh_keys_text: Annotated[str, Form(alias="ssh_keys", max_length=200_000)] = "",
    root_password: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    form = {
        "template_id": template_id,
        "hostname": hostname,
        "ssh_key_ids": ssh_key_ids or [],
        "ssh_keys": ssh_keys_text,
    }
    try:
        data = ServerSetupCreate.model_validate(
            {
                "template_id": template_id,
                "hostname": hostname,
                "ssh_key_ids": ssh_key_ids or [],
                "ssh_keys": _pasted_keys(ssh_keys_text),
                "root_password": root_password or None,
            }
        )
    except ValidationError as error:
        page = FormPage(form, _setup_errors(error), status_code=422)
        return await _wizard(request, session, principal, server_id, page)
    try:
        async with session.begin_nested():
            setup = await servers.prepare_setup(session, principal.user_id, data)
            await servers.setup(session, principal.actor, server_id, setup, owner_id=principal.user_id)
    except ServerNotFound:
        raise
    except PanelError as error:
        if error.status_code == 422:  # a pasted key that is not a public key
            page = FormPage(form, {"ssh_keys": error.message}, status_code=422)
            return await _wizard(request, session, principal, server_id, page)
        if error.status_code == 409:
            page = FormPage(form, refusal=error.message, status_code=409)
            return await _wizard(request, session, principal, server_id, page)
        raise
    return RedirectResponse(f"/servers/{server_id}?done=setup", status_code=303)


# --- the server page -----------------------------------------------------------------------------


def _context(view: ServerView, **extra: Any) -> dict[str, Any]:
    return {
        "view": view,
        "server": view.server,
        "power_labels": POWER_LABELS,
        "task_label": task_label,
        "rename_form": {"name": view.server.name},
        "reinstall_form": {
            "template_id": str(view.server.template_id or ""),
            "hostname": view.server.hostname or "",
            "ssh_key_ids": [],
        },
        "saved_keys": [],
        "errors": {},
        **extra,
    }


async def _page(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    server_id: int,
    *,
    block: str | None = None,
    status_code: int = 200,
    done: str | None = None,
    **extra: Any,
) -> HTMLResponse:
    view = await servers.view(session, server_id, owner_id=principal.user_id, with_deleted=True)
    if done is not None and DONE_WHILE.get(done, view.server.status) == view.server.status:
        extra["toasts"] = done_toasts(done, DONE)
    if locked_for_deletion(view.server):
        context = {"server": view.server, "display": view.display}
        return render(request, "servers/deleting.html", context, status_code=status_code)
    offered = await templates.offered_on(session, view.server.node_id) if view.server.node_id else []
    if view.server.status == ServerStatus.AWAITING_SETUP.value:
        extra["release_at"] = await unfinished_orders.release_at(session, view.server)
    context = _context(view, offered=offered, saved_keys=await _saved_keys(session, principal), **extra)
    return render(request, PAGE, context, status_code=status_code, block=block)


@router.get("/servers/{server_id}", response_class=HTMLResponse)
async def server_page(
    request: Request, session: DbSession, principal: Reader, server_id: ServerId, done: Done = None
) -> HTMLResponse:
    return await _page(request, session, principal, server_id, done=done)


@router.get("/servers/{server_id}/live", response_class=HTMLResponse)
async def server_live(
    request: Request,
    session: DbSession,
    principal: Reader,
    server_id: ServerId,
    form: Annotated[int | None, Query(ge=0, le=1)] = None,
    since: Since = None,
    version: Annotated[str | None, Query(max_length=64, pattern="^[0-9a-f]*$")] = None,
) -> Response:
    """The polled block. A server that has started being deleted (or is gone) sends the page to its
    locked "Deletion in progress" (or "gone") screen. ``version`` is the fingerprint the block was
    drawn from: when nothing changed since, the answer is 204 (htmx swaps nothing) after a single
    query, which is what keeps hundreds of open server pages cheap."""
    if version and version == await servers.live_version(session, server_id, owner_id=principal.user_id):
        return Response(status_code=204)
    view = await servers.view(
        session, server_id, owner_id=principal.user_id, with_deleted=True, jobs_since=since
    )
    if locked_for_deletion(view.server):
        return redirect(request, f"/servers/{server_id}")
    # ``form``: whether the page shows the reinstall form (see the live block in detail.html).
    offered = await templates.offered_on(session, view.server.node_id) if view.server.node_id else []
    shown = None if form is None else bool(form)
    context = _context(
        view,
        offered=offered,
        saved_keys=await _saved_keys(session, principal),
        reinstall_shown=shown,
        header_oob=True,
    )
    return render(request, PAGE, context, block="live")


async def _after_action(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    server_id: int,
    message: str,
    done: str,
    since: int | None = None,
) -> Response:
    """htmx: the live block and a toast; a plain post: back to the page with a ``done`` toast."""
    if not is_htmx(request):
        return RedirectResponse(f"/servers/{server_id}?done={done}", status_code=303)
    view = await servers.view(session, server_id, owner_id=principal.user_id, jobs_since=since)
    return toast(render(request, PAGE, _context(view, header_oob=True), block="live"), message)


@router.post("/servers/{server_id}/power", response_class=HTMLResponse)
async def power_server(
    request: Request,
    session: DbSession,
    principal: Manager,
    server_id: ServerId,
    action: FormText = "",
    since: SinceField = None,
) -> Response:
    if action not in POWER_LABELS:
        raise ValidationFailed("Choose start, shutdown, restart or stop.")
    chosen: PowerAction = action  # type: ignore[assignment]  # checked just above
    await servers.power(session, principal.actor, server_id, chosen, owner_id=principal.user_id)
    message = POWER_DONE[action]
    return await _after_action(request, session, principal, server_id, message, f"power_{action}", since)


@router.post("/servers/{server_id}/jobs/{job_id}/retry", response_class=HTMLResponse)
async def retry_job(
    request: Request,
    session: DbSession,
    principal: Manager,
    server_id: ServerId,
    job_id: JobId,
    since: SinceField = None,
) -> Response:
    await servers.retry_job(session, principal.actor, server_id, job_id, owner_id=principal.user_id)
    return await _after_action(request, session, principal, server_id, "Trying again.", "retried", since)


@router.get("/servers/{server_id}/jobs", response_class=HTMLResponse)
async def older_jobs(
    request: Request, session: DbSession, principal: Reader, server_id: ServerId, before: Before
) -> HTMLResponse:
    """One older page of the timeline: the jobs before ``before``. htmx puts it in place of the
    page's "Show older" control; without script it is a page of its own."""
    server = await servers.get(session, server_id, owner_id=principal.user_id)
    found = await servers.jobs(
        session, server_id, owner_id=principal.user_id, before=before, limit=TIMELINE_PAGE + 1
    )
    jobs = list(found[:TIMELINE_PAGE])
    context = {
        "server": server,
        "jobs": jobs,
        "before": jobs[-1].id if len(found) > TIMELINE_PAGE else None,
        "task_label": task_label,
    }
    return render(request, "servers/jobs.html", context, block="older")


@router.post("/servers/{server_id}/rename", response_class=HTMLResponse)
async def rename_server(
    request: Request, session: DbSession, principal: Manager, server_id: ServerId, name: FormText = ""
) -> Response:
    try:
        data = ServerRename.model_validate({"name": name})
    except ValidationError as error:
        return await _page(
            request,
            session,
            principal,
            server_id,
            block="identity",
            status_code=422,
            rename_form={"name": name},
            errors=field_errors(error),
        )
    await servers.rename(session, principal.actor, server_id, data.name, owner_id=principal.user_id)
    if not is_htmx(request):
        return RedirectResponse(f"/servers/{server_id}?done=renamed", status_code=303)
    return toast(await _page(request, session, principal, server_id, block="identity"), DONE["renamed"])


@router.post("/servers/{server_id}/reinstall", response_class=HTMLResponse)
async def reinstall_server(
    request: Request,
    session: DbSession,
    principal: Manager,
    server_id: ServerId,
    template_id: FormText = "",
    confirm: FormText = "",
    ssh_key_ids: Annotated[list[str] | None, Form(max_length=50)] = None,
    ssh_keys_text: Annotated[str, Form(alias="ssh_keys", max_length=200_000)] = "",
    root_password: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    current = await servers.get(session, server_id, owner_id=principal.user_id)
    form = {
        "template_id": template_id,
        "confirm": confirm,
        "ssh_key_ids": ssh_key_ids or [],
        "ssh_keys": ssh_keys_text,
    }

    async def refused(errors: dict[str, str]) -> HTMLResponse:
        """The reinstall form again, with what was typed and the problems beside the fields."""
        return await _page(
            request,
            session,
            principal,
            server_id,
            block="reinstall",
            status_code=422,
            reinstall_form=form,
            errors=errors,
        )

    try:
        data = ServerReinstall.model_validate(
            {
                "template_id": template_id,
                # The hostname stays; the customer renames a server's host by reinstalling it only
                # through the API, where it is spelled out.
                "hostname": current.hostname or "",
                "ssh_key_ids": ssh_key_ids or [],
                "ssh_keys": _pasted_keys(ssh_keys_text),
                "root_password": root_password or None,
                "confirm": confirm,
            }
        )
    except ValidationError as error:
        return await refused(_setup_errors(error))
    try:
        async with session.begin_nested():
            setup = await servers.prepare_setup(session, principal.user_id, data)
            await servers.reinstall_confirmed(
                session, principal.actor, server_id, setup, data.confirm, owner_id=principal.user_id
            )
    except ValidationFailed as error:
        field = "confirm" if error.details.get("field") == "confirm" else "ssh_keys"
        return await refused({field: error.message})
    return redirect(request, f"/servers/{server_id}?done=reinstalling")
