"""Engine and session factories.

One transaction per request or job: services only ``flush()``; the request or job wrapper
commits (or rolls back on error).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from corral.config import Settings


def create_engine(url: URL, settings: Settings) -> AsyncEngine:
    timeout = settings.database.statement_timeout_ms
    return create_async_engine(
        url,
        pool_size=settings.database.pool_size,
        max_overflow=settings.database.max_overflow,
        pool_pre_ping=True,
        connect_args={"options": f"-c statement_timeout={timeout}", "application_name": "corral"},
    )


def create_session_factory(engine: AsyncEngine, settings: Settings) -> async_sessionmaker[AsyncSession]:
    # Sessions carry the settings they were made under, so services that need configuration (the
    # audit key, the public URL) read it from the session they were handed, in requests and jobs alike.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info={"settings": settings})


def settings_of(session: AsyncSession) -> Settings:
    settings = session.info.get("settings")
    if not isinstance(settings, Settings):
        raise RuntimeError("this session was not made by create_session_factory()")
    return settings


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose work is committed when the block ends normally and rolled back otherwise."""
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()
