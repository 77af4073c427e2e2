"""The probe endpoints answer as load balancers and Prometheus expect."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from corral.jobs.runtime import JobRuntime


async def test_health_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_ready_reports_database_and_job_queue(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200, response.text
    checks = {check["name"]: check for check in response.json()["checks"]}
    assert checks["database"]["ok"] is True
    assert checks["job_queue"]["ok"] is True


async def test_metrics_counts_requests(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    body = (await client.get("/metrics")).text
    assert 'corral_http_requests_total{method="GET",route="/health",status="200"}' in body


async def test_every_response_carries_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert len(response.headers["x-request-id"]) >= 8


async def test_a_well_formed_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "lb-0123456789abcdef"})
    assert response.headers["x-request-id"] == "lb-0123456789abcdef"


async def test_a_malformed_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "x\tinjected: yes"})
    assert response.headers["x-request-id"] != "x\tinjected: yes"
    assert response.headers["x-request-id"].isalnum()


async def test_ready_is_503_when_the_in_process_worker_is_gone(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` restarts its worker whenever it dies; should the supervisor itself end, the
    process must stop reading as ready rather than serve with nobody running jobs."""

    async def supervisor_dies(self: JobRuntime, give_up_after: float | None) -> None:
        raise RuntimeError("supervisor bug")

    monkeypatch.setattr(JobRuntime, "_supervise", supervisor_dies)
    jobs: JobRuntime = app.state.jobs
    await jobs.start_worker()
    await asyncio.wait({task for task in asyncio.all_tasks() if task.get_name() == "corral-job-worker"})

    response = await client.get("/ready")
    assert response.status_code == 503, response.text
    checks = {check["name"]: check for check in response.json()["checks"]}
    assert checks["worker"]["ok"] is False
