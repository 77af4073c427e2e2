"""SQL for cancellation, suspension and the staff view of every customer's servers.

Kept apart from ``repository.py`` (placement, drift, jobs) so the two change independently.
Ownership is applied here: a customer's lookups filter on ``user_id``, so another customer's server
is simply not found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.nodes import Node
from corral.models.servers import Server, ServerStatus
from corral.models.users import User
from corral.servers.status import DisplayStatus, display_status

# Filters of the staff list besides the plain statuses.
SUSPENDED = "suspended"
PENDING_CANCELLATION = "pending_cancellation"
CANCEL_FAILED = "cancel_failed"
FLEET_FILTERS: tuple[str, ...] = (
    *(status.value for status in ServerStatus if status != ServerStatus.SUSPENDED),
    SUSPENDED,
    PENDING_CANCELLATION,
    CANCEL_FAILED,
)


@dataclass(frozen=True)
class FleetRow:
    """A server with its owner's email and its node's name (one query for a whole page)."""

    server: Server
    owner_email: str
    node_name: str | None

    @property
    def cancel_failed(self) -> bool:
        return cancel_failed(self.server)

    @property
    def cancel_given_up(self) -> bool:
        return cancel_given_up(self.server)

    @property
    def display(self) -> DisplayStatus:
        """The server's badge, as its owner sees it (servers/status.py)."""
        return display_status(self.server)


def cancel_failed(server: Server) -> bool:
    """A cancellation whose deletion failed at least once and has not finished since."""
    return server.cancel_error is not None and server.status != ServerStatus.DELETED.value


def cancel_given_up(server: Server) -> bool:
    """A cancellation the processor stopped retrying: it is no longer due, yet the server is not
    deleted. Only staff can set it going again (``CancellationService.retry``)."""
    return (
        server.cancel_mode is not None
        and server.cancel_due_at is None
        and server.status != ServerStatus.DELETED.value
        and server.deleted_at is None
    )


async def owned(
    session: AsyncSession, user_id: int, server_id: int, *, for_update: bool = False
) -> Server | None:
    statement = select(Server).where(Server.id == server_id, Server.user_id == user_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def for_update(session: AsyncSession, server_id: int) -> Server | None:
    statement = select(Server).where(Server.id == server_id).with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def due_cancellations(session: AsyncSession, now: datetime, *, limit: int) -> Sequence[Server]:
    """Cancellations due by ``now``, oldest first, row-locked. ``SKIP LOCKED``: several workers (or
    a run that overlaps the previous one) each take different servers instead of waiting."""
    statement = (
        select(Server)
        .where(Server.cancel_due_at.is_not(None), Server.cancel_due_at <= now)
        .order_by(Server.cancel_due_at, Server.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(statement)).scalars().all()


_FleetSelect = Select[Server, str, str]
_S = TypeVar("_S", _FleetSelect, Select[int])


def _filtered(statement: _S, status: str | None) -> _S:
    if status is None:
        return statement
    if status == SUSPENDED:
        # Suspension is the ``suspended_at`` mark; the status of that name is matched as well.
        return statement.where(or_(Server.suspended_at.is_not(None), Server.status == SUSPENDED))
    if status == PENDING_CANCELLATION:
        return statement.where(Server.cancel_due_at.is_not(None))
    if status == CANCEL_FAILED:
        return statement.where(Server.cancel_error.is_not(None), Server.status != ServerStatus.DELETED.value)
    return statement.where(Server.status == status)


def _fleet_select() -> _FleetSelect:
    statement: _FleetSelect = (
        select(Server, User.email, Node.name)
        .join(User, User.id == Server.user_id)
        .outerjoin(Node, Node.id == Server.node_id)
    )
    return statement


async def fleet_rows(
    session: AsyncSession, *, status: str | None, limit: int, offset: int
) -> Sequence[FleetRow]:
    """A page of every customer's servers: failed cancellations first (they need a person), then
    the newest."""
    failing = case(
        (and_(Server.cancel_error.is_not(None), Server.status != ServerStatus.DELETED.value), 0), else_=1
    )
    statement = (
        _filtered(_fleet_select(), status).order_by(failing, Server.id.desc()).limit(limit).offset(offset)
    )
    rows = await session.execute(statement)
    return [FleetRow(server=row[0], owner_email=str(row[1]), node_name=row[2]) for row in rows]


async def fleet_count(session: AsyncSession, *, status: str | None) -> int:
    statement = _filtered(select(func.count()).select_from(Server), status)
    return int(await session.scalar(statement) or 0)


async def fleet_row(session: AsyncSession, server_id: int) -> FleetRow | None:
    row = (await session.execute(_fleet_select().where(Server.id == server_id))).one_or_none()
    if row is None:
        return None
    return FleetRow(server=row[0], owner_email=str(row[1]), node_name=row[2])
