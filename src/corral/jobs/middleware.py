"""Job logs: what a job says while it runs, and the error each failed attempt ended with.

Every line is written on its own short transaction, never on the job's: a failed attempt rolls its
work back, but the page must still be able to say what happened.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from procrastinate import JobContext
from procrastinate.job_context import AbortReason
from procrastinate.middleware import AsyncCallNext
from procrastinate.worker import Worker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from corral.db.session import transaction
from corral.jobs import repository
from corral.jobs.schemas import LogLevel
from corral.kit.logging import get_logger, redact_value

log = get_logger("corral.jobs")

# A page shows a line, not a dump; the full traceback goes to the process log.
MAX_MESSAGE_LENGTH = 2000
# A log write must never hold up a worker that is shutting down.
WRITE_TIMEOUT_SECONDS = 5.0


def attempt_of(context: JobContext) -> int:
    """The attempt being run, counted from 1 (procrastinate counts the attempts that have ended)."""
    return context.job.attempts + 1


def clean_message(message: str) -> str:
    # Driver errors can carry connection URLs; strip any password before it reaches a page.
    cleaned = str(redact_value(message)).strip() or "(no message)"
    if len(cleaned) > MAX_MESSAGE_LENGTH:
        cleaned = cleaned[: MAX_MESSAGE_LENGTH - 1] + "…"
    return cleaned


class JobLogWriter:
    """Appends lines to ``job_logs``, each committed at once."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = session_factory

    async def write(self, *, job_id: int, attempt: int, level: LogLevel, message: str) -> None:
        async with transaction(self._factory) as session:
            await repository.add_log(
                session, job_id=job_id, attempt=attempt, level=level, message=clean_message(message)
            )

    async def write_quietly(self, *, job_id: int, attempt: int, level: LogLevel, message: str) -> None:
        """Like ``write``, but a failure to record is logged instead of replacing the job's own error."""
        try:
            await asyncio.wait_for(
                self.write(job_id=job_id, attempt=attempt, level=level, message=message),
                WRITE_TIMEOUT_SECONDS,
            )
        except Exception as error:  # the job's own outcome matters more than its log line
            log.warning("job_log_write_failed", job_id=job_id, error=repr(error))


def describe_failure(error: BaseException, context: JobContext) -> str:
    """``ValueError: boom; retrying at 12:00:05 UTC`` — what the attempt ended with and what comes next."""
    message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    retry = context.task.get_retry_exception(exception=error, job=context.job)
    decision = retry.retry_decision if retry else None
    if decision is None:
        return f"{message}; giving up"
    when = decision.retry_at or datetime.now(UTC)
    return f"{message}; retrying at {when.astimezone(UTC):%H:%M:%S} UTC"


class JobLogMiddleware:
    """Worker middleware recording how each failed or interrupted attempt ended."""

    def __init__(self, writer: JobLogWriter) -> None:
        self._writer = writer

    async def __call__(self, call_next: AsyncCallNext, context: JobContext, worker: Worker) -> Any:
        job_id = context.job.id
        assert job_id is not None  # a fetched job always has an id
        try:
            return await call_next()
        except asyncio.CancelledError:
            reason = context.abort_reason()
            why = "an abort was requested" if reason is AbortReason.USER_REQUEST else "the worker stopped"
            await self._writer.write_quietly(
                job_id=job_id,
                attempt=attempt_of(context),
                level="warning",
                message=f"Interrupted: {why}",
            )
            raise
        except Exception as error:
            await self._writer.write_quietly(
                job_id=job_id,
                attempt=attempt_of(context),
                level="error",
                message=describe_failure(error, context),
            )
            raise
