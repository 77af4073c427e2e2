"""Readiness: can this process do useful work right now?"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.ops import repository
from corral.ops.schemas import CheckRead, ReadinessRead


class OpsService:
    async def readiness(
        self,
        session: AsyncSession,
        *,
        worker_alive_within_seconds: float,
        in_process_worker_lost: bool = False,
    ) -> ReadinessRead:
        """``worker_alive_within_seconds``: a worker silent for longer is dead. Jobs due with no
        live worker to run them is not ready: builds would wait forever behind a green probe.
        ``in_process_worker_lost``: this process ran a worker and it is gone."""
        checks: list[CheckRead] = []
        try:
            await repository.database_answers(session)
            checks.append(CheckRead(name="database", ok=True, detail="answers"))
        except (SQLAlchemyError, OSError) as error:
            checks.append(CheckRead(name="database", ok=False, detail=type(error).__name__))
            await session.rollback()
        try:
            waiting, workers = await repository.job_queue_counts(
                session, alive_within_seconds=worker_alive_within_seconds
            )
            detail = f"{waiting} job(s) waiting, {workers} worker(s) alive"
            if waiting and not workers:
                detail += ": no worker is running the jobs"
            checks.append(CheckRead(name="job_queue", ok=bool(workers or not waiting), detail=detail))
        except (SQLAlchemyError, OSError) as error:
            checks.append(CheckRead(name="job_queue", ok=False, detail=type(error).__name__))
            await session.rollback()
        if in_process_worker_lost:
            detail = "this process's job worker is not running"
            checks.append(CheckRead(name="worker", ok=False, detail=detail))
        ready = all(check.ok for check in checks)
        return ReadinessRead(status="ready" if ready else "not_ready", checks=checks)


ops_service = OpsService()
