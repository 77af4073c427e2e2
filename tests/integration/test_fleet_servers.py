"""Staff's view of every customer's server: /admin/servers (list, filters, failed cancellations
first and highlighted), /admin/servers/{id} (suspend and unsuspend forms), and the same as JSON."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.kit.clock import utcnow
from corral.models.servers import Server
from corral.models.users import User, UserRole
from corral.servers.cancellation import cancellations
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import create_node
from tests.support.admin import People, people_for

API = "/api/v1/admin/servers"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def _failed_cancellation(db: AsyncSession, owner: User) -> Server:
    """A server whose cancellation's deletion failed once, recorded as the processor does."""
    server = await create_server(db, user=owner, name="stuck-1", status="deleting")
    server.cancel_mode = "immediate"
    server.cancel_requested_at = utcnow() - timedelta(minutes=10)
    server.cancel_due_at = utcnow() - timedelta(minutes=5)
    await db.flush()
    await cancellations.record_failure(db, server, "the node refused: volume is busy")
    return server


async def test_operators_see_every_customers_servers_failed_cancellations_first(
    people: People, db: AsyncSession
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    alice = await people.user(email="alice@example.com")
    bob = await people.user(email="bob@example.com")
    location = await create_location(db)
    node = await create_node(db, location=location, name="syd-node-1")
    running = await create_server(
        db, user=alice, location=location, node_id=node.id, status="active", name="web-1"
    )
    stuck = await _failed_cancellation(db, bob)
    pending = await create_server(db, user=alice, status="active", name="shop-1")
    pending.cancel_mode = "grace"
    pending.cancel_due_at = utcnow() + timedelta(days=30)
    pending.suspended_at = utcnow()
    pending.suspended_reason = "Unpaid"
    await db.flush()

    page = await operator.client.get("/admin/servers")

    assert page.status_code == 200
    rows = re.findall(r'data-testid="fleet-server-row" data-server-id="(\d+)"', page.text)
    assert rows[0] == str(stuck.id)  # needs a person: first
    assert set(rows) >= {str(running.id), str(stuck.id), str(pending.id)}
    assert 'data-cancel-failed="true"' in page.text
    assert "the node refused: volume is busy (1 attempt" in page.text
    assert "alice@example.com" in page.text
    assert "syd-node-1" in page.text
    assert "Pending cancellation" in page.text
    assert "Suspended" in page.text

    only_failed = await operator.client.get("/admin/servers", params={"status": "cancel_failed"})
    assert re.findall(r'data-server-id="(\d+)"', only_failed.text) == [str(stuck.id)]
    suspended = await operator.client.get("/admin/servers", params={"status": "suspended"})
    assert re.findall(r'data-server-id="(\d+)"', suspended.text) == [str(pending.id)]
    active = await operator.client.get("/admin/servers", params={"status": "active"})
    assert str(stuck.id) not in re.findall(r'data-server-id="(\d+)"', active.text)
    assert (await operator.client.get("/admin/servers", params={"status": "bogus"})).status_code == 422

    listed = (await operator.client.get(API, params={"status": "cancel_failed"})).json()
    assert listed["total"] == 1
    (item,) = listed["items"]
    assert (item["id"], item["owner_email"], item["cancel_failed"], item["cancel_attempts"]) == (
        stuck.id,
        "bob@example.com",
        True,
        1,
    )
    assert item["cancel_error"] == "the node refused: volume is busy"


async def test_the_fleet_pages_need_the_permission(people: People, db: AsyncSession) -> None:
    customer = await people.sign_in()
    support = await people.sign_in(UserRole.SUPPORT)
    server = await create_server(db, user=customer.user, status="active")

    assert (await customer.client.get("/admin/servers")).status_code == 403
    assert (await customer.client.get(f"/admin/servers/{server.id}")).status_code == 403
    detail = await support.client.get(f"/admin/servers/{server.id}")
    assert detail.status_code == 200
    assert 'data-testid="suspend-button"' not in detail.text  # reading is not acting
    refused = await support.post_form(f"/admin/servers/{server.id}/suspend", {"reason": "Spam"})
    assert refused.status_code == 403
    assert (await support.client.get("/admin/servers/999999999")).status_code == 404


async def test_an_operator_suspends_and_unsuspends_from_the_server_page(
    people: People, db: AsyncSession
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    owner = await people.user()
    server = await create_server(db, user=owner, status="active", name="mail-9")
    path = f"/admin/servers/{server.id}"

    short = await operator.post_form(f"{path}/suspend", {"reason": "no"})

    assert short.status_code == 422
    assert 'data-field-error="reason"' in short.text
    assert "3-500 characters" in short.text
    await db.refresh(server)
    assert server.suspended_at is None

    done = await operator.post_form(f"{path}/suspend", {"reason": "Phishing site reported by CERT"})

    assert done.status_code == 303
    assert done.headers["location"] == f"{path}?done=suspended"
    page = await operator.client.get(done.headers["location"])
    assert "Phishing site reported by CERT" in page.text
    assert "Server suspended." in page.text
    assert 'data-testid="unsuspend-button"' in page.text
    listed = await operator.client.get("/admin/servers", params={"status": "suspended"})
    assert re.findall(r'data-server-id="(\d+)"', listed.text) == [str(server.id)]

    lifted = await operator.post_form(f"{path}/unsuspend", {"reason": "Site taken down"})

    assert lifted.headers["location"] == f"{path}?done=unsuspended"
    await db.refresh(server)
    assert (server.suspended_at, server.suspended_reason) == (None, None)
