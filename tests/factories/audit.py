"""Audit log test helpers: a committed chain in a database of its own, and a way to tamper with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from corral.audit import Target, VerifyReport, audit
from corral.config import Settings
from corral.db.session import create_engine, create_session_factory, transaction
from corral.kit.actors import Actor
from corral.models.audit import AuditCheckpoint, AuditEvent

OPERATOR = Actor.user(7, "ops@example.test", "operator")
ACTIONS = ("server.power.stop", "server.power.start", "user.credit.adjust", "plan.price.update")


async def record_events(session: AsyncSession, count: int, *, actor: Actor = OPERATOR) -> list[AuditEvent]:
    """``count`` varied events in the session's transaction (not committed)."""
    events = []
    for index in range(count):
        event = await audit.record(
            session,
            actor,
            ACTIONS[index % len(ACTIONS)],
            target=Target(type="server", id=100 + index),
            payload={"index": index, "note": f"event {index}", "amount": index * 250},
            ip="203.0.113.7",
            request_id=f"req-{index:08d}",
        )
        events.append(event)
    return events


@dataclass
class AuditDatabase:
    """A fresh database with its own engine; every method runs in its own committed transaction."""

    engine: AsyncEngine
    factory: async_sessionmaker[AsyncSession]

    async def record(self, count: int) -> list[AuditEvent]:
        async with transaction(self.factory) as session:
            return await record_events(session, count)

    async def checkpoint(self) -> AuditCheckpoint | None:
        async with transaction(self.factory) as session:
            return await audit.checkpoint(session)

    async def verify(self, **options: Any) -> VerifyReport:
        async with transaction(self.factory) as session:
            return await audit.verify(session, **options)

    async def count(self) -> int:
        async with self.factory() as session:
            return int((await session.scalar(select(func.count()).select_from(AuditEvent))) or 0)

    async def tamper(self, *statements: str, params: dict[str, Any] | None = None) -> None:
        """Run SQL with the append-only triggers bypassed, as a superuser can."""
        async with self.engine.begin() as connection:
            await connection.execute(text("SET LOCAL session_replication_role = replica"))
            for statement in statements:
                await connection.execute(text(statement), params or {})


@asynccontextmanager
async def audit_database(url: URL, settings: Settings) -> AsyncIterator[AuditDatabase]:
    engine = create_engine(url, settings)
    try:
        yield AuditDatabase(engine=engine, factory=create_session_factory(engine, settings))
    finally:
        await engine.dispose()
