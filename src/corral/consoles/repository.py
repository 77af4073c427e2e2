"""SQL for console tickets and the one server a console is for. Ownership is part of every query."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.auth import UserSession
from corral.models.consoles import ConsoleTicket
from corral.models.servers import Server, ServerStatus
from corral.models.users import User, UserStatus


async def owned_server(session: AsyncSession, user_id: int, server_id: int) -> Server | None:
    """The user's own server (not deleted); another customer's server is simply not found."""
    statement = select(Server).where(
        Server.id == server_id,
        Server.user_id == user_id,
        Server.status != ServerStatus.DELETED.value,
    )
    return (await session.scalars(statement)).one_or_none()


async def add_ticket(
    session: AsyncSession, *, ticket_hash: str, user_id: int, server_id: int, expires_at: datetime
) -> ConsoleTicket:
    ticket = ConsoleTicket(
        ticket_hash=ticket_hash, user_id=user_id, server_id=server_id, expires_at=expires_at
    )
    session.add(ticket)
    await session.flush()
    return ticket


async def forget_expired(session: AsyncSession, user_id: int) -> None:
    """Drop the user's dead tickets (used or expired) so the table stays as small as its use."""
    await session.execute(
        delete(ConsoleTicket).where(
            ConsoleTicket.user_id == user_id,
            (ConsoleTicket.expires_at <= func.now()) | ConsoleTicket.used_at.is_not(None),
        )
    )


async def consume(session: AsyncSession, *, ticket_hash: str, user_id: int, server_id: int) -> int | None:
    """Mark the ticket used if it is unused, unexpired and bound to this user and server, in one
    statement, so two connections racing with the same ticket cannot both win. Returns its id."""
    statement = (
        update(ConsoleTicket)
        .where(
            ConsoleTicket.ticket_hash == ticket_hash,
            ConsoleTicket.used_at.is_(None),
            ConsoleTicket.expires_at > func.now(),
            ConsoleTicket.user_id == user_id,
            ConsoleTicket.server_id == server_id,
        )
        .values(used_at=func.now())
        .returning(ConsoleTicket.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def ticket_state(session: AsyncSession, ticket_hash: str) -> tuple[ConsoleTicket, bool] | None:
    """The ticket and whether it has expired by the database clock, to explain a refusal."""
    statement = select(ConsoleTicket, ConsoleTicket.expires_at <= func.now()).where(
        ConsoleTicket.ticket_hash == ticket_hash
    )
    row = (await session.execute(statement)).one_or_none()
    return (row[0], bool(row[1])) if row is not None else None


async def session_is_live(session: AsyncSession, session_id: int) -> bool:
    """Whether the sign-in session is still good for an open console: not revoked, before its
    absolute end by the database clock, and its user still active."""
    statement = (
        select(UserSession.id)
        .join(User, User.id == UserSession.user_id)
        .where(
            UserSession.id == session_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > func.now(),
            User.status == UserStatus.ACTIVE.value,
        )
    )
    return (await session.scalars(statement)).one_or_none() is not None
