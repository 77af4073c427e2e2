"""Deferring inside the caller's transaction, and reading jobs back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from corral.config import Settings
from corral.db.session import create_engine, create_session_factory
from corral.db.url import libpq_conninfo
from corral.jobs.errors import (
    InvalidJobArguments,
    JobAlreadyQueued,
    JobNotFound,
    JobNotRetryable,
    UnknownTask,
)
from corral.jobs.runtime import JobRuntime
from corral.jobs.service import job_service
from tests.integration import test_jobs_support  # noqa: F401  (registers the testjobs.* tasks)


async def _seen_from_outside(url: URL, job_id: int) -> tuple[str, str] | None:
    """(task_name, status) of a job as a separate connection sees it."""
    async with await psycopg.AsyncConnection.connect(libpq_conninfo(url)) as connection:
        cursor = await connection.execute(
            "SELECT task_name, status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
        )
        row = await cursor.fetchone()
    return (row[0], row[1]) if row else None


async def test_a_deferred_job_exists_once_the_transaction_commits(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    url = fresh_database()
    engine = create_engine(url, settings)
    try:
        async with create_session_factory(engine, settings)() as session:
            job_id = await job_service.defer(session, "testjobs.echo", message="hello")
            # Same transaction: invisible to everyone else until the commit.
            assert await _seen_from_outside(url, job_id) is None
            await session.commit()
        assert await _seen_from_outside(url, job_id) == ("testjobs.echo", "todo")
    finally:
        await engine.dispose()


async def test_a_deferred_job_vanishes_when_the_transaction_rolls_back(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    url = fresh_database()
    engine = create_engine(url, settings)
    try:
        async with create_session_factory(engine, settings)() as session:
            job_id = await job_service.defer(session, "testjobs.echo", message="never")
            # The session itself sees its own uncommitted job.
            assert (await job_service.get(session, job_id)).status == "todo"
            await session.rollback()
        assert await _seen_from_outside(url, job_id) is None
        async with create_session_factory(engine, settings)() as session:
            with pytest.raises(JobNotFound):
                await job_service.get(session, job_id)
    finally:
        await engine.dispose()


async def test_the_job_joins_the_sessions_other_work(db: AsyncSession) -> None:
    """The job and the caller's rows share one transaction (the same backend)."""
    backend = (await db.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    job_id = await job_service.defer(db, "testjobs.hold", key="srv-7", seconds=0.1)
    job = await job_service.get(db, job_id)
    assert job.task_name == "testjobs.hold"
    assert job.status == "todo"
    assert job.attempts == 0
    assert job.args == {"key": "srv-7", "seconds": 0.1}
    assert job.lock == "probe:srv-7"  # the declared template, filled from the arguments
    assert job.deferred_at is not None
    assert job.started_at is None
    assert job.finished_at is None
    assert job.logs == []
    assert (await db.execute(text("SELECT pg_backend_pid()"))).scalar_one() == backend


async def test_explicit_lock_and_schedule(db: AsyncSession) -> None:
    job_id = await job_service.defer(
        db, "testjobs.echo", lock="server:42", schedule_in=timedelta(minutes=5), message="later"
    )
    job = await job_service.get(db, job_id)
    assert job.lock == "server:42"
    assert job.scheduled_at is not None
    assert job.deferred_at is not None
    assert job.scheduled_at - job.deferred_at > timedelta(minutes=4)


async def test_a_queueing_lock_clash_leaves_the_transaction_usable(db: AsyncSession) -> None:
    first = await job_service.defer(db, "testjobs.echo", queueing_lock="echo:once", message="a")
    with pytest.raises(JobAlreadyQueued):
        await job_service.defer(db, "testjobs.echo", queueing_lock="echo:once", message="b")
    # Still in a working transaction: the first job is there and new work goes through.
    assert (await job_service.get(db, first)).queueing_lock == "echo:once"
    assert (await db.execute(text("SELECT 1"))).scalar_one() == 1


async def test_unknown_tasks_and_wrong_arguments_fail_at_the_caller(db: AsyncSession) -> None:
    with pytest.raises(UnknownTask):
        await job_service.defer(db, "nosuch.task", server_id=1)
    with pytest.raises(InvalidJobArguments):
        await job_service.defer(db, "testjobs.echo", mesage="typo")
    with pytest.raises(InvalidJobArguments):
        await job_service.defer(db, "testjobs.echo")


async def test_list_filters_by_lock_and_task_newest_first(db: AsyncSession) -> None:
    a = await job_service.defer(db, "testjobs.hold", key="list-a", seconds=0)
    b = await job_service.defer(db, "testjobs.hold", key="list-a", seconds=0)
    other = await job_service.defer(db, "testjobs.hold", key="list-b", seconds=0)
    echo = await job_service.defer(db, "testjobs.echo", lock="probe:list-a", message="x")

    by_lock = await job_service.list(db, lock="probe:list-a")
    assert [job.id for job in by_lock] == [echo, b, a]
    by_both = await job_service.list(db, lock="probe:list-a", task_name="testjobs.hold")
    assert [job.id for job in by_both] == [b, a]
    assert [job.id for job in await job_service.list(db, lock="probe:list-a", limit=1)] == [echo]
    assert other not in [job.id for job in by_lock]
    assert [job.id for job in await job_service.list(db, lock="probe:list-b", status="todo")] == [other]
    assert await job_service.list(db, lock="probe:list-b", status="failed") == []


async def test_get_and_retry_refuse_what_they_cannot_do(db: AsyncSession) -> None:
    with pytest.raises(JobNotFound):
        await job_service.get(db, 987654321)
    with pytest.raises(JobNotFound):
        await job_service.retry(db, 987654321)
    job_id = await job_service.defer(db, "testjobs.echo", message="waiting")
    with pytest.raises(JobNotRetryable):
        await job_service.retry(db, job_id)


async def test_an_opened_runtime_runs_no_worker_until_asked(database_url: URL, settings: Settings) -> None:
    runtime = JobRuntime(database_url, settings)
    await runtime.open()
    try:
        assert not runtime.worker_running
    finally:
        await runtime.close()
