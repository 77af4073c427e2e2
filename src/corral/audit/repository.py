"""The SQL of the audit log. Every statement is parameterised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Text, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit.chain import ChainRow
from corral.audit.schemas import Target
from corral.models.audit import AuditCheckpoint, AuditEvent

# pg_advisory_xact_lock key that serialises appends to the chain ("corralAu" in ASCII). Any other
# advisory lock user in this database must pick a different number.
CHAIN_LOCK_ID = 0x636F7272616C4175

_LOCK_CHAIN = text(
    # abbrev(inet) is inet's own output form (an explicit ::text cast would add "/32"), so the IP we
    # hash is exactly what a later read gives back. Doing it here costs no extra round trip.
    "SELECT pg_advisory_xact_lock(:lock_id), abbrev(CAST(:ip AS inet)),"
    " current_setting('transaction_isolation')"
)


class ChainLock(NamedTuple):
    ip_text: str | None
    isolation: str


class StoredRow(NamedTuple):
    row: ChainRow
    hash: str


async def lock_chain(session: AsyncSession, ip: str | None) -> ChainLock:
    """Take the append lock (held until the transaction ends) and render ``ip`` as PostgreSQL does.

    It is a transaction-scoped advisory lock: two transactions appending at once queue here, so
    the second reads the first one's committed head and the chain can never fork.
    """
    result = await session.execute(_LOCK_CHAIN, {"lock_id": CHAIN_LOCK_ID, "ip": ip})
    _, ip_text, isolation = result.one()
    return ChainLock(ip_text=ip_text, isolation=str(isolation))


async def head(session: AsyncSession) -> tuple[int, str] | None:
    """(seq, hash) of the newest row, or None when the chain is empty."""
    statement = select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    row = (await session.execute(statement)).first()
    return (int(row.seq), str(row.hash)) if row is not None else None


async def insert_event(session: AsyncSession, event: AuditEvent) -> None:
    session.add(event)
    await session.flush()


_CHAIN_COLUMNS = (
    AuditEvent.seq,
    AuditEvent.occurred_at,
    AuditEvent.actor_type,
    AuditEvent.actor_id,
    AuditEvent.actor_label,
    AuditEvent.actor_role,
    AuditEvent.action,
    AuditEvent.target_type,
    AuditEvent.target_id,
    AuditEvent.payload,
    AuditEvent.result,
    func.abbrev(AuditEvent.ip, type_=Text).label("ip"),
    AuditEvent.reason,
    AuditEvent.request_id,
    AuditEvent.key_id,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)


async def chain_batch(session: AsyncSession, after_seq: int, limit: int) -> list[StoredRow]:
    """Up to ``limit`` rows with seq > ``after_seq`` in chain order (keyset paging on the key)."""
    statement = (
        select(*_CHAIN_COLUMNS).where(AuditEvent.seq > after_seq).order_by(AuditEvent.seq).limit(limit)
    )
    rows = (await session.execute(statement)).all()
    stored = []
    for row in rows:
        values = row._asdict()
        digest = values.pop("hash")
        stored.append(StoredRow(row=ChainRow(**values), hash=str(digest)))
    return stored


async def checkpoints(session: AsyncSession) -> Sequence[AuditCheckpoint]:
    """Every checkpoint, oldest head first. One a hour is ~9,000 a year: small enough to hold."""
    statement = select(AuditCheckpoint).order_by(AuditCheckpoint.seq, AuditCheckpoint.id)
    return (await session.scalars(statement)).all()


async def insert_checkpoint(session: AsyncSession, checkpoint: AuditCheckpoint) -> None:
    session.add(checkpoint)
    await session.flush()


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_events(
    session: AsyncSession,
    *,
    action: str | None,
    actor_id: int | None,
    target: Target | None,
    before_seq: int | None,
    limit: int,
) -> Sequence[AuditEvent]:
    """Newest first. ``action`` is exact, or a prefix when it ends in ``.*`` (``server.*``)."""
    statement = select(AuditEvent)
    if action is not None:
        if action.endswith(".*"):
            prefix = _escape_like(action[:-1])
            statement = statement.where(AuditEvent.action.like(f"{prefix}%", escape="\\"))
        else:
            statement = statement.where(AuditEvent.action == action)
    if actor_id is not None:
        statement = statement.where(AuditEvent.actor_id == actor_id)
    if target is not None:
        statement = statement.where(AuditEvent.target_type == target.type)
        if target.id is not None:
            statement = statement.where(AuditEvent.target_id == target.id)
    if before_seq is not None:
        statement = statement.where(AuditEvent.seq < before_seq)
    statement = statement.order_by(AuditEvent.seq.desc()).limit(limit)
    return (await session.scalars(statement)).all()
