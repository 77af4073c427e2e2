"""Deferring jobs inside the caller's transaction, and reading them back for pages.

``job_service.defer`` inserts the job on the very connection and transaction of the caller's
session: if the transaction commits the job exists, if it rolls back the job never did. A job is
never sent before the row it works on is committed, and never lost after.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg
from procrastinate import PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Job
from procrastinate.manager import JobManager
from procrastinate.types import JSONValue
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from corral.jobs import repository
from corral.jobs.app import QUEUE, get_spec
from corral.jobs.errors import JobAlreadyQueued, JobNotFound, JobNotRetryable
from corral.jobs.schemas import JobLogRead, JobRead
from corral.models.jobs import JobLog

LIST_LIMIT_MAX = 200


async def _driver_connection(session: AsyncSession) -> psycopg.AsyncConnection[object]:
    """The psycopg connection under the session, inside the session's current transaction."""
    connection = await session.connection()  # begins the transaction if none is open
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if not isinstance(driver, psycopg.AsyncConnection):
        raise RuntimeError("deferring a job needs a session on the psycopg (3) driver")
    return driver


def _read(row: Row[object], logs: Sequence[JobLog]) -> JobRead:
    return JobRead.model_validate(
        {**row._asdict(), "logs": [JobLogRead.model_validate(line) for line in logs]}
    )


class JobService:
    def __init__(self) -> None:
        # Only ever handed the caller's connection, so this connector's own pool is never opened.
        self._manager = JobManager(PsycopgConnector())

    async def defer(
        self,
        session: AsyncSession,
        task_name: str,
        /,
        *,
        lock: str | None = None,
        queueing_lock: str | None = None,
        schedule_in: timedelta | None = None,
        **arguments: JSONValue,
    ) -> int:
        """Queue ``task_name(**arguments)`` in the session's transaction; returns the job id.

        ``lock``/``queueing_lock`` default to the task's declared templates filled from the
        arguments. Raises ``JobAlreadyQueued`` (the transaction stays usable) when a job with the
        same queueing lock is already waiting.
        """
        spec = get_spec(task_name)
        spec.check_arguments(arguments)
        job = Job(
            id=None,
            queue=QUEUE,
            priority=spec.priority,
            lock=lock if lock is not None else spec.lock_for(arguments),
            queueing_lock=queueing_lock if queueing_lock is not None else spec.queueing_lock_for(arguments),
            task_name=spec.name,
            task_kwargs=dict(arguments),
            scheduled_at=datetime.now(UTC) + schedule_in if schedule_in is not None else None,
        )
        if job.queueing_lock is None:
            return await self._insert(session, job)
        # A queueing-lock clash is a unique violation, which would abort the caller's whole
        # transaction; a savepoint confines it to this insert.
        try:
            async with session.begin_nested():
                return await self._insert(session, job)
        except AlreadyEnqueued as error:
            raise JobAlreadyQueued(details={"queueing_lock": job.queueing_lock}) from error

    async def _insert(self, session: AsyncSession, job: Job) -> int:
        connection = await _driver_connection(session)
        deferred = await self._manager.defer_job_async(job=job, connection=connection)
        assert deferred.id is not None
        return deferred.id

    async def get(self, session: AsyncSession, job_id: int) -> JobRead:
        row = await repository.get_job(session, job_id)
        if row is None:
            raise JobNotFound()
        return _read(row, await repository.logs_of(session, [job_id]))

    async def retry(self, session: AsyncSession, job_id: int) -> None:
        """Queue a failed job again, in the caller's transaction (the "retry" button)."""
        status = await repository.lock_job_status(session, job_id)
        if status is None:
            raise JobNotFound()
        if status != "failed":
            raise JobNotRetryable(f"This job is {status}; only a failed job can be retried.")
        await repository.retry_failed_job(session, job_id)

    # Named `list` for callers' sake; defined last so annotations above mean the builtin.
    async def list(
        self,
        session: AsyncSession,
        *,
        lock: str | None = None,
        task_name: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: int | None = None,
        since: int | None = None,
    ) -> Sequence[JobRead]:
        """Jobs newest first with their log lines (two queries whatever the count). Pages by job
        id: ``before`` keeps the older ones (the next page), ``since`` those from that id up."""
        limit = max(1, min(limit, LIST_LIMIT_MAX))
        rows = await repository.list_jobs(
            session, lock=lock, task_name=task_name, status=status, limit=limit, before=before, since=since
        )
        logs = await repository.logs_of(session, [row.id for row in rows])
        by_job: dict[int, list[JobLog]] = {}
        for line in logs:
            by_job.setdefault(line.job_id, []).append(line)
        return [_read(row, by_job.get(row.id, [])) for row in rows]


job_service = JobService()
