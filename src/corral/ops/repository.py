"""The SQL behind readiness checks."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def database_answers(session: AsyncSession) -> bool:
    answer: int = (await session.execute(text("SELECT 1"))).scalar_one()
    return answer == 1


async def job_queue_counts(session: AsyncSession, *, alive_within_seconds: float) -> tuple[int, int]:
    """(jobs due and waiting, workers with a heartbeat in the last ``alive_within_seconds``);
    fails if the queue's tables are missing. A retry scheduled for later is not waiting yet."""
    row = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'"
                "         AND (scheduled_at IS NULL OR scheduled_at <= now())),"
                " (SELECT count(*) FROM procrastinate_workers"
                "   WHERE last_heartbeat > now() - make_interval(secs => :alive_within))"
            ),
            {"alive_within": alive_within_seconds},
        )
    ).one()
    return int(row[0]), int(row[1])
