"""Every customer's server, for staff, as JSON under ``/api/v1/admin/servers``.

Reading needs ``fleet_servers:read``; suspend and unsuspend need ``fleet_servers:suspend`` and a
reason of 3-500 characters (audited, and shown to the owner for a suspension). Retrying a
cancellation the processor gave up on needs ``fleet_servers:suspend`` too. Errors: 404
``server_not_found``, 409 ``server_already_suspended`` / ``server_not_suspended`` /
``server_being_deleted`` / ``cancellation_not_given_up``, 422 ``validation_failed``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from corral.auth.api import api_router
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ErrorRead
from corral.rbac.permissions import Permission
from corral.servers.cancellation import cancellations
from corral.servers.fleet import FleetServerPage, FleetServerRead, fleet
from corral.servers.fleet_repository import FLEET_FILTERS
from corral.servers.suspension import SuspensionChange, suspensions
from corral.web.deps import DbSession

MAX_ID = 2**63 - 1
_ERROR: dict[str, Any] = {"model": ErrorRead}
router = api_router("/api/v1/admin/servers", tag="fleet-servers", operation_prefix="fleet_servers")

ServerId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.FLEET_SERVERS_READ)]
Suspender = Annotated[Principal, require(Permission.FLEET_SERVERS_SUSPEND)]
StatusFilter = Annotated[
    str | None,
    Query(
        pattern=f"^({'|'.join(FLEET_FILTERS)})$",
        description="A server status, or `suspended`, `pending_cancellation`, `cancel_failed`.",
    ),
]
PageNumber = Annotated[int, Query(ge=1, le=100_000)]


@router.get("", response_model=FleetServerPage)
async def list_servers(
    session: DbSession, principal: Reader, status: StatusFilter = None, page: PageNumber = 1
) -> FleetServerPage:
    """Every customer's servers, failed cancellations first, then the newest."""
    return (await fleet.list(session, principal, status=status, page=page)).read()


@router.get("/{server_id}", response_model=FleetServerRead, responses={404: _ERROR})
async def get_server(session: DbSession, principal: Reader, server_id: ServerId) -> FleetServerRead:
    return FleetServerRead.of(await fleet.get(session, principal, server_id))


@router.post("/{server_id}/suspend", response_model=FleetServerRead, responses={404: _ERROR, 409: _ERROR})
async def suspend_server(
    session: DbSession, principal: Suspender, server_id: ServerId, data: SuspensionChange
) -> FleetServerRead:
    """Suspend: the owner sees the server read-only with the reason; the guest is powered off."""
    await suspensions.suspend(session, principal, server_id, data)
    return FleetServerRead.of(await fleet.get(session, principal, server_id))


@router.post("/{server_id}/unsuspend", response_model=FleetServerRead, responses={404: _ERROR, 409: _ERROR})
async def unsuspend_server(
    session: DbSession, principal: Suspender, server_id: ServerId, data: SuspensionChange
) -> FleetServerRead:
    """Lift a suspension (the guest stays off until its owner starts it)."""
    await suspensions.unsuspend(session, principal, server_id, data)
    return FleetServerRead.of(await fleet.get(session, principal, server_id))


@router.post(
    "/{server_id}/cancellation/retry",
    response_model=FleetServerRead,
    responses={404: _ERROR, 409: _ERROR},
)
async def retry_cancellation(
    session: DbSession, principal: Suspender, server_id: ServerId
) -> FleetServerRead:
    """Retry a cancellation the processor gave up on: its attempts start afresh and it is due now,
    so the processor takes it within 30 seconds. 409 unless the cancellation was given up."""
    await cancellations.retry(session, principal, server_id)
    return FleetServerRead.of(await fleet.get(session, principal, server_id))
