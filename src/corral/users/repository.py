"""SQL for users, their emailed tokens and the anonymous requests that are rate-limited."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.auth import UserToken
from corral.models.users import AccountRequest, User


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    statement = select(User).where(func.lower(User.email) == email.strip().lower())
    return (await session.execute(statement)).scalar_one_or_none()


async def get_by_id(session: AsyncSession, user_id: int, *, for_update: bool = False) -> User | None:
    statement = select(User).where(User.id == user_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


def add(session: AsyncSession, user: User) -> None:
    session.add(user)


# ---------------------------------------------------------------- emailed tokens


def add_token(session: AsyncSession, token: UserToken) -> None:
    session.add(token)


async def token_by_hash(
    session: AsyncSession, token_hash: str, purpose: str, *, for_update: bool = False
) -> UserToken | None:
    statement = select(UserToken).where(UserToken.token_hash == token_hash, UserToken.purpose == purpose)
    if for_update:
        # Two clicks on one link at once: the second waits, then sees it used.
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def retire_tokens(session: AsyncSession, user_id: int, purpose: str, now: datetime) -> int:
    """Mark every unused token of this purpose used: only the newest link may work."""
    result = await session.execute(
        update(UserToken)
        .where(UserToken.user_id == user_id, UserToken.purpose == purpose, UserToken.used_at.is_(None))
        .values(used_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def pending_token(session: AsyncSession, user_id: int, purpose: str, now: datetime) -> UserToken | None:
    """The newest token of this purpose that still works (e.g. an email change waiting for its link)."""
    statement = (
        select(UserToken)
        .where(
            UserToken.user_id == user_id,
            UserToken.purpose == purpose,
            UserToken.used_at.is_(None),
            UserToken.expires_at > now,
        )
        .order_by(UserToken.created_at.desc(), UserToken.id.desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


# ---------------------------------------------------------------- rate-limited requests


def add_request(session: AsyncSession, request: AccountRequest) -> None:
    session.add(request)


async def count_requests(
    session: AsyncSession,
    kind: str,
    since: datetime,
    *,
    ip: str | None = None,
    email: str | None = None,
) -> tuple[int, datetime | None]:
    """How many requests of ``kind`` came from ``ip`` (or for ``email``) since ``since``, and the oldest."""
    statement = select(func.count(), func.min(AccountRequest.created_at)).where(
        AccountRequest.kind == kind, AccountRequest.created_at > since
    )
    if ip is not None:
        statement = statement.where(AccountRequest.ip == ip)
    if email is not None:
        statement = statement.where(AccountRequest.email == email)
    count, oldest = (await session.execute(statement)).one()
    return int(count), oldest


async def prune_requests(session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(AccountRequest).where(AccountRequest.created_at < before))
