"""Engine and session factories.

One transaction per request or job: services only ``flush()``; the request or job wrapper
commits (or rolls back on error).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from corral.config import Settings
from corral.kit.errors import Busy

# SQLSTATE 55P03: a lock wait passed ``lock_timeout``, or a NOWAIT lock was taken.
LOCK_NOT_AVAILABLE = "55P03"


def create_engine(url: URL, settings: Settings) -> AsyncEngine:
    database = settings.database
    options = f"-c statement_timeout={database.statement_timeout_ms}"
    options += f" -c lock_timeout={database.lock_timeout_ms}"
    engine = create_async_engine(
        url,
        pool_size=database.pool_size,
        max_overflow=database.max_overflow,
        pool_pre_ping=True,
        connect_args={"options": options, "application_name": "corral"},
    )
    translate_lock_errors(engine)
    return engine


def translate_lock_errors(engine: AsyncEngine) -> None:
    """Make ``engine`` raise ``Busy`` for a lock it could not get (see ``_lock_wait_is_busy``)."""
    event.listen(engine.sync_engine, "handle_error", _lock_wait_is_busy)


def _lock_wait_is_busy(context: ExceptionContext) -> None:
    """A lock wait past ``lock_timeout``, anywhere, leaves as ``Busy`` (a 409 for a request, a retry
    for a job) instead of a database error that would read as a 500. The transaction is still
    rolled back by whoever owns it."""
    if getattr(getattr(context.original_exception, "diag", None), "sqlstate", None) == LOCK_NOT_AVAILABLE:
        raise Busy() from context.sqlalchemy_exception


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
