"""SQL for outgoing email."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.email import EmailMessage


def add(session: AsyncSession, message: EmailMessage) -> None:
    session.add(message)


async def get(session: AsyncSession, message_id: int) -> EmailMessage | None:
    return await session.get(EmailMessage, message_id)


async def get_for_update(session: AsyncSession, message_id: int) -> EmailMessage | None:
    """The row, locked until the transaction ends, fresh from the database (not the identity map).

    The lock makes a hand-started re-run wait for a running attempt instead of sending twice.
    """
    statement = (
        select(EmailMessage)
        .where(EmailMessage.id == message_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def list_recent(
    session: AsyncSession, *, status: str | None = None, limit: int = 50
) -> Sequence[EmailMessage]:
    statement = select(EmailMessage).order_by(EmailMessage.created_at.desc(), EmailMessage.id.desc())
    if status is not None:
        statement = statement.where(EmailMessage.status == status)
    return (await session.execute(statement.limit(limit))).scalars().all()
