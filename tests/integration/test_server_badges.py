"""One status presentation wherever a server appears (issue 10, point 9): a server whose immediate
cancellation is under way reads "Deleting" (with a spinner) on the dashboard, the server list, its
own page and the staff pages, never "Running"; a suspended one reads "Suspended" and a
grace-cancelled one "Pending cancellation" everywhere, and the JSON API says the same."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.kit.clock import utcnow
from corral.models.servers import Server
from corral.models.users import UserRole
from tests.integration.test_servers_pages import make_offer, make_server
from tests.support.admin import People, Person, people_for

_BADGE = re.compile(
    r'<span class="server-badge"[^>]*data-testid="(?P<testid>[a-z-]+)" '
    r'data-display-status="(?P<code>[a-z_]+)">'
    r'\s*<span class="badge badge--(?P<tone>[a-z_]+)">'
    r'(?P<mark><span class="(?:spinner badge__spinner|badge__dot)")'
    r"[^>]*></span>(?P<label>[^<]+)</span>"
)


@dataclass(frozen=True)
class Badge:
    code: str
    label: str
    tone: str
    spinner: bool


def badges(html: str, testid: str = "server-status") -> list[Badge]:
    return [
        Badge(m["code"], m["label"].strip(), m["tone"], "spinner" in m["mark"])
        for m in _BADGE.finditer(html)
        if m["testid"] == testid
    ]


def row_of(html: str, server_id: int, testid: str = "server-row") -> str:
    """The HTML of one server's table row."""
    match = re.search(rf'<tr data-testid="{testid}" data-server-id="{server_id}".*?</tr>', html, re.S)
    assert match is not None, f"no row for server {server_id}"
    return match.group(0)


DELETING = Badge("deleting", "Deleting", "pending", True)
SUSPENDED = Badge("suspended", "Suspended", "suspended", False)
PENDING = Badge("pending_cancellation", "Pending cancellation", "pending", False)
RUNNING = Badge("running", "Running", "running", False)


@dataclass(frozen=True)
class Fleet:
    customer: Person
    doomed: Server  # immediate cancellation asked for; the processor has not started it yet
    held: Server  # suspended by staff
    leaving: Server  # grace cancellation pending
    plain: Server


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


@pytest.fixture
async def fleet(people: People, db: AsyncSession) -> Fleet:
    offer = await make_offer(db)
    customer = await people.sign_in()
    now = utcnow()
    doomed = await make_server(
        db,
        offer,
        customer.user,
        name="doomed",
        cancel_mode="immediate",
        cancel_requested_at=now,
        cancel_due_at=now + timedelta(minutes=5),
    )
    held = await make_server(
        db, offer, customer.user, name="held", suspended_at=now, suspended_reason="Abuse"
    )
    leaving = await make_server(
        db,
        offer,
        customer.user,
        name="leaving",
        cancel_mode="grace",
        cancel_requested_at=now,
        cancel_due_at=now + timedelta(days=30),
    )
    plain = await make_server(db, offer, customer.user, name="plain")
    return Fleet(customer, doomed, held, leaving, plain)


async def test_the_dashboard_and_the_list_say_what_the_server_page_says(fleet: Fleet) -> None:
    client = fleet.customer.client
    dashboard = (await client.get("/dashboard")).text
    listing = (await client.get("/servers")).text

    for page in (dashboard, listing):
        assert badges(row_of(page, fleet.doomed.id)) == [DELETING]
        assert "Running" not in row_of(page, fleet.doomed.id)
        assert badges(row_of(page, fleet.held.id)) == [SUSPENDED]
        assert badges(row_of(page, fleet.leaving.id)) == [PENDING]
        assert "Running" in row_of(page, fleet.leaving.id)  # it still runs meanwhile
        assert badges(row_of(page, fleet.plain.id)) == [RUNNING]
    # Running are the plain server and the one running out its grace period; not the doomed one.
    assert "4 total · 2 running" in dashboard
    # A deletion is under way: the dashboard's server table reloads itself until it is done.
    assert 'hx-get="/dashboard" hx-trigger="every 3s"' in dashboard


async def test_each_server_page_shows_the_badge_at_the_top(fleet: Fleet) -> None:
    client = fleet.customer.client
    for server, badge in ((fleet.doomed, DELETING), (fleet.held, SUSPENDED), (fleet.leaving, PENDING)):
        for path in (f"/servers/{server.id}", f"/servers/{server.id}/cancel"):
            page = await client.get(path)
            assert page.status_code == 200, path
            assert badges(page.text, "server-header-status") == [badge], path
    doomed = (await client.get(f"/servers/{fleet.doomed.id}")).text
    assert 'data-testid="deleting-page"' in doomed
    # The status panel of the page agrees with its header.
    held = (await client.get(f"/servers/{fleet.held.id}")).text
    assert badges(held) == [SUSPENDED]


async def test_the_polled_block_refreshes_the_badge_at_the_top(fleet: Fleet, db: AsyncSession) -> None:
    client = fleet.customer.client
    live = await client.get(f"/servers/{fleet.plain.id}/live", headers={"HX-Request": "true"})
    assert live.status_code == 200
    assert badges(live.text, "server-header-status") == [RUNNING]
    assert 'id="server-header-status" hx-swap-oob="true"' in live.text

    fleet.plain.power_state = "stopped"
    await db.flush()
    live = await client.get(f"/servers/{fleet.plain.id}/live", headers={"HX-Request": "true"})
    assert badges(live.text, "server-header-status") == [Badge("stopped", "Stopped", "stopped", False)]


async def test_the_api_gives_the_same_status(fleet: Fleet) -> None:
    client = fleet.customer.client
    listed = {item["id"]: item["display_status"] for item in (await client.get("/api/v1/servers")).json()}
    assert listed == {
        fleet.doomed.id: "deleting",
        fleet.held.id: "suspended",
        fleet.leaving.id: "pending_cancellation",
        fleet.plain.id: "running",
    }
    one = (await client.get(f"/api/v1/servers/{fleet.leaving.id}")).json()
    assert (one["status"], one["power_state"], one["display_status"]) == (
        "active",
        "running",
        "pending_cancellation",
    )


async def test_staff_see_the_same_badges(fleet: Fleet, people: People) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    listing = (await operator.client.get("/admin/servers")).text
    row = "fleet-server-row"
    assert badges(row_of(listing, fleet.doomed.id, row)) == [DELETING]
    assert badges(row_of(listing, fleet.held.id, row)) == [SUSPENDED]
    assert badges(row_of(listing, fleet.leaving.id, row)) == [PENDING]
    assert badges(row_of(listing, fleet.plain.id, row)) == [RUNNING]
    for server, badge in ((fleet.doomed, DELETING), (fleet.held, SUSPENDED), (fleet.leaving, PENDING)):
        page = (await operator.client.get(f"/admin/servers/{server.id}")).text
        assert badges(page, "server-header-status") == [badge]
    shown = (await operator.client.get(f"/api/v1/admin/servers/{fleet.doomed.id}")).json()
    assert (shown["status"], shown["display_status"]) == ("active", "deleting")
