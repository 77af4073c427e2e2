"""The customer server pages over HTTP (no job worker: jobs are checked as queued records).

Also the shared setup of the server tests: :func:`make_offer` (a location with a node on the test
hypervisor, an OS template on it, an IPv4 pool and a plan) and :func:`activate` (a server as the
provision job would leave it).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from corral.kit.clock import utcnow
from corral.models.locations import Location
from corral.models.nodes import Node, OsTemplate
from corral.models.plans import Plan
from corral.models.servers import CancelMode, Server
from corral.models.users import User
from tests.factories.fleet import create_ip_pool, create_location
from tests.factories.nodes import create_node, create_template, put_template_on
from tests.factories.plans import create_plan
from tests.support.admin import People, people_for

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEc/2WJ1M3rOcF8cPeL4QP7zHlA41xFh1ZzZ7ZGFZ3e5 me@laptop"


@dataclass
class Offer:
    location: Location
    node: Node
    template: OsTemplate
    plan: Plan


async def make_offer(db: AsyncSession, *, cpu_total: int = 16, network: str = "198.51.100.0/28") -> Offer:
    location = await create_location(db)
    node = await create_node(db, location=location, cpu_total=cpu_total)
    template = await create_template(db, name="Debian 12")
    await put_template_on(db, node, template, present=True)
    await create_ip_pool(db, location=location, network=network)
    plan = await create_plan(
        db, locations=[location], name="Small", vcpus=2, memory_mib=2048, disk_gib=40, price_minor=1250
    )
    return Offer(location, node, template, plan)


async def make_server(
    db: AsyncSession, offer: Offer, owner: User, *, status: str = "active", **fields: object
) -> Server:
    """A server row as the order and the provision job leave it (no instance on the node)."""
    values: dict[str, object] = {
        "user_id": owner.id,
        "location_id": offer.location.id,
        "node_id": offer.node.id,
        "plan_id": offer.plan.id,
        "template_id": offer.template.id if status != "awaiting_setup" else None,
        "hostname": "web-1.example.com" if status != "awaiting_setup" else None,
        "name": "web-1",
        "vcpus": 2,
        "memory_mib": 2048,
        "disk_gib": 40,
        "status": status,
        "power_state": "running" if status == "active" else "unknown",
        "external_id": f"ext-{owner.id}-{utcnow().timestamp()}" if status == "active" else None,
    }
    server = Server(**{**values, **fields})
    db.add(server)
    await db.flush()
    return server


async def server_jobs(db: AsyncSession, server_id: int) -> list[tuple[str, str, str]]:
    rows = await db.execute(
        text("SELECT task_name, status, lock FROM procrastinate_jobs WHERE lock = :lock ORDER BY id"),
        {"lock": f"server:{server_id}"},
    )
    return [(str(row[0]), str(row[1]), str(row[2])) for row in rows]


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


def order_key(html: str) -> str:
    match = re.search(r'name="order_key" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


async def test_a_customer_orders_sets_up_and_sees_the_server_building(
    people: People, db: AsyncSession
) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()

    page = await customer.client.get("/servers/new")
    assert page.status_code == 200
    assert "Small" in page.text
    assert "12.50 USD" in page.text
    ordered = await customer.post_form(
        "/servers/new",
        {
            "plan_id": str(offer.plan.id),
            "location_id": str(offer.location.id),
            "name": "  My  web server ",
            "order_key": order_key(page.text),
        },
    )
    assert ordered.status_code == 303, ordered.text[:500]
    server_id = int(ordered.headers["location"].split("/")[2])
    assert ordered.headers["location"] == f"/servers/{server_id}/setup"
    server = await db.get(Server, server_id)
    assert server is not None
    assert (server.name, server.status, server.plan_id, server.vcpus, server.node_id) == (
        "My web server",
        "awaiting_setup",
        offer.plan.id,
        2,
        offer.node.id,
    )

    wizard = await customer.client.get(f"/servers/{server_id}/setup")
    assert wizard.status_code == 200
    assert "Debian 12" in wizard.text
    assert "198.51.100." in wizard.text
    bad = await customer.post_form(
        f"/servers/{server_id}/setup",
        {"template_id": str(offer.template.id), "hostname": "-bad-.example.com", "root_password": "short"},
    )
    assert bad.status_code == 422
    assert 'data-field-error="hostname"' in bad.text
    assert 'data-field-error="root_password"' in bad.text
    assert (await db.get(Server, server_id)).status == "awaiting_setup"  # type: ignore[union-attr]

    done = await customer.post_form(
        f"/servers/{server_id}/setup",
        {
            "template_id": str(offer.template.id),
            "hostname": "Web-1.Example.com",
            "ssh_keys": KEY,
            "root_password": "a long enough root password",
        },
    )
    assert done.status_code == 303, done.text[:800]
    assert done.headers["location"] == f"/servers/{server_id}?done=setup"
    await db.refresh(server)
    assert (server.status, server.hostname) == ("provisioning", "web-1.example.com")
    [(task, status, lock)] = await server_jobs(db, server_id)
    assert (task, status, lock) == ("server.provision", "todo", f"server:{server_id}")
    kwargs = (
        await db.execute(
            text("SELECT args FROM procrastinate_jobs WHERE lock = :l"), {"l": f"server:{server_id}"}
        )
    ).scalar_one()
    assert kwargs["root_password_hash"].startswith("$6$")
    assert "a long enough root password" not in str(kwargs)

    shown = await customer.client.get(f"/servers/{server_id}")
    assert shown.status_code == 200
    assert "Building" in shown.text
    assert 'hx-trigger="every 2s"' in shown.text
    assert "Build" in shown.text
    assert "Queued" in shown.text
    live = await customer.client.get(f"/servers/{server_id}/live", headers={"HX-Request": "true"})
    assert live.status_code == 200
    assert live.text.lstrip().startswith('<div id="server-live"')
    # Not built yet: power is refused with a toast, not a half-done job.
    refused = await customer.post_htmx(f"/servers/{server_id}/power", {"action": "start"})
    assert refused.status_code == 409
    assert "cannot be powered" in refused.headers["HX-Trigger"]


async def test_another_customers_server_is_not_found_on_every_page(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    owner = await people.sign_in()
    stranger = await people.sign_in()
    server = await make_server(db, offer, owner.user)
    base = f"/servers/{server.id}"

    for path in (base, f"{base}/setup", f"{base}/live"):
        assert (await stranger.client.get(path)).status_code == 404, path
    for path, data in (
        (f"{base}/power", {"action": "stop"}),
        (f"{base}/rename", {"name": "mine now"}),
        (f"{base}/reinstall", {"template_id": str(offer.template.id), "confirm": "web-1.example.com"}),
        (f"{base}/jobs/1/retry", {}),
        (f"{base}/setup", {"template_id": str(offer.template.id), "hostname": "x"}),
    ):
        assert (await stranger.post_htmx(path, data)).status_code == 404, path
    assert server.name == "web-1"
    assert await server_jobs(db, server.id) == []
    assert "web-1" not in (await stranger.client.get("/servers")).text
    assert (await owner.client.get(base)).status_code == 200


async def test_power_buttons_queue_one_job_and_a_double_click_does_not_queue_two(
    people: People, db: AsyncSession
) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    server = await make_server(db, offer, customer.user)

    first = await customer.post_htmx(f"/servers/{server.id}/power", {"action": "restart"})
    second = await customer.post_htmx(f"/servers/{server.id}/power", {"action": "restart"})

    assert first.status_code == 200
    assert "Restarting the server." in first.headers["HX-Trigger"]
    assert 'id="server-live"' in first.text
    assert "Restarting" in first.text
    assert second.status_code == 409
    assert "still running" in second.headers["HX-Trigger"]
    assert await server_jobs(db, server.id) == [("server.power", "todo", f"server:{server.id}")]
    unknown = await customer.post_htmx(f"/servers/{server.id}/power", {"action": "explode"})
    assert unknown.status_code == 422


async def test_rename_checks_the_name_and_swaps_the_header(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    server = await make_server(db, offer, customer.user)

    refused = await customer.post_htmx(f"/servers/{server.id}/rename", {"name": "see https://evil.example"})
    assert refused.status_code == 422
    assert 'data-field-error="name"' in refused.text
    assert "web address" in refused.text
    renamed = await customer.post_htmx(f"/servers/{server.id}/rename", {"name": "Database primary"})
    assert renamed.status_code == 200
    assert 'id="server-identity"' in renamed.text
    assert "Database primary" in renamed.text
    assert "Server renamed." in renamed.headers["HX-Trigger"]
    await db.refresh(server)
    assert server.name == "Database primary"


async def test_reinstall_needs_the_hostname_typed(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    server = await make_server(db, offer, customer.user)
    form = {"template_id": str(offer.template.id), "confirm": "web-2.example.com", "ssh_keys": KEY}

    wrong = await customer.post_htmx(f"/servers/{server.id}/reinstall", form)
    assert wrong.status_code == 422
    assert 'data-field-error="confirm"' in wrong.text
    assert await server_jobs(db, server.id) == []

    right = await customer.post_htmx(
        f"/servers/{server.id}/reinstall", {**form, "confirm": " WEB-1.example.com "}
    )
    assert right.status_code == 200
    assert right.headers["HX-Redirect"] == f"/servers/{server.id}?done=reinstalling"
    await db.refresh(server)
    assert server.status == "reinstalling"
    assert await server_jobs(db, server.id) == [("server.reinstall", "todo", f"server:{server.id}")]
    again = await customer.post_htmx(
        f"/servers/{server.id}/reinstall", {**form, "confirm": "web-1.example.com"}
    )
    assert again.status_code == 409


async def test_a_failed_job_can_be_retried_from_the_timeline(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    other = await people.sign_in()
    server = await make_server(db, offer, customer.user)
    elsewhere = await make_server(db, offer, other.user)
    await customer.post_htmx(f"/servers/{server.id}/power", {"action": "stop"})
    await other.post_htmx(f"/servers/{elsewhere.id}/power", {"action": "stop"})
    await db.execute(text("UPDATE procrastinate_jobs SET status = 'failed' WHERE lock LIKE 'server:%'"))
    job_id = (
        await db.execute(
            text("SELECT id FROM procrastinate_jobs WHERE lock = :l"), {"l": f"server:{server.id}"}
        )
    ).scalar_one()
    foreign_job = (
        await db.execute(
            text("SELECT id FROM procrastinate_jobs WHERE lock = :l"), {"l": f"server:{elsewhere.id}"}
        )
    ).scalar_one()

    page = await customer.client.get(f"/servers/{server.id}")
    assert f"/servers/{server.id}/jobs/{job_id}/retry" in page.text
    # Another server's job, even through one's own server, answers as missing.
    assert (await customer.post_htmx(f"/servers/{server.id}/jobs/{foreign_job}/retry")).status_code == 404
    retried = await customer.post_htmx(f"/servers/{server.id}/jobs/{job_id}/retry")
    assert retried.status_code == 200
    assert "Trying again." in retried.headers["HX-Trigger"]
    assert await server_jobs(db, server.id) == [("server.power", "todo", f"server:{server.id}")]
    assert (await customer.post_htmx(f"/servers/{server.id}/jobs/{job_id}/retry")).status_code == 409


async def test_suspended_and_locked_servers_offer_no_actions(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    suspended = await make_server(
        db, offer, customer.user, suspended_at=utcnow(), suspended_reason="Abuse report"
    )
    page = await customer.client.get(f"/servers/{suspended.id}")
    assert page.status_code == 200
    assert "Abuse report" in page.text
    assert 'data-testid="power-actions"' not in page.text
    assert "/console" not in page.text
    assert "/reinstall" not in page.text
    refused = await customer.post_htmx(f"/servers/{suspended.id}/power", {"action": "start"})
    assert refused.status_code == 409
    assert "suspended" in refused.headers["HX-Trigger"]

    locked = await make_server(
        db, offer, customer.user, cancel_mode=CancelMode.IMMEDIATE.value, cancel_requested_at=utcnow()
    )
    page = await customer.client.get(f"/servers/{locked.id}")
    assert 'data-testid="deleting-page"' in page.text
    assert (await customer.post_htmx(f"/servers/{locked.id}/power", {"action": "stop"})).status_code == 409
    assert (await customer.post_htmx(f"/servers/{locked.id}/rename", {"name": "x"})).status_code == 409
    live = await customer.client.get(f"/servers/{locked.id}/live", headers={"HX-Request": "true"})
    assert live.headers["HX-Redirect"] == f"/servers/{locked.id}"


async def test_the_dashboard_and_list_show_the_servers_and_quick_actions(
    people: People, db: AsyncSession
) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    await make_server(db, offer, customer.user)
    waiting = await make_server(db, offer, customer.user, status="awaiting_setup")
    waiting.name = "not-yet"

    dashboard = await customer.client.get("/dashboard")
    assert dashboard.status_code == 200
    assert "web-1" in dashboard.text
    assert "Running" in dashboard.text
    assert f"/servers/{waiting.id}/setup" in dashboard.text
    assert "Awaiting setup" in dashboard.text
    for link in ("/servers/new", "/account/ssh-keys", "/account/security"):
        assert f'href="{link}"' in dashboard.text
    listed = await customer.client.get("/servers")
    assert listed.status_code == 200
    assert listed.text.count('data-testid="server-row"') == 2


async def test_a_failed_build_can_be_set_up_again(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    failed = await make_server(db, offer, customer.user, status="failed", status_detail="disk image missing")
    page = await customer.client.get(f"/servers/{failed.id}")
    assert 'data-testid="build-failed"' in page.text
    assert "disk image missing" in page.text

    wizard = await customer.client.get(f"/servers/{failed.id}/setup")
    assert wizard.status_code == 200
    done = await customer.post_form(
        f"/servers/{failed.id}/setup",
        {"template_id": str(offer.template.id), "hostname": "retry.example.com", "ssh_keys": KEY},
    )

    assert done.status_code == 303
    await db.refresh(failed)
    assert (failed.status, failed.hostname) == ("provisioning", "retry.example.com")
    assert [task for task, _status, _lock in await server_jobs(db, failed.id)] == ["server.provision"]
