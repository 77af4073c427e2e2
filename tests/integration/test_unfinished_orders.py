"""Unfinished orders (issue 10): a server still awaiting setup is released after the panel setting
(default 7 days), its owner emailed once beforehand, and its address goes back to the pool.

The sweep is driven with an injected clock (``now``); the last test runs the hourly job through a
real worker and the release through the real ``server.destroy`` job.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from ipaddress import ip_address

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from corral.config import Settings
from corral.db.session import transaction
from corral.jobs.service import job_service
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.models.audit import AuditEvent
from corral.models.email import EmailMessage
from corral.models.ipam import IpAddress
from corral.models.locations import Location
from corral.models.servers import Server, ServerStatus
from corral.models.settings import PanelSetting
from corral.models.users import User, UserRole
from corral.panel_settings.service import panel_settings
from corral.servers import repository
from corral.servers.service import ServerOrder, servers
from corral.servers.unfinished import reminder_lead, unfinished_orders
from tests.factories.fleet import create_ip_pool, create_location
from tests.factories.nodes import create_node
from tests.factories.users import create_user
from tests.support.admin import People, people_for
from tests.support.jobs import run_job, wait_for_job
from tests.support.server_fleet import worker_fleet

ACTOR = Actor.cli("test")
DAY = timedelta(days=1)


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


@pytest.fixture
async def location(db: AsyncSession) -> Location:
    location = await create_location(db)
    await create_ip_pool(db, location=location, network="198.51.100.0/29")
    await create_node(db, location=location)
    return location


async def _order(db: AsyncSession, location: Location, owner: User, name: str = "web-1") -> Server:
    order = ServerOrder(
        user_id=owner.id, location_id=location.id, name=name, vcpus=1, memory_mib=512, disk_gib=10
    )
    server = await servers.reserve(db, ACTOR, order)
    await db.refresh(server, ["created_at"])
    return server


async def _emails(db: AsyncSession, server: Server) -> list[EmailMessage]:
    rows = await db.execute(
        select(EmailMessage).where(
            EmailMessage.template == "unfinished_order",
            EmailMessage.context["server_name"].astext == server.name,
        )
    )
    return list(rows.scalars())


async def _actions(db: AsyncSession, server: Server) -> list[str]:
    rows = await db.execute(
        select(AuditEvent.action)
        .where(AuditEvent.target_type == "server", AuditEvent.target_id == str(server.id))
        .order_by(AuditEvent.seq)
    )
    return list(rows.scalars())


async def _address_holder(db: AsyncSession, address: str) -> int | None:
    row = await db.execute(select(IpAddress.server_id).where(IpAddress.address == ip_address(address)))
    return row.scalar_one()


def test_the_reminder_goes_a_day_before_or_halfway_through_a_shorter_period() -> None:
    assert reminder_lead(timedelta(days=7)) == DAY
    assert reminder_lead(timedelta(days=2)) == DAY
    assert reminder_lead(timedelta(days=1)) == timedelta(hours=12)


async def test_the_owner_is_reminded_once_then_the_order_is_released_after_the_deadline(
    db: AsyncSession, location: Location
) -> None:
    owner = await create_user(db, name="Ada Owner")
    server = await _order(db, location, owner)
    (address,) = (await repository.addresses_by_server(db, [server.id]))[server.id]
    ordered = server.created_at

    # Nothing happens before the reminder is due (7 days - 24 h).
    early = await unfinished_orders.sweep(db, ordered + 6 * DAY - timedelta(minutes=1))
    assert (early.reminded, early.released) == ([], [])
    assert await _emails(db, server) == []

    due = ordered + 6 * DAY
    reminded = await unfinished_orders.sweep(db, due)
    assert (reminded.reminded, reminded.released) == ([server.id], [])
    (email,) = await _emails(db, server)
    assert email.to_address == owner.email
    assert email.context["link"].endswith(f"/servers/{server.id}/setup")
    assert datetime.fromisoformat(email.context["release_at"]) == ordered + 7 * DAY
    await db.refresh(server)
    assert server.setup_reminder_sent_at == due
    assert server.status == ServerStatus.AWAITING_SETUP.value

    # Later runs before the deadline neither remind again nor release.
    for moment in (due + timedelta(hours=1), ordered + 7 * DAY - timedelta(seconds=1)):
        again = await unfinished_orders.sweep(db, moment)
        assert (again.reminded, again.released) == ([], [])
    assert len(await _emails(db, server)) == 1
    await db.refresh(server)
    assert server.status == ServerStatus.AWAITING_SETUP.value
    assert await _address_holder(db, address) == server.id

    released = await unfinished_orders.sweep(db, ordered + 7 * DAY)
    assert released.released == [server.id]
    await db.refresh(server)
    assert server.status == ServerStatus.DELETING.value
    jobs = await job_service.list(db, lock=f"server:{server.id}", task_name="server.destroy")
    assert [job.status for job in jobs] == ["todo"]  # the deletion path frees the address
    assert await _actions(db, server) == [
        "server.create",
        "server.order.remind",
        "server.destroy",
        "server.order.release",
    ]
    # A later run leaves it alone, and there is still one email.
    assert (await unfinished_orders.sweep(db, ordered + 8 * DAY)).released == []
    assert len(await _emails(db, server)) == 1


async def test_a_late_reminder_still_gives_the_owner_a_day(db: AsyncSession, location: Location) -> None:
    """Workers were down past the deadline: the owner is told first, and released a day later."""
    server = await _order(db, location, await create_user(db))
    late = server.created_at + 10 * DAY

    first = await unfinished_orders.sweep(db, late)
    assert (first.reminded, first.released) == ([server.id], [])
    (email,) = await _emails(db, server)
    assert datetime.fromisoformat(email.context["release_at"]) == late + DAY
    assert (await unfinished_orders.sweep(db, late + DAY - timedelta(seconds=1))).released == []
    assert (await unfinished_orders.sweep(db, late + DAY)).released == [server.id]


async def test_servers_set_up_or_ordered_recently_are_left_alone(
    db: AsyncSession, location: Location
) -> None:
    owner = await create_user(db)
    built = await _order(db, location, owner, "built")
    built.status = ServerStatus.ACTIVE.value
    failed = await _order(db, location, owner, "failed")
    failed.status = ServerStatus.FAILED.value
    recent = await _order(db, location, owner, "recent")
    forgotten = await _order(db, location, owner, "forgotten")
    now = built.created_at + 30 * DAY
    recent.created_at = now - 5 * DAY
    await db.flush()

    sweep = await unfinished_orders.sweep(db, now)

    # Only the order that waited long enough is reminded; built (or tried) servers never are.
    assert (sweep.reminded, sweep.released) == ([forgotten.id], [])
    for server in (built, failed, recent):
        assert await _emails(db, server) == []


async def test_the_period_is_a_panel_setting(db: AsyncSession, location: Location) -> None:
    db.add(PanelSetting(key="unfinished_order_days", value=2))
    await db.flush()
    server = await _order(db, location, await create_user(db))

    assert (await unfinished_orders.sweep(db, server.created_at + DAY - timedelta(seconds=1))).reminded == []
    assert (await unfinished_orders.sweep(db, server.created_at + DAY)).reminded == [server.id]
    assert (await unfinished_orders.sweep(db, server.created_at + 2 * DAY)).released == [server.id]


async def test_the_settings_page_and_api_change_the_period(people: People, db: AsyncSession) -> None:
    admin = await people.sign_in(UserRole.SUPER_ADMIN)

    assert (await admin.client.get("/api/v1/admin/settings")).json()["unfinished_order_days"] == 7
    bad = await admin.post_form(
        "/admin/settings", {"customer_server_limit": "5", "unfinished_order_days": "0"}
    )
    assert bad.status_code == 422
    assert 'data-field-error="unfinished_order_days"' in bad.text
    saved = await admin.post_form(
        "/admin/settings", {"customer_server_limit": "5", "unfinished_order_days": "14"}
    )
    assert saved.status_code == 303
    assert (await panel_settings.current(db)).unfinished_order_days == 14
    refused = await admin.client.patch(
        "/api/v1/admin/settings", json={"unfinished_order_days": 366}, headers=admin.headers()
    )
    assert refused.status_code == 422


async def test_the_hourly_job_releases_the_order_and_the_address_returns_to_the_pool(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with worker_fleet(fresh_database, settings) as fleet:
        async with transaction(fleet.factory) as session:
            order = ServerOrder(
                user_id=fleet.user_id,
                location_id=fleet.location_id,
                name="forgotten",
                vcpus=1,
                memory_mib=256,
                disk_gib=2,
            )
            server_id = (await servers.reserve(session, ACTOR, order)).id
            (address,) = (await repository.addresses_by_server(session, [server_id]))[server_id]
            # Ordered eight days ago, reminded two days ago: the run's own clock finds it due.
            now = utcnow()
            await session.execute(
                update(Server)
                .where(Server.id == server_id)
                .values(created_at=now - 8 * DAY, setup_reminder_sent_at=now - 2 * DAY)
            )

        await run_job(
            fleet.factory,
            lambda session: job_service.defer(
                session, "servers.release_unfinished", timestamp=int(time.time())
            ),
        )
        destroy = await fleet.latest_destroy_job(server_id)
        assert destroy is not None
        assert (await wait_for_job(fleet.factory, destroy.id)).status == "succeeded"

        released = await fleet.server(server_id)
        assert released.status == ServerStatus.DELETED.value
        assert await fleet.addresses_held(server_id) == 0
        async with fleet.factory() as session:
            assert await _address_holder(session, address) is None  # free in its pool again
            used = await repository.usage_by_node(session, [fleet.node_id])
            assert used.get(fleet.node_id, (0, 0, 0)) == (0, 0, 0)  # and its room on the node
            # The next order in the location can have the address back.
            again = await servers.reserve(
                session, ACTOR, ServerOrder(**{**order.__dict__, "name": "next", "order_key": None})
            )
            assert (await repository.addresses_by_server(session, [again.id]))[again.id] == [address]
            await session.rollback()


async def test_the_server_page_says_when_an_unfinished_order_is_released(
    people: People, db: AsyncSession, location: Location
) -> None:
    customer = await people.sign_in()
    server = await _order(db, location, customer.user)

    page = await customer.client.get(f"/servers/{server.id}")

    assert page.status_code == 200
    deadline = (server.created_at + 7 * DAY).isoformat()
    assert f'<span data-testid="release-at">Finish its setup by <time datetime="{deadline}">' in page.text
