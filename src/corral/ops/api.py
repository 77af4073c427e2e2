"""Probe endpoints for load balancers and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from corral import __version__
from corral.auth.deps import MACHINE
from corral.config import Settings
from corral.jobs.runtime import JobRuntime
from corral.ops.schemas import HealthRead, ReadinessRead
from corral.ops.service import ops_service
from corral.web.deps import DbSession

# Probes answer anyone and ignore Authorization and cookies: load balancers and Prometheus have no
# session. /metrics belongs behind the reverse proxy's access rules (see README).
router = APIRouter(tags=["operations"], dependencies=[MACHINE])


@router.get("/health", response_model=HealthRead)
async def health() -> HealthRead:
    """The process is up and serving requests. Touches nothing else."""
    return HealthRead(version=__version__)


@router.get("/ready", response_model=ReadinessRead, responses={503: {"model": ReadinessRead}})
async def ready(request: Request, session: DbSession) -> Response:
    """The database and the job queue answer, and a worker runs the jobs that are due; 503 with
    the failing checks otherwise."""
    settings: Settings = request.app.state.settings
    jobs: JobRuntime | None = getattr(request.app.state, "jobs", None)
    readiness = await ops_service.readiness(
        session,
        worker_alive_within_seconds=settings.jobs.stalled_after_seconds,
        in_process_worker_lost=jobs is not None and jobs.worker_lost,
    )
    status = 200 if readiness.status == "ready" else 503
    return JSONResponse(readiness.model_dump(), status_code=status)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
