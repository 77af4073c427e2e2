"""A customer cancelling their own server, as JSON: ``/api/v1/servers/{id}/cancellation``.

``POST`` asks for it (``grace``: deleted after the grace period, revocable; ``immediate``: deleted
within minutes, final, needs ``confirm`` set to the server's name), ``DELETE`` revokes a grace
cancellation, ``GET`` shows where it stands. Another customer's server is a 404. Errors: 409
``cancellation_exists`` / ``cancellation_not_revocable`` / ``no_cancellation`` /
``server_being_deleted``, 422 ``cancellation_not_confirmed`` or ``validation_failed``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Response
from pydantic import BaseModel, ConfigDict, Field

from corral.auth.api import api_router
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ErrorRead
from corral.kit.text import SingleLine
from corral.models.servers import CancelMode, Server
from corral.rbac.permissions import Permission
from corral.servers.cancellation import cancellations, locked_for_deletion, pending_cancellation, revocable
from corral.web.deps import DbSession

MAX_ID = 2**63 - 1
_ERROR: dict[str, Any] = {"model": ErrorRead}
router = api_router(
    "/api/v1/servers",
    tag="servers",
    operation_prefix="server_cancellation",
    responses={404: {**_ERROR, "description": "No such server, or not yours."}},
)

ServerId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.SERVERS_READ)]
Manager = Annotated[Principal, require(Permission.SERVERS_MANAGE)]


class CancellationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: CancelMode = Field(
        description="`grace`: deleted after the grace period (30 days), revocable until then. "
        "`immediate`: deleted within 5 minutes; cannot be revoked."
    )
    confirm: SingleLine | None = Field(
        default=None, max_length=64, description="The server's name, required for `immediate`."
    )


class CancellationRead(BaseModel):
    server_id: int
    server_status: str
    mode: CancelMode | None = Field(description="None when the server is not cancelled.")
    requested_at: datetime | None
    due_at: datetime | None = Field(description="When the deletion runs (or runs again after a failure).")
    pending: bool = Field(description="A grace cancellation still waiting: the PENDING CANCELLATION badge.")
    revocable: bool
    locked: bool = Field(description="The server is being deleted: no more actions are accepted.")

    @classmethod
    def of(cls, server: Server) -> CancellationRead:
        return cls(
            server_id=server.id,
            server_status=server.status,
            mode=CancelMode(server.cancel_mode) if server.cancel_mode else None,
            requested_at=server.cancel_requested_at,
            due_at=server.cancel_due_at,
            pending=pending_cancellation(server),
            revocable=revocable(server),
            locked=locked_for_deletion(server),
        )


@router.get("/{server_id}/cancellation", response_model=CancellationRead)
async def get_cancellation(session: DbSession, principal: Reader, server_id: ServerId) -> CancellationRead:
    return CancellationRead.of(await cancellations.get(session, principal, server_id))


@router.post(
    "/{server_id}/cancellation",
    response_model=CancellationRead,
    status_code=201,
    responses={409: _ERROR, 422: _ERROR},
)
async def request_cancellation(
    session: DbSession, principal: Manager, server_id: ServerId, data: CancellationCreate
) -> CancellationRead:
    """Cancel the server. A grace cancellation may later be made immediate; not the reverse."""
    server = await cancellations.request(session, principal, server_id, data.mode, confirm=data.confirm)
    return CancellationRead.of(server)


@router.delete("/{server_id}/cancellation", status_code=204, responses={409: _ERROR})
async def revoke_cancellation(session: DbSession, principal: Manager, server_id: ServerId) -> Response:
    """Keep the server: revoke a grace cancellation before it is due (immediate ones cannot be)."""
    await cancellations.revoke(session, principal, server_id)
    return Response(status_code=204)
