"""Cancelling a server (seed 000 6.3 and 8.2): grace and immediate modes, revocation, the locked
deletion screen, and the processor that deletes due servers, records failures and retries them.

The first tests use the pages and the JSON API on a rolled-back transaction; the processor tests
run the real worker against libvirt's ``test:///default`` driver in a committed database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import libvirt
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.principal import Principal
from corral.config import ServersSettings, Settings
from corral.db.session import transaction
from corral.jobs.errors import PermanentJobError
from corral.kit.clock import utcnow
from corral.models.audit import AuditEvent
from corral.models.servers import CancelMode, Server
from corral.models.users import User, UserRole
from corral.rbac.permissions import permissions_for
from corral.servers import fleet_repository
from corral.servers import tasks as server_tasks
from corral.servers.cancellation import cancellations, locked_for_deletion
from corral.servers.errors import ServerBeingDeleted
from corral.servers.service import servers
from tests.factories.fleet import create_server
from tests.integration.test_nodes_support import audit_events, error_code
from tests.support.admin import People, people_for
from tests.support.server_fleet import ACTOR, WorkerFleet, process_server_until, worker_fleet

API = "/api/v1/servers/{id}/cancellation"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def _server(db: AsyncSession, owner: User, **overrides: Any) -> Server:
    overrides.setdefault("status", "active")
    return await create_server(db, user=owner, **overrides)


# --- the customer's side: pages and API -------------------------------------------------------


async def test_the_owner_cancels_with_a_grace_period_and_revokes_it(people: People, db: AsyncSession) -> None:
    customer = await people.sign_in()
    server = await _server(db, customer.user)
    url = API.format(id=server.id)

    asked = await customer.post_json(url, {"mode": "grace"})

    assert asked.status_code == 201, asked.text
    body = asked.json()
    assert (body["mode"], body["pending"], body["revocable"], body["locked"]) == ("grace", True, True, False)
    await db.refresh(server)
    assert server.cancel_due_at is not None
    assert abs(server.cancel_due_at - (utcnow() + timedelta(days=30))) < timedelta(minutes=1)
    again = await customer.post_json(url, {"mode": "grace"})
    assert again.status_code == 409
    assert error_code(again.json()) == "cancellation_exists"

    revoked = await customer.client.delete(url, headers=customer.headers())

    assert revoked.status_code == 204, revoked.text
    shown = (await customer.client.get(url)).json()
    assert (shown["mode"], shown["pending"], shown["due_at"]) == (None, False, None)
    await db.refresh(server)
    assert (server.status, server.cancel_mode, server.cancel_due_at) == ("active", None, None)
    # A revoked cancellation is never picked up, however late the processor looks.
    due = await fleet_repository.due_cancellations(db, utcnow() + timedelta(days=365), limit=100)
    assert server.id not in [item.id for item in due]
    twice = await customer.client.delete(url, headers=customer.headers())
    assert (twice.status_code, error_code(twice.json())) == (409, "no_cancellation")
    events = await audit_events(db, "server.cancel.")
    assert [(event.action, event.actor_label) for event in events] == [
        ("server.cancel.request", customer.user.email),
        ("server.cancel.revoke", customer.user.email),
    ]
    assert events[0].payload["mode"] == "grace"


async def test_only_the_owner_can_cancel(people: People, db: AsyncSession) -> None:
    owner = await people.user()
    stranger = await people.sign_in()
    operator = await people.sign_in(UserRole.OPERATOR)
    server = await _server(db, owner)
    url = API.format(id=server.id)

    for person in (stranger, operator):
        assert (await person.client.get(url)).status_code == 404
        assert (await person.post_json(url, {"mode": "grace"})).status_code == 404
        assert (await person.client.delete(url, headers=person.headers())).status_code == 404
        form = await person.post_form(f"/servers/{server.id}/cancel", {"mode": "grace"})
        assert form.status_code == 404

    await db.refresh(server)
    assert server.cancel_mode is None
    assert await audit_events(db, "server.cancel.") == []


async def test_an_immediate_cancellation_needs_the_name_and_locks_the_server(
    people: People, db: AsyncSession
) -> None:
    customer = await people.sign_in()
    server = await _server(db, customer.user, name="web-7")
    path = f"/servers/{server.id}/cancel"

    wrong = await customer.post_form(path, {"mode": "immediate", "confirm": "web-8"})

    assert wrong.status_code == 422
    assert 'data-field-error="confirm"' in wrong.text
    await db.refresh(server)
    assert server.cancel_mode is None

    done = await customer.post_form(path, {"mode": "immediate", "confirm": "web-7"})

    assert done.status_code == 303
    assert done.headers["location"] == f"/servers/{server.id}?done=cancel_requested"
    await db.refresh(server)
    assert server.cancel_mode == "immediate"
    assert server.cancel_due_at is not None
    assert abs(server.cancel_due_at - (utcnow() + timedelta(minutes=5))) < timedelta(seconds=30)
    assert locked_for_deletion(server)
    # Not revocable, not repeatable, and nothing else can be done with it.
    revoke = await customer.client.delete(API.format(id=server.id), headers=customer.headers())
    assert (revoke.status_code, error_code(revoke.json())) == (409, "cancellation_not_revocable")
    assert (await customer.post_form(f"{path}/revoke")).status_code == 409
    again = await customer.post_json(API.format(id=server.id), {"mode": "immediate", "confirm": "web-7"})
    assert (again.status_code, error_code(again.json())) == (409, "cancellation_exists")
    with pytest.raises(ServerBeingDeleted):
        await servers.power(db, ACTOR, server.id, "start")
    page = await customer.client.get(path)
    assert page.status_code == 200
    assert "Deletion in progress" in page.text
    assert 'action="/servers' not in page.text  # the locked screen offers no action at all


async def test_an_api_immediate_cancellation_needs_the_name(people: People, db: AsyncSession) -> None:
    customer = await people.sign_in()
    server = await _server(db, customer.user, name="db-1")
    url = API.format(id=server.id)

    missing = await customer.post_json(url, {"mode": "immediate"})
    unknown = await customer.post_json(url, {"mode": "later"})

    assert (missing.status_code, error_code(missing.json())) == (422, "cancellation_not_confirmed")
    assert (unknown.status_code, error_code(unknown.json())) == (422, "validation_failed")
    await db.refresh(server)
    assert server.cancel_mode is None


async def test_a_grace_cancellation_can_become_immediate_but_not_back(
    people: People, db: AsyncSession
) -> None:
    customer = await people.sign_in()
    server = await _server(db, customer.user, name="app-1")
    url = API.format(id=server.id)
    assert (await customer.post_json(url, {"mode": "grace"})).status_code == 201

    upgraded = await customer.post_json(url, {"mode": "immediate", "confirm": "app-1"})

    assert upgraded.status_code == 201, upgraded.text
    assert (upgraded.json()["mode"], upgraded.json()["locked"]) == ("immediate", True)
    back = await customer.post_json(url, {"mode": "grace"})
    assert (back.status_code, error_code(back.json())) == (409, "cancellation_exists")
    events = await audit_events(db, "server.cancel.request")
    assert [event.payload["previous_mode"] for event in events] == [None, "grace"]


async def test_the_cancellation_panel_shows_the_badge_and_revoke_button(
    people: People, db: AsyncSession
) -> None:
    customer = await people.sign_in()
    server = await _server(db, customer.user)
    path = f"/servers/{server.id}/cancel"

    before = await customer.client.get(path)
    assert before.status_code == 200
    assert 'data-testid="cancel-grace"' in before.text
    assert 'data-testid="cancel-immediate"' in before.text
    assert "Pending cancellation" not in before.text

    assert (await customer.post_form(path, {"mode": "grace"})).status_code == 303
    after = await customer.client.get(path)

    assert "Pending cancellation" in after.text
    assert 'data-testid="revoke-cancellation"' in after.text
    assert 'data-testid="cancel-grace"' not in after.text
    revoked = await customer.post_form(f"{path}/revoke")
    assert revoked.headers["location"] == f"/servers/{server.id}?done=cancel_revoked"


# --- the processor, with a real worker -----------------------------------------------------


def _fast(settings: Settings, **changes: Any) -> Settings:
    policy = {
        "immediate_delay_seconds": 0,
        "cancel_retry_base_seconds": 0,
        "cancel_recheck_seconds": 0,
        **changes,
    }
    return settings.model_copy(update={"servers": ServersSettings(**policy)})


@pytest.fixture
def fleet_with(
    fresh_database: Callable[[], URL], settings: Settings
) -> Callable[..., AbstractAsyncContextManager[WorkerFleet]]:
    @asynccontextmanager
    async def make(**changes: Any) -> AsyncIterator[WorkerFleet]:
        async with worker_fleet(fresh_database, _fast(settings, **changes)) as fleet:
            yield fleet

    return make


async def _principal(session: AsyncSession, user_id: int) -> Principal:
    user = await session.get(User, user_id)
    assert user is not None
    return Principal.of(user, permissions_for(user.role))


async def _cancel(fleet: WorkerFleet, server_id: int, mode: CancelMode, name: str | None = None) -> None:
    async with transaction(fleet.factory) as session:
        principal = await _principal(session, fleet.user_id)
        await cancellations.request(session, principal, server_id, mode, confirm=name)


async def _events(fleet: WorkerFleet, server_id: int) -> list[tuple[str, str]]:
    async with fleet.factory() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.startswith("server.cancel."), AuditEvent.target_id == str(server_id))
            .order_by(AuditEvent.seq)
        )
        return [(event.action, event.result) for event in rows]


def _finished(server: Server) -> bool:
    return server.status == "deleted" and server.cancel_due_at is None


async def test_the_processor_deletes_due_servers_and_a_revoked_one_stays(
    fleet_with: Callable[..., AbstractAsyncContextManager[WorkerFleet]],
) -> None:
    async with fleet_with() as fleet:
        doomed = await fleet.build_server("doomed")
        kept = await fleet.build_server("kept")
        later = await fleet.build_server("later")
        await _cancel(fleet, doomed, CancelMode.IMMEDIATE, "doomed")
        await _cancel(fleet, kept, CancelMode.GRACE)
        async with transaction(fleet.factory) as session:
            await cancellations.revoke(session, await _principal(session, fleet.user_id), kept)
        await _cancel(fleet, later, CancelMode.GRACE)
        instance = (await fleet.server(doomed)).external_id
        assert instance is not None
        assert await fleet.addresses_held(doomed) == 1

        gone = await process_server_until(fleet, doomed, _finished)

        assert gone.deleted_at is not None
        assert gone.cancel_attempts == 0
        assert not fleet.instance_exists(instance)
        assert await fleet.addresses_held(doomed) == 0  # released by the deletion job
        assert await _events(fleet, doomed) == [
            ("server.cancel.request", "success"),
            ("server.cancel.execute", "pending"),
            ("server.cancel.execute", "success"),
        ]
        # The revoked grace cancellation kept its server, running, with its address.
        still = await fleet.server(kept)
        assert (still.status, still.cancel_mode, still.cancel_due_at) == ("active", None, None)
        assert still.external_id is not None
        assert fleet.domain_state(still.external_id) == libvirt.VIR_DOMAIN_RUNNING
        assert await fleet.addresses_held(kept) == 1
        # A grace cancellation that is not due yet is left alone.
        waiting = await fleet.server(later)
        assert (waiting.status, waiting.cancel_mode) == ("active", "grace")


async def test_a_failed_deletion_is_recorded_and_retried(
    fleet_with: Callable[..., AbstractAsyncContextManager[WorkerFleet]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with fleet_with() as fleet:
        server_id = await fleet.build_server("stubborn")

        @asynccontextmanager
        async def refusing_node(session: AsyncSession, node_id: int | None) -> AsyncIterator[Any]:
            raise PermanentJobError("the node refused: volume is busy")
            yield  # an async generator, as open_driver is

        monkeypatch.setattr(server_tasks, "open_driver", refusing_node)
        await _cancel(fleet, server_id, CancelMode.IMMEDIATE, "stubborn")

        failed = await process_server_until(fleet, server_id, lambda server: server.cancel_attempts >= 1)

        assert failed.status == "deleting"
        assert "volume is busy" in (failed.cancel_error or "")
        assert failed.cancel_due_at is not None  # tried again
        # The retry was queued; let it fail too while the node still refuses, then let it work.
        assert (await fleet.settle_destroy(server_id)).status == "failed"
        monkeypatch.undo()

        done = await process_server_until(fleet, server_id, _finished)

        # At least the two failures above (the worker's own 30-second schedule may see one more).
        assert done.cancel_attempts >= 2
        assert done.cancel_error is None
        assert await fleet.addresses_held(server_id) == 0
        actions = [action for action, _ in await _events(fleet, server_id)]
        assert actions.count("server.cancel.fail") == done.cancel_attempts
        assert actions[-1] == "server.cancel.execute"


async def test_an_exception_while_starting_a_deletion_counts_as_an_attempt(
    fleet_with: Callable[..., AbstractAsyncContextManager[WorkerFleet]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with fleet_with(cancel_max_attempts=1) as fleet:
        server_id = await fleet.build_server("flaky")

        async def broken_destroy(*args: Any, **kwargs: Any) -> int:
            raise RuntimeError("hypervisor API unreachable")

        monkeypatch.setattr(servers, "destroy", broken_destroy)
        await _cancel(fleet, server_id, CancelMode.IMMEDIATE, "flaky")

        stuck = await process_server_until(fleet, server_id, lambda server: server.cancel_attempts >= 1)

        # One attempt allowed: the processor gives up and leaves the server to an operator.
        assert (stuck.status, stuck.cancel_due_at) == ("active", None)
        assert stuck.cancel_error == "RuntimeError: hypervisor API unreachable"
        assert (await _events(fleet, server_id))[-1] == ("server.cancel.fail", "failure")
        async with fleet.factory() as session:
            due = await fleet_repository.due_cancellations(session, utcnow() + timedelta(days=1), limit=10)
        assert due == []


async def test_concurrent_processors_skip_each_others_servers(
    fleet_with: Callable[..., AbstractAsyncContextManager[WorkerFleet]],
) -> None:
    async with fleet_with() as fleet:
        async with transaction(fleet.factory) as session:
            owner = await session.get(User, fleet.user_id)
            assert owner is not None
            made = []
            for number in range(3):
                server = await create_server(session, user=owner, name=f"queued-{number}", status="deleted")
                server.cancel_mode = "grace"
                server.cancel_due_at = utcnow() + timedelta(days=1)
                made.append(server.id)
        later = utcnow() + timedelta(days=2)
        async with fleet.factory() as first, fleet.factory() as second:
            taken = await fleet_repository.due_cancellations(first, later, limit=2)
            rest = await fleet_repository.due_cancellations(second, later, limit=10)
            assert {server.id for server in taken} | {server.id for server in rest} == set(made)
            assert {server.id for server in taken} & {server.id for server in rest} == set()
