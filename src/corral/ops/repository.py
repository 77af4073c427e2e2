"""The SQL behind readiness checks."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def database_answers(session: AsyncSession) -> bool:
    answer: int = (await session.execute(text("SELECT 1"))).scalar_one()
    return answer == 1


async def job_queue_counts(session: AsyncSession) -> tuple[int, int]:
    """(jobs waiting, workers seen in the last minute); fails if the queue's tables are missing."""
    row = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'),"
                " (SELECT count(*) FROM procrastinate_workers"
                "   WHERE last_heartbeat > now() - interval '1 minute')"
            )
        )
    ).one()
    return int(row[0]), int(row[1])
