"""Every customer's servers as staff see them (seed 000 7.2, the Servers tab): owner, node, status,
suspension and cancellation, with failed cancellations first. Read with ``fleet_servers:read``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.rbac.permissions import Permission
from corral.servers import fleet_repository
from corral.servers.errors import ServerNotFound
from corral.servers.fleet_repository import FleetRow
from corral.servers.status import DisplayCode

PAGE_SIZE = 50


class FleetServerRead(BaseModel):
    """A customer's server, for staff."""

    id: int
    name: str
    hostname: str | None
    status: str
    power_state: str
    owner_id: int
    owner_email: str
    node_id: int | None
    node_name: str | None
    created_at: datetime
    suspended: bool
    suspended_at: datetime | None
    suspended_reason: str | None
    cancel_mode: str | None
    cancel_requested_at: datetime | None
    cancel_due_at: datetime | None
    cancel_attempts: int
    cancel_error: str | None
    cancel_failed: bool
    cancel_given_up: bool
    display_status: DisplayCode = Field(
        description="What the server's badge says, as its owner sees it (see ServerRead.display_status)."
    )

    @classmethod
    def of(cls, row: FleetRow) -> FleetServerRead:
        server = row.server
        return cls(
            id=server.id,
            name=server.name,
            hostname=server.hostname,
            status=server.status,
            power_state=server.power_state,
            owner_id=server.user_id,
            owner_email=row.owner_email,
            node_id=server.node_id,
            node_name=row.node_name,
            created_at=server.created_at,
            suspended=server.suspended_at is not None,
            suspended_at=server.suspended_at,
            suspended_reason=server.suspended_reason,
            cancel_mode=server.cancel_mode,
            cancel_requested_at=server.cancel_requested_at,
            cancel_due_at=server.cancel_due_at,
            cancel_attempts=server.cancel_attempts,
            cancel_error=server.cancel_error,
            cancel_failed=row.cancel_failed,
            cancel_given_up=row.cancel_given_up,
            display_status=row.display.code,
        )


class FleetServerPage(BaseModel):
    items: list[FleetServerRead]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True)
class FleetPage:
    rows: Sequence[FleetRow]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    def read(self) -> FleetServerPage:
        return FleetServerPage(
            items=[FleetServerRead.of(row) for row in self.rows],
            total=self.total,
            page=self.page,
            page_size=self.page_size,
        )


def _need(principal: Principal) -> None:
    if not principal.can(Permission.FLEET_SERVERS_READ):
        raise MissingPermission()


class FleetService:
    async def list(
        self, session: AsyncSession, principal: Principal, *, status: str | None = None, page: int = 1
    ) -> FleetPage:
        """``status`` is a server status or one of ``suspended``, ``pending_cancellation``,
        ``cancel_failed`` (callers validate it against FLEET_FILTERS)."""
        _need(principal)
        rows = await fleet_repository.fleet_rows(
            session, status=status, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        total = await fleet_repository.fleet_count(session, status=status)
        return FleetPage(rows=rows, total=total, page=page, page_size=PAGE_SIZE)

    async def get(self, session: AsyncSession, principal: Principal, server_id: int) -> FleetRow:
        _need(principal)
        row = await fleet_repository.fleet_row(session, server_id)
        if row is None:
            raise ServerNotFound()
        return row


fleet = FleetService()
