"""SQL for users."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.users import User


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    statement = select(User).where(func.lower(User.email) == email.strip().lower())
    return (await session.execute(statement)).scalar_one_or_none()


def add(session: AsyncSession, user: User) -> None:
    session.add(user)
