"""SQL for SSH keys. Every query is through the owner's id: another person's key is never found."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.ssh_keys import SshKey

# Two-key advisory lock (int4, int4), apart from the one-key locks of the audit log and job queue:
# "SSHK" and a hash of the owner's id, so one person's adds are counted one at a time.
_ADD_LOCK = 0x5353484B


async def lock_owner(session: AsyncSession, user_id: int) -> None:
    """Held until the transaction ends: two adds at once cannot both pass the per-account limit."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:lock, hashtext(:owner))"),
        {"lock": _ADD_LOCK, "owner": str(user_id)},
    )


async def own_keys(session: AsyncSession, user_id: int) -> Sequence[SshKey]:
    statement = (
        select(SshKey).where(SshKey.user_id == user_id).order_by(SshKey.created_at.desc(), SshKey.id.desc())
    )
    return (await session.scalars(statement)).all()


async def own_key(session: AsyncSession, user_id: int, key_id: int) -> SshKey | None:
    statement = select(SshKey).where(SshKey.user_id == user_id, SshKey.id == key_id)
    return (await session.scalars(statement)).one_or_none()


async def own_keys_by_id(session: AsyncSession, user_id: int, ids: Sequence[int]) -> Sequence[SshKey]:
    statement = select(SshKey).where(SshKey.user_id == user_id, SshKey.id.in_(ids))
    return (await session.scalars(statement)).all()


async def by_fingerprint(session: AsyncSession, user_id: int, fingerprint: str) -> SshKey | None:
    statement = select(SshKey).where(SshKey.user_id == user_id, SshKey.fingerprint == fingerprint)
    return (await session.scalars(statement)).one_or_none()


async def count(session: AsyncSession, user_id: int) -> int:
    statement = select(func.count()).select_from(SshKey).where(SshKey.user_id == user_id)
    return int((await session.execute(statement)).scalar_one())


async def add(session: AsyncSession, key: SshKey) -> SshKey:
    session.add(key)
    await session.flush()
    return key


async def delete(session: AsyncSession, key: SshKey) -> None:
    await session.delete(key)
    await session.flush()
