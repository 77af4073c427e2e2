"""Tasks and helpers shared by the job tests (no tests here).

The tasks register under the ``testjobs`` domain when this module is imported; they run in real
workers started on a ``fresh_database()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy import insert
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from corral.config import Settings
from corral.db.session import create_engine, create_session_factory, transaction
from corral.jobs.app import Backoff, TaskContext, task
from corral.jobs.errors import PermanentJobError
from corral.jobs.runtime import JobRuntime
from corral.jobs.schemas import JobRead
from corral.jobs.service import job_service
from corral.models.jobs import JobLog

T = TypeVar("T")

# Fast polling so retries coming due are fetched quickly; short shutdown deadline.
POLL_INTERVAL = 0.1
SHUTDOWN_TIMEOUT = 3.0
FAST_RETRY = Backoff(attempts=3, base_seconds=0.05, cap_seconds=0.2)


@task("testjobs.echo", retry=None)
async def echo(ctx: TaskContext, *, message: str) -> None:
    await ctx.log(message)
    await ctx.log(f"{message} (warning)", level="warning")


@task("testjobs.fail_until", retry=FAST_RETRY)
async def fail_until(ctx: TaskContext, *, succeed_on: int) -> None:
    """Fails every attempt before ``succeed_on``."""
    await ctx.log(f"attempt {ctx.attempt} started")
    if ctx.attempt < succeed_on:
        raise RuntimeError(f"boom on attempt {ctx.attempt}")


@task("testjobs.always_fail", retry=None)
async def always_fail(ctx: TaskContext, *, marker: str) -> None:
    """Writes a row in its own transaction, logs a line, then fails: only the log line survives."""
    await ctx.session.execute(
        insert(JobLog).values(job_id=ctx.job_id, attempt=ctx.attempt, level="debug", message=marker)
    )
    await ctx.log("about to fail")
    raise ValueError(f"refused {marker}")


@task("testjobs.chain", retry=None)
async def chain(ctx: TaskContext, *, fail: bool) -> None:
    """Defers a follow-up job in its own transaction; failing takes the follow-up with it."""
    await job_service.defer(ctx.session, "testjobs.echo", message=f"follow-up of {ctx.job_id}")
    if fail:
        raise PermanentJobError("changed my mind")


@task("testjobs.hold", lock="probe:{key}", retry=None)
async def hold(ctx: TaskContext, *, key: str, seconds: float) -> None:
    await ctx.log("start")
    await asyncio.sleep(seconds)  # the job's own work; tests wait on job status, not on time
    await ctx.log("end")


@task("testjobs.hold_unlocked", retry=None)
async def hold_unlocked(ctx: TaskContext, *, key: str, seconds: float) -> None:
    await ctx.log("start")
    await asyncio.sleep(seconds)
    await ctx.log("end")


@task("testjobs.hold_retryable", retry=Backoff(attempts=5, base_seconds=60))
async def hold_retryable(ctx: TaskContext, *, seconds: float) -> None:
    await ctx.log("start")
    await asyncio.sleep(seconds)
    await ctx.log("end")


async def wait_until(
    check: Callable[[], Awaitable[T | None]], *, what: str, within: float = 30.0, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


class Harness:
    """A runtime on a fresh database plus a session factory to look at it from outside."""

    def __init__(self, url: URL, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.runtime = JobRuntime(
            url, settings, poll_interval=POLL_INTERVAL, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        self.engine = create_engine(url, settings)
        self.sessions: async_sessionmaker[AsyncSession] = create_session_factory(self.engine, settings)

    async def defer(self, task_name: str, **arguments: str | int | float) -> int:
        async with transaction(self.sessions) as session:
            return await job_service.defer(session, task_name, **arguments)  # type: ignore[arg-type]

    async def job(self, job_id: int) -> JobRead:
        async with self.sessions() as session:
            return await job_service.get(session, job_id)

    async def wait_for_status(self, job_id: int, *statuses: str, within: float = 30.0) -> JobRead:
        async def reached() -> JobRead | None:
            job = await self.job(job_id)
            return job if job.status in statuses else None

        return await wait_until(reached, what=f"job {job_id} to be {'/'.join(statuses)}", within=within)


@asynccontextmanager
async def harness(url: URL, settings: Settings) -> AsyncIterator[Harness]:
    h = Harness(url, settings)
    await h.runtime.open()
    try:
        yield h
    finally:
        await h.runtime.close()
        await h.engine.dispose()
