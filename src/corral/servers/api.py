"""A customer's servers as JSON, under /api/v1/servers. Same services as the pages.

Ordering is two calls, as on the pages: ``POST /api/v1/servers`` reserves a server (201, status
``awaiting_setup``), ``POST /api/v1/servers/{id}/setup`` builds it (202 with the job id). Power,
reinstall and retry answer 202 with the job; follow it on ``GET /api/v1/servers/{id}/jobs``.

Errors are ``{"code", "message", "request_id"}``: 404 ``server_not_found`` (also for another
person's server), 409 ``server_busy`` / ``invalid_server_state`` / ``server_limit_reached`` /
``no_capacity`` (every online node full) / ``no_node_available`` (none online: try later) /
``server_suspended`` / ``server_being_deleted``, 422 ``validation_failed`` with
field ``errors``, ``plan_not_offered``, ``invalid_ssh_key``, ``reinstall_not_confirmed``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.api import api_router
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ErrorRead
from corral.locations.schemas import MAX_ID
from corral.rbac.permissions import Permission
from corral.servers.schemas import (
    JobAccepted,
    ServerJobRead,
    ServerOrderCreate,
    ServerPower,
    ServerRead,
    ServerReinstall,
    ServerRename,
    ServerSetupCreate,
)
from corral.servers.service import PlanOrder, servers
from corral.web.deps import DbSession

_ERROR: dict[str, Any] = {"model": ErrorRead}
router = api_router("/api/v1/servers", tag="servers", operation_prefix="servers")

ServerId = Annotated[int, Path(ge=1, le=MAX_ID)]
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.SERVERS_READ)]
Manager = Annotated[Principal, require(Permission.SERVERS_MANAGE)]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _ERROR}
JobCursor = Annotated[
    int | None,
    Query(ge=1, le=MAX_ID, description="Only jobs older than this job id: the last id of the previous page."),
]
JobPageSize = Annotated[int, Query(ge=1, le=100, description="Jobs per page, 1-100.")]
_NEXT_PAGE = {
    "Link": {
        "description": 'Present when older jobs remain: `<…?before=<last id>&limit=<n>>; rel="next"`.',
        "schema": {"type": "string"},
    }
}
_ACTION: dict[int | str, dict[str, Any]] = {404: _ERROR, 409: _ERROR}


async def _read(session: AsyncSession, principal: Principal, server_id: int) -> ServerRead:
    view = await servers.view(session, server_id, owner_id=principal.user_id)
    return view.read()


@router.get("", response_model=list[ServerRead])
async def list_servers(session: DbSession, principal: Reader) -> list[ServerRead]:
    """Your servers (deleted ones left out), newest first."""
    return [view.read() for view in await servers.list_owned(session, principal.user_id)]


@router.post("", response_model=ServerRead, status_code=201, responses={409: _ERROR})
async def order_server(session: DbSession, principal: Manager, data: ServerOrderCreate) -> ServerRead:
    """Phase one: reserve a server of a plan in a location (resources and an IPv4 address are held).
    Send an `order_key` to make a retried request safe."""
    server = await servers.order(
        session,
        principal.actor,
        principal.user_id,
        PlanOrder(
            plan_id=data.plan_id, location_id=data.location_id, name=data.name, order_key=data.order_key
        ),
    )
    return await _read(session, principal, server.id)


@router.get("/{server_id}", response_model=ServerRead, responses=_NOT_FOUND)
async def get_server(session: DbSession, principal: Reader, server_id: ServerId) -> ServerRead:
    return await _read(session, principal, server_id)


@router.patch("/{server_id}", response_model=ServerRead, responses=_ACTION)
async def rename_server(
    session: DbSession, principal: Manager, server_id: ServerId, data: ServerRename
) -> ServerRead:
    """Change the display name."""
    await servers.rename(session, principal.actor, server_id, data.name, owner_id=principal.user_id)
    return await _read(session, principal, server_id)


@router.post("/{server_id}/setup", response_model=JobAccepted, status_code=202, responses=_ACTION)
async def setup_server(
    session: DbSession, principal: Manager, server_id: ServerId, data: ServerSetupCreate
) -> JobAccepted:
    """Phase two: operating system, hostname, SSH keys (saved ids and/or pasted keys) and a root
    password, at least one key or the password (a 422 otherwise: nobody could sign in); a job builds
    the server."""
    setup = await servers.prepare_setup(session, principal.user_id, data)
    job_id = await servers.setup(session, principal.actor, server_id, setup, owner_id=principal.user_id)
    return JobAccepted(job_id=job_id, server=await _read(session, principal, server_id))


@router.post("/{server_id}/power", response_model=JobAccepted, status_code=202, responses=_ACTION)
async def power_server(
    session: DbSession, principal: Manager, server_id: ServerId, data: ServerPower
) -> JobAccepted:
    """Start, shut down, restart or force off. One operation at a time per server: a second while
    the first waits is a 409 `server_busy`."""
    job_id = await servers.power(session, principal.actor, server_id, data.action, owner_id=principal.user_id)
    return JobAccepted(job_id=job_id, server=await _read(session, principal, server_id))


@router.post("/{server_id}/reinstall", response_model=JobAccepted, status_code=202, responses=_ACTION)
async def reinstall_server(
    session: DbSession, principal: Manager, server_id: ServerId, data: ServerReinstall
) -> JobAccepted:
    """Wipe the disk and install `template_id` again with `hostname`; `confirm` must be the server's
    current hostname. As for the setup, at least one SSH key or a root password is required."""
    setup = await servers.prepare_setup(session, principal.user_id, data)
    job_id = await servers.reinstall_confirmed(
        session, principal.actor, server_id, setup, data.confirm, owner_id=principal.user_id
    )
    return JobAccepted(job_id=job_id, server=await _read(session, principal, server_id))


@router.get(
    "/{server_id}/jobs",
    response_model=list[ServerJobRead],
    responses={200: {"headers": _NEXT_PAGE}, **_NOT_FOUND},
)
async def list_server_jobs(
    session: DbSession,
    principal: Reader,
    server_id: ServerId,
    response: Response,
    before: JobCursor = None,
    limit: JobPageSize = 50,
) -> list[ServerJobRead]:
    """The server's task timeline, newest first: state, attempts and log lines of each job, a page
    at a time. For the next (older) page pass `before` = the last job's id, or follow the `Link`
    header's `rel="next"`, sent while older jobs remain."""
    found = await servers.jobs(session, server_id, owner_id=principal.user_id, before=before, limit=limit + 1)
    page = list(found[:limit])
    if len(found) > limit:
        next_url = f"/api/v1/servers/{server_id}/jobs?before={page[-1].id}&limit={limit}"
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return [ServerJobRead.of(job) for job in page]


@router.post(
    "/{server_id}/jobs/{job_id}/retry", response_model=ServerJobRead, status_code=202, responses=_ACTION
)
async def retry_server_job(
    session: DbSession, principal: Manager, server_id: ServerId, job_id: JobId
) -> ServerJobRead:
    """Queue a failed job of this server again (409 `job_not_retryable` for any other state)."""
    job = await servers.retry_job(session, principal.actor, server_id, job_id, owner_id=principal.user_id)
    return ServerJobRead.of(job)
