"""Suspension by staff: the owner sees the server read-only, with the reason.

Suspending marks the server (``suspended_at``, ``suspended_reason``) and queues a forced power-off
so the guest stops; the server keeps its status, so unsuspending simply removes the mark (the owner
powers it on again). :func:`ensure_not_suspended` is what power, reinstall and console call before
acting. Both changes need ``fleet_servers:suspend`` and are audited with their reason.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.jobs.service import job_service
from corral.kit.clock import utcnow
from corral.kit.text import NORMALISED_NEWLINES, MultiLine
from corral.models.servers import Server, ServerStatus
from corral.rbac.permissions import Permission
from corral.servers import fleet_repository
from corral.servers.errors import (
    AlreadySuspended,
    NotSuspended,
    ServerBeingDeleted,
    ServerNotFound,
    ServerSuspended,
)

REASON_MIN = 3
REASON_MAX = 500
# Statuses in which the guest runs or is about to: the stop job waits behind any build or reinstall
# (same server lock, run in order) and then powers it off.
_MAY_RUN = (ServerStatus.PROVISIONING.value, ServerStatus.ACTIVE.value, ServerStatus.REINSTALLING.value)
_GONE = (ServerStatus.DELETING.value, ServerStatus.DELETED.value)

Reason = Annotated[
    MultiLine,
    StringConstraints(strip_whitespace=True, min_length=REASON_MIN, max_length=REASON_MAX),
    Field(description="Why (3-500 characters). The owner sees a suspension's reason."),
    NORMALISED_NEWLINES,
]


class SuspensionChange(BaseModel):
    """The body of a suspend or unsuspend: the reason is required and audited."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


def ensure_not_suspended(server: Server) -> None:
    """Refuse an owner's action on a suspended server (409 ``server_suspended``, with the reason)."""
    if server.suspended_at is not None:
        raise ServerSuspended.because(server.suspended_reason)


async def _locked(session: AsyncSession, principal: Principal, server_id: int) -> Server:
    """The server, locked for the change, if the principal may suspend servers."""
    if not principal.can(Permission.FLEET_SERVERS_SUSPEND):
        raise MissingPermission()
    server = await fleet_repository.for_update(session, server_id)
    if server is None:
        raise ServerNotFound()
    return server


class SuspensionService:
    async def suspend(
        self, session: AsyncSession, principal: Principal, server_id: int, change: SuspensionChange
    ) -> Server:
        server = await _locked(session, principal, server_id)
        if server.status in _GONE:
            raise ServerBeingDeleted()
        if server.suspended_at is not None:
            raise AlreadySuspended()
        server.suspended_at = utcnow()
        server.suspended_reason = change.reason
        job_id: int | None = None
        if server.status in _MAY_RUN:
            # Deferred directly, not through servers.power: that refuses suspended servers, and an
            # operator's suspension must not fail because the owner queued a power action first.
            job_id = await job_service.defer(session, "server.power", server_id=server.id, action="stop")
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "server.suspend",
            target=Target(type="server", id=server.id),
            payload={"owner_id": server.user_id, "stop_job_id": job_id},
            reason=change.reason,
        )
        return server

    async def unsuspend(
        self, session: AsyncSession, principal: Principal, server_id: int, change: SuspensionChange
    ) -> Server:
        server = await _locked(session, principal, server_id)
        if server.suspended_at is None:
            raise NotSuspended()
        previous = server.suspended_reason
        since = server.suspended_at
        server.suspended_at = None
        server.suspended_reason = None
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "server.unsuspend",
            target=Target(type="server", id=server.id),
            payload={
                "owner_id": server.user_id,
                "suspended_reason": previous,
                "suspended_at": since.isoformat(),
            },
            reason=change.reason,
        )
        return server


suspensions = SuspensionService()
