"""SQL for panel settings: read them all, lock them for a change, upsert one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.settings import PanelSetting

# Two-key advisory lock (int4, int4), apart from the one-key locks of the audit log and job queue.
# Rows that do not exist yet cannot be locked with FOR UPDATE, so changes take this instead.
_UPDATE_LOCK = 0x50534554  # "PSET"


async def values(session: AsyncSession, keys: Sequence[str]) -> dict[str, Any]:
    statement = select(PanelSetting.key, PanelSetting.value).where(PanelSetting.key.in_(keys))
    return {key: value for key, value in (await session.execute(statement)).all()}


async def lock_for_update(session: AsyncSession) -> None:
    """Held until the transaction ends: concurrent changes apply (and are audited) one at a time."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:lock, 0)"), {"lock": _UPDATE_LOCK})


async def upsert(session: AsyncSession, key: str, value: Any, updated_by_id: int | None) -> None:
    statement = insert(PanelSetting).values(key=key, value=value, updated_by_id=updated_by_id)
    statement = statement.on_conflict_do_update(
        index_elements=[PanelSetting.key],
        set_={"value": statement.excluded.value, "updated_at": func.now(), "updated_by_id": updated_by_id},
    )
    await session.execute(statement)
