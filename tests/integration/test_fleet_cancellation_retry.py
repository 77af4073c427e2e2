"""Operators retry a cancellation the processor gave up on: from /admin/servers/{id}, from the failed
row of /admin/servers, and as ``POST /api/v1/admin/servers/{id}/cancellation/retry``.

The first tests use the pages and the JSON API on a rolled-back transaction; the last runs the real
worker (libvirt ``test:///default``) and checks the processor then deletes the server.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.principal import Principal
from corral.config import ServersSettings, Settings
from corral.db.session import transaction
from corral.jobs.service import job_service
from corral.kit.clock import utcnow
from corral.models.audit import AuditEvent
from corral.models.servers import CancelMode, Server
from corral.models.users import User, UserRole
from corral.rbac.permissions import permissions_for
from corral.servers.cancellation import cancellations
from corral.servers.service import servers
from tests.factories.fleet import create_server
from tests.factories.users import create_user
from tests.integration.test_nodes_support import audit_events, error_code
from tests.support.admin import People, people_for
from tests.support.server_fleet import WorkerFleet, process_server_until, worker_fleet

API = "/api/v1/admin/servers/{id}/cancellation/retry"
PAGE = "/admin/servers/{id}/cancellation/retry"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def _given_up(db: AsyncSession, owner: User, name: str = "stuck-1", status: str = "deleting") -> Server:
    """A server whose cancellation the processor gave up on, as record_failure leaves it."""
    server = await create_server(db, user=owner, name=name, status=status)
    server.cancel_mode = "immediate"
    server.cancel_requested_at = utcnow() - timedelta(hours=3)
    server.cancel_due_at = None
    server.cancel_attempts = 6
    server.cancel_error = "the node refused: volume is busy"
    await db.flush()
    return server


def _row(page: str, server_id: int) -> str:
    match = re.search(rf'data-server-id="{server_id}".*?</tr>', page, re.S)
    assert match is not None, f"no row for server {server_id}"
    return match.group(0)


async def test_an_operator_retries_a_given_up_cancellation_from_the_server_page(
    people: People, db: AsyncSession
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    owner = await people.user()
    server = await _given_up(db, owner)
    path = f"/admin/servers/{server.id}"

    page = await operator.client.get(path)
    assert page.status_code == 200
    assert 'data-testid="retry-cancellation"' in page.text
    assert f'action="{PAGE.format(id=server.id)}"' in page.text
    assert "hx-confirm=" in page.text

    before = utcnow()
    done = await operator.post_form(PAGE.format(id=server.id), {"source": "detail"})

    assert done.status_code == 303, done.text[:300]
    assert done.headers["location"] == f"{path}?done=cancel_retried"
    await db.refresh(server)
    assert (server.cancel_attempts, server.cancel_error, server.cancel_mode) == (0, None, "immediate")
    assert server.cancel_due_at is not None
    assert before - timedelta(seconds=5) <= server.cancel_due_at <= utcnow()  # due now: the next run
    (event,) = await audit_events(db, "server.cancel.retry")
    assert (event.actor_id, event.target_type, event.target_id, event.result) == (
        operator.user.id,
        "server",
        str(server.id),
        "success",
    )
    assert event.payload["previous_attempts"] == 6
    assert event.payload["previous_error"] == "the node refused: volume is busy"
    # The last deletion job failed; a fresh one is queued so the processor has something to watch.
    (job,) = await job_service.list(db, lock=f"server:{server.id}", task_name="server.destroy", limit=5)
    assert job.id == event.payload["job_id"]

    after = await operator.client.get(done.headers["location"])
    assert "Cancellation retried" in after.text
    assert 'data-testid="retry-cancellation"' not in after.text  # no longer given up

    again = await operator.post_form(PAGE.format(id=server.id), {"source": "detail"})
    assert again.status_code == 409
    assert "given up" in again.text


async def test_the_failed_row_of_the_list_has_the_retry_button(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    owner = await people.user()
    stuck = await _given_up(db, owner, status="active")  # its deletion never started
    retrying = await create_server(db, user=owner, name="retrying-1", status="deleting")
    retrying.cancel_mode = "immediate"
    retrying.cancel_due_at = utcnow() + timedelta(minutes=2)
    retrying.cancel_attempts = 1
    retrying.cancel_error = "timed out"
    await db.flush()

    page = await operator.client.get("/admin/servers")

    assert 'data-testid="retry-cancellation"' in _row(page.text, stuck.id)
    assert 'value="list"' in _row(page.text, stuck.id)
    # Still being retried by the processor: nothing for a person to do yet.
    assert 'data-testid="retry-cancellation"' not in _row(page.text, retrying.id)

    done = await operator.post_htmx(PAGE.format(id=stuck.id), {"source": "list"})

    assert done.status_code == 200, done.text[:300]
    assert done.headers["HX-Redirect"] == "/admin/servers?done=cancel_retried"
    await db.refresh(stuck)
    assert (stuck.cancel_attempts, stuck.cancel_error) == (0, None)
    assert stuck.cancel_due_at is not None
    assert stuck.cancel_due_at <= utcnow()
    # Never started: no job yet, the processor calls servers.destroy on its next run.
    assert await job_service.list(db, lock=f"server:{stuck.id}", task_name="server.destroy", limit=5) == []
    listed = await operator.client.get("/admin/servers?done=cancel_retried")
    assert "Cancellation retried" in listed.text


async def test_the_api_retries_and_refuses_what_was_not_given_up(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    owner = await people.user()
    stuck = await _given_up(db, owner)
    running = await create_server(db, user=owner, name="running-1", status="active")
    grace = await create_server(db, user=owner, name="grace-1", status="active")
    grace.cancel_mode = "grace"
    grace.cancel_due_at = utcnow() + timedelta(days=30)
    retrying = await create_server(db, user=owner, name="retrying-1", status="deleting")
    retrying.cancel_mode = "immediate"
    retrying.cancel_due_at = utcnow() + timedelta(minutes=2)
    retrying.cancel_attempts = 2
    retrying.cancel_error = "timed out"
    deleted = await create_server(db, user=owner, name="gone-1", status="deleted")
    deleted.cancel_mode = "immediate"
    deleted.deleted_at = utcnow()
    await db.flush()

    retried = await operator.post_json(API.format(id=stuck.id))

    assert retried.status_code == 200, retried.text[:300]
    body = retried.json()
    assert (body["id"], body["cancel_attempts"], body["cancel_error"]) == (stuck.id, 0, None)
    assert (body["cancel_failed"], body["cancel_given_up"]) == (False, False)
    assert body["cancel_due_at"] is not None

    for server in (stuck, running, grace, retrying, deleted):
        refused = await operator.post_json(API.format(id=server.id))
        assert refused.status_code == 409, (server.name, refused.text[:300])
        assert error_code(refused.json()) == "cancellation_not_given_up"
        assert "given up" in refused.json()["message"]
    await db.refresh(retrying)
    assert (retrying.cancel_attempts, retrying.cancel_error) == (2, "timed out")  # untouched
    missing = await operator.post_json(API.format(id=999_999_999))
    assert missing.status_code == 404
    assert len(await audit_events(db, "server.cancel.retry")) == 1


async def test_support_and_customers_cannot_retry(people: People, db: AsyncSession) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    customer = await people.sign_in()
    server = await _given_up(db, customer.user)  # even the owner may not

    detail = await support.client.get(f"/admin/servers/{server.id}")
    assert detail.status_code == 200
    assert 'data-testid="retry-cancellation"' not in detail.text  # reading is not acting
    listed = await support.client.get("/admin/servers")
    assert 'data-testid="retry-cancellation"' not in listed.text
    for person in (support, customer):
        assert (await person.post_form(PAGE.format(id=server.id), {"source": "detail"})).status_code == 403
        assert (await person.post_json(API.format(id=server.id))).status_code == 403
    await db.refresh(server)
    assert (server.cancel_attempts, server.cancel_due_at) == (6, None)
    assert await audit_events(db, "server.cancel.retry") == []


# --- the processor picks a retried cancellation up -------------------------------------------------


def _one_attempt(settings: Settings) -> Settings:
    policy = ServersSettings(
        immediate_delay_seconds=0,
        cancel_retry_base_seconds=0,
        cancel_recheck_seconds=0,
        cancel_max_attempts=1,
    )
    return settings.model_copy(update={"servers": policy})


async def _principal(session: AsyncSession, user: User) -> Principal:
    return Principal.of(user, permissions_for(user.role))


async def _actions(fleet: WorkerFleet, server_id: int) -> list[str]:
    async with fleet.factory() as session:
        rows = await session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.action.startswith("server.cancel."), AuditEvent.target_id == str(server_id))
            .order_by(AuditEvent.seq)
        )
        return list(rows)


async def test_the_processor_deletes_the_server_after_a_retry(
    fresh_database: Callable[[], URL], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with worker_fleet(fresh_database, _one_attempt(settings)) as fleet:
        server_id = await fleet.build_server("stubborn")

        async def broken_destroy(*args: Any, **kwargs: Any) -> int:
            raise RuntimeError("hypervisor API unreachable")

        monkeypatch.setattr(servers, "destroy", broken_destroy)
        async with transaction(fleet.factory) as session:
            owner = await session.get(User, fleet.user_id)
            assert owner is not None
            await cancellations.request(
                session, await _principal(session, owner), server_id, CancelMode.IMMEDIATE, confirm="stubborn"
            )
        stuck = await process_server_until(fleet, server_id, lambda server: server.cancel_attempts >= 1)
        assert (stuck.status, stuck.cancel_due_at) == ("active", None)  # given up after one attempt
        monkeypatch.undo()  # the hypervisor is back

        async with transaction(fleet.factory) as session:
            operator = await create_user(session, role=UserRole.OPERATOR.value)
            await cancellations.retry(session, await _principal(session, operator), server_id)

        done = await process_server_until(
            fleet, server_id, lambda server: server.status == "deleted" and server.cancel_due_at is None
        )

        assert (done.cancel_attempts, done.cancel_error) == (0, None)
        assert done.deleted_at is not None
        assert await fleet.addresses_held(server_id) == 0
        actions = await _actions(fleet, server_id)
        assert actions[actions.index("server.cancel.fail") + 1] == "server.cancel.retry"
        assert actions[-1] == "server.cancel.execute"
