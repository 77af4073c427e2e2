"""Running a job through the real worker and waiting for it, with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from corral.db.session import transaction
from corral.jobs.schemas import JobRead
from corral.jobs.service import job_service


async def wait_for_job(
    factory: async_sessionmaker[AsyncSession], job_id: int, deadline_s: float = 60
) -> JobRead:
    """Poll until the job is finished (any outcome) or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while True:
        async with factory() as session:
            job = await job_service.get(session, job_id)
        if job.is_finished:
            return job
        assert time.monotonic() < deadline, f"{job.task_name} still {job.status} after {deadline_s:.0f}s"
        await asyncio.sleep(0.1)


async def run_job(
    factory: async_sessionmaker[AsyncSession],
    start: Callable[[AsyncSession], Awaitable[int]],
    deadline_s: float = 60,
) -> JobRead:
    """Defer a job through a service in a committed transaction; wait until it has succeeded."""
    async with transaction(factory) as session:
        job_id = await start(session)
    job = await wait_for_job(factory, job_id, deadline_s)
    assert job.status == "succeeded", [line.message for line in job.logs]
    return job
