"""Readiness: can this process do useful work right now?"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.ops import repository
from corral.ops.schemas import CheckRead, ReadinessRead


class OpsService:
    async def readiness(self, session: AsyncSession) -> ReadinessRead:
        checks: list[CheckRead] = []
        try:
            await repository.database_answers(session)
            checks.append(CheckRead(name="database", ok=True, detail="answers"))
        except (SQLAlchemyError, OSError) as error:
            checks.append(CheckRead(name="database", ok=False, detail=type(error).__name__))
            await session.rollback()
        try:
            waiting, workers = await repository.job_queue_counts(session)
            detail = f"{waiting} job(s) waiting, {workers} worker(s) alive"
            checks.append(CheckRead(name="job_queue", ok=True, detail=detail))
        except (SQLAlchemyError, OSError) as error:
            checks.append(CheckRead(name="job_queue", ok=False, detail=type(error).__name__))
            await session.rollback()
        ready = all(check.ok for check in checks)
        return ReadinessRead(status="ready" if ready else "not_ready", checks=checks)


ops_service = OpsService()
