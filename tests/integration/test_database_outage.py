"""Issue 11 point 5: while the database is down the panel says so, and it recovers by itself.

Before the fix a signed-in person's pages answered a bare 500 during an outage. Now: the probes
never look at the session (/health 200, /ready 503 with its checks, /metrics 200), a page is a 503
"try again shortly" page, the API a 503 ``service_unavailable``, both with ``Retry-After``; and
once PostgreSQL is back the same app serves again (the pool's pre-ping replaces dead connections).

The database is a PostgreSQL of this module's own (tests/support/postgres.py), stopped and
started under the running app; the machine's server is never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import URL

from corral.app import create_app
from corral.config import Settings
from corral.db.session import create_engine, create_session_factory, transaction
from corral.models.users import UserStatus
from tests.factories.fleet import create_server
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.admin import BASE_URL, SESSION_COOKIE
from tests.support.auth import ORIGIN, page_token, sign_in
from tests.support.postgres import ScratchPostgres, migrated_scratch_postgres

TRY_AGAIN = "The panel cannot reach its database; try again shortly."


@pytest.fixture(scope="module")
def scratch_postgres() -> Iterator[ScratchPostgres]:
    with migrated_scratch_postgres() as server:
        yield server


@dataclass
class Panel:
    database: ScratchPostgres
    client: httpx.AsyncClient  # signed in as the customer
    server_id: int
    csrf: str


async def _seed(url: URL, settings: Settings) -> tuple[str, int]:
    engine = create_engine(url, settings)
    try:
        async with transaction(create_session_factory(engine, settings)) as session:
            user = await create_user(session, status=UserStatus.ACTIVE.value)
            server = await create_server(session, user=user, name="web")
            return user.email, server.id
    finally:
        await engine.dispose()


@pytest.fixture
async def panel(scratch_postgres: ScratchPostgres, settings: Settings) -> AsyncIterator[Panel]:
    if not scratch_postgres.running:  # a test that failed with it down
        scratch_postgres.start()
    url = scratch_postgres.url("corral")
    email, server_id = await _seed(url, settings)
    app: FastAPI = create_app(settings, database_url=url, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            signed_in = await sign_in(client, email, DEFAULT_PASSWORD)
            assert signed_in.status_code == 303, signed_in.text[:300]
            assert SESSION_COOKIE in client.cookies
            yield Panel(scratch_postgres, client, server_id, await page_token(client))
        if not scratch_postgres.running:
            scratch_postgres.start()  # so the app's shutdown finds its database


async def _stop(database: ScratchPostgres) -> None:
    await asyncio.to_thread(database.stop)


async def _start(database: ScratchPostgres) -> None:
    await asyncio.to_thread(database.start)


async def test_the_probes_never_look_at_the_session_during_an_outage(panel: Panel) -> None:
    await _stop(panel.database)
    health = await panel.client.get("/health")
    assert health.status_code == 200, health.text[:300]
    ready = await panel.client.get("/ready")
    assert ready.status_code == 503, ready.text[:300]
    checks = {check["name"]: check["ok"] for check in ready.json()["checks"]}
    assert checks["database"] is False
    metrics = await panel.client.get("/metrics")
    assert metrics.status_code == 200
    # A bearer token in a monitor's config is not looked up either.
    token = await panel.client.get("/health", headers={"Authorization": "Bearer crl_stale"})
    assert token.status_code == 200


async def test_pages_and_the_api_answer_503_try_again_and_recover_without_a_restart(panel: Panel) -> None:
    await _stop(panel.database)

    page = await panel.client.get(f"/servers/{panel.server_id}")
    assert page.status_code == 503, page.text[:300]
    assert TRY_AGAIN in page.text
    assert "Try again" in page.text
    assert page.headers["Retry-After"].isdigit()
    assert page.headers["Content-Security-Policy"]  # the page goes through the usual middleware

    api = await panel.client.get("/api/v1/servers")
    assert api.status_code == 503, api.text[:300]
    assert api.json()["code"] == "service_unavailable"
    assert api.json()["message"] == TRY_AGAIN
    assert api.json()["request_id"] == api.headers["X-Request-ID"]
    assert api.headers["Retry-After"].isdigit()

    htmx = await panel.client.get(f"/servers/{panel.server_id}", headers={"HX-Request": "true"})
    assert htmx.status_code == 503
    assert "try again shortly" in htmx.headers["HX-Trigger"]

    form = await panel.client.post(
        f"/servers/{panel.server_id}/rename", data={"name": "db", "csrf_token": panel.csrf}, headers=ORIGIN
    )
    assert form.status_code == 503, form.text[:300]

    await _start(panel.database)
    back = await panel.client.get(f"/servers/{panel.server_id}")
    assert back.status_code == 200, back.text[:300]
    renamed = await panel.client.post(
        f"/servers/{panel.server_id}/rename", data={"name": "db", "csrf_token": panel.csrf}, headers=ORIGIN
    )
    assert renamed.status_code == 303, renamed.text[:300]
    api_back = await panel.client.get("/api/v1/servers")
    assert api_back.status_code == 200
    assert [server["name"] for server in api_back.json()] == ["db"]
    ready = await panel.client.get("/ready")
    assert ready.status_code == 200, ready.text


def test_the_api_documents_the_503(app: FastAPI) -> None:
    document = app.openapi()
    servers = document["paths"]["/api/v1/servers"]["get"]["responses"]
    assert servers["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorRead")
