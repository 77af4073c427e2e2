"""SQL for the admin user pages. Every value reaches PostgreSQL as a bound parameter."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.admin.schemas import UserFilter
from corral.models.auth import UserSession
from corral.models.users import User, UserRole, UserStatus


def _conditions(filters: UserFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.q:
        # icontains(autoescape=True) escapes %, _ and the escape character itself, so a search
        # for "50%_off" matches those characters literally instead of acting as a pattern.
        conditions.append(
            or_(
                User.email.icontains(filters.q, autoescape=True),
                User.name.icontains(filters.q, autoescape=True),
            )
        )
    if filters.status is not None:
        conditions.append(User.status == filters.status.value)
    if filters.role is not None:
        conditions.append(User.role == filters.role.value)
    return conditions


async def page(session: AsyncSession, filters: UserFilter) -> tuple[list[User], bool]:
    """Up to ``filters.limit`` users, newest first, and whether more lie beyond the page in the
    direction of travel (older for ``before`` or no cursor, newer for ``after``)."""
    statement: Select[User] = select(User).where(*_conditions(filters))
    if filters.after is not None:
        # Walking back towards newer users: read upwards from the cursor, then restore the order.
        statement = statement.where(User.id > filters.after).order_by(User.id.asc())
    else:
        if filters.before is not None:
            statement = statement.where(User.id < filters.before)
        statement = statement.order_by(User.id.desc())
    # One row more than the page tells whether another page follows, without a second query.
    rows = list((await session.scalars(statement.limit(filters.limit + 1))).all())
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    if filters.after is not None:
        rows.reverse()
    return rows, more


async def count(session: AsyncSession, filters: UserFilter) -> int:
    statement = select(func.count()).select_from(User).where(*_conditions(filters))
    return int((await session.execute(statement)).scalar_one())


async def count_with_status(session: AsyncSession, status: UserStatus) -> int:
    statement = select(func.count()).select_from(User).where(User.status == status.value)
    return int((await session.execute(statement)).scalar_one())


async def get(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_for_update(session: AsyncSession, user_id: int) -> User | None:
    """The user row, locked until the transaction ends, so two staff acting on the same account
    at once take turns; populate_existing refreshes a copy already loaded in this session."""
    statement = (
        select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_active_super_admins(session: AsyncSession) -> Sequence[int]:
    """Ids of the active super admins, row-locked until the transaction ends. A transaction that
    waited here re-reads rows that changed meanwhile, so it sees a demotion that just committed."""
    statement = (
        select(User.id)
        .where(User.role == UserRole.SUPER_ADMIN.value, User.status == UserStatus.ACTIVE.value)
        .order_by(User.id)
        .with_for_update()
    )
    return (await session.scalars(statement)).all()


async def active_session_count(
    session: AsyncSession, user_id: int, now: datetime, idle_since: datetime
) -> int:
    """Sessions that would still be accepted: not revoked, not expired, not idle too long."""
    statement = (
        select(func.count())
        .select_from(UserSession)
        .where(
            UserSession.user_id == user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > now,
            UserSession.last_seen_at > idle_since,
        )
    )
    return int((await session.execute(statement)).scalar_one())
