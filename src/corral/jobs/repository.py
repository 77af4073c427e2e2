"""The SQL behind job pages and job logs.

procrastinate owns ``procrastinate_jobs`` and ``procrastinate_events`` (status, attempts, the time of
every transition); they are described here as lightweight Core tables so queries are composed, not
pasted. Their status columns are PostgreSQL enums, hence the casts to text. ``job_logs`` is ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    Row,
    String,
    Text,
    case,
    column,
    delete,
    exists,
    func,
    insert,
    select,
    table,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select
from sqlalchemy.sql.selectable import ScalarSelect

from corral.jobs.schemas import FINISHED_STATUSES
from corral.models.jobs import JobLog

_jobs = table(
    "procrastinate_jobs",
    column("id", BigInteger),
    column("queue_name", String),
    column("task_name", String),
    column("lock", Text),
    column("queueing_lock", Text),
    column("args", JSONB),
    column("status", String),
    column("scheduled_at", DateTime(timezone=True)),
    column("attempts", Integer),
)
_events = table(
    "procrastinate_events",
    column("id", BigInteger),
    column("job_id", BigInteger),
    column("type", String),
    column("at", DateTime(timezone=True)),
)

_status = _jobs.c.status.cast(Text)
_FINISH_EVENTS = ("succeeded", "failed", "cancelled", "aborted")


def _job_select() -> Select[Any]:
    """Each job with the times of its transitions, read from procrastinate's event log."""
    event_type = _events.c.type.cast(Text)
    times = (
        select(
            func.min(_events.c.at).filter(event_type == "deferred").label("deferred_at"),
            func.max(_events.c.at).filter(event_type == "started").label("started_at"),
            func.max(_events.c.at).filter(event_type.in_(_FINISH_EVENTS)).label("finished_at"),
        )
        .where(_events.c.job_id == _jobs.c.id)
        .lateral("times")
    )
    # A failed job that was retried has an old "failed" event; it is finished only in a final status.
    finished_at = case((_status.in_(sorted(FINISHED_STATUSES)), times.c.finished_at), else_=None)
    return select(
        _jobs.c.id,
        _jobs.c.queue_name.label("queue"),
        _jobs.c.task_name,
        _status.label("status"),
        _jobs.c.attempts,
        _jobs.c.lock,
        _jobs.c.queueing_lock,
        _jobs.c.args,
        _jobs.c.scheduled_at,
        times.c.deferred_at,
        times.c.started_at,
        finished_at.label("finished_at"),
    ).select_from(_jobs.outerjoin(times, true()))


def activity_marks(lock: str) -> tuple[ScalarSelect[Any], ScalarSelect[Any]]:
    """Two scalar subqueries that change whenever a job under ``lock`` is added, moves on or logs a
    line: the newest event id and the newest log line id of those jobs (a new job starts with a
    "deferred" event). Cheap to compare, for "has anything changed since you last looked?"."""
    jobs_under_lock = select(_jobs.c.id).where(_jobs.c.lock == lock)
    newest_event = select(func.max(_events.c.id)).where(_events.c.job_id.in_(jobs_under_lock))
    newest_log = select(func.max(JobLog.id)).where(JobLog.job_id.in_(jobs_under_lock))
    return newest_event.scalar_subquery(), newest_log.scalar_subquery()


async def get_job(session: AsyncSession, job_id: int) -> Row[Any] | None:
    result = await session.execute(_job_select().where(_jobs.c.id == job_id))
    row: Row[Any] | None = result.one_or_none()
    return row


async def list_jobs(
    session: AsyncSession,
    *,
    lock: str | None,
    task_name: str | None,
    status: str | None,
    limit: int,
    before: int | None = None,
    since: int | None = None,
) -> Sequence[Row[Any]]:
    """Newest first; keyset pages on the id: only ids below ``before`` / from ``since`` up."""
    statement = _job_select()
    if before is not None:
        statement = statement.where(_jobs.c.id < before)
    if since is not None:
        statement = statement.where(_jobs.c.id >= since)
    if lock is not None:
        statement = statement.where(_jobs.c.lock == lock)
    if task_name is not None:
        statement = statement.where(_jobs.c.task_name == task_name)
    if status is not None:
        statement = statement.where(_status == status)
    result = await session.execute(statement.order_by(_jobs.c.id.desc()).limit(limit))
    rows: Sequence[Row[Any]] = result.all()
    return rows


async def logs_of(session: AsyncSession, job_ids: Iterable[int]) -> Sequence[JobLog]:
    """Log lines of these jobs, each job's in the order they were written."""
    ids = list(job_ids)
    if not ids:
        return []
    result = await session.scalars(
        select(JobLog).where(JobLog.job_id.in_(ids)).order_by(JobLog.job_id, JobLog.id)
    )
    return result.all()


async def add_log(session: AsyncSession, *, job_id: int, attempt: int, level: str, message: str) -> None:
    await session.execute(insert(JobLog).values(job_id=job_id, attempt=attempt, level=level, message=message))


async def delete_orphan_logs(session: AsyncSession) -> int:
    """Remove the log lines of jobs procrastinate has deleted; returns how many went."""
    orphan = ~exists().where(_jobs.c.id == JobLog.job_id)
    result = await session.execute(delete(JobLog).where(orphan))
    return int(getattr(result, "rowcount", 0) or 0)


async def lock_job_status(session: AsyncSession, job_id: int) -> str | None:
    """The job's status, with its row locked until the transaction ends (None: no such job)."""
    result = await session.execute(select(_status).where(_jobs.c.id == job_id).with_for_update())
    return result.scalar_one_or_none()


# Channels and payload of procrastinate's own "job inserted" trigger (schema pinned by
# procrastinate==3.10.*): workers listening on them fetch at once instead of at the next poll.
_RETRY_FAILED_JOB = text("SELECT procrastinate_retry_job_v2(:job_id, now(), NULL, NULL, NULL)")
_WAKE_WORKERS = text(
    "SELECT pg_notify('procrastinate_queue_v1#' || queue_name, payload),"
    " pg_notify('procrastinate_any_queue_v1', payload)"
    " FROM (SELECT queue_name, json_build_object('type', 'job_inserted', 'job_id', id)::text AS payload"
    "       FROM procrastinate_jobs WHERE id = :job_id) AS job"
)


async def retry_failed_job(session: AsyncSession, job_id: int) -> None:
    """Put a failed job back in its queue (procrastinate's procedure), waking workers on commit."""
    await session.execute(_RETRY_FAILED_JOB, {"job_id": job_id})
    # NOTIFY is transactional: workers hear it only if the caller's transaction commits.
    await session.execute(_WAKE_WORKERS, {"job_id": job_id})
