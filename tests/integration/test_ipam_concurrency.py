"""Concurrent allocations on a database of their own: each caller is a separate transaction on a
separate connection, all started together; none may get an address another one got."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from ipaddress import ip_address

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from corral.audit import audit
from corral.config import Settings
from corral.db.session import translate_lock_errors
from corral.ipam import PoolExhausted, ipam, repository
from corral.ipam.errors import PoolBusy
from corral.ipam.schemas import IpPoolUpdate
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.models.audit import AuditEvent
from corral.models.ipam import IpAddress
from tests.factories.fleet import create_ip_pool, create_location, create_server

CALLERS = 16


@dataclass
class Fleet:
    sessions: async_sessionmaker[AsyncSession]
    location_id: int
    pool_id: int
    server_ids: list[int]


@pytest.fixture
async def sessions(
    fresh_database: Callable[[], URL], settings: Settings
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    # One connection per caller at once, plus one for the checks.
    engine = create_async_engine(fresh_database(), pool_size=CALLERS + 2, max_overflow=0)
    translate_lock_errors(engine)  # as the panel's engines (corral.db.session.create_engine) do
    yield async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info={"settings": settings})
    await engine.dispose()


async def _fleet(sessions: async_sessionmaker[AsyncSession], network: str) -> Fleet:
    async with sessions() as session, session.begin():
        location = await create_location(session)
        pool = await create_ip_pool(session, location=location, network=network)
        servers = [await create_server(session, location=location) for _ in range(CALLERS)]
        return Fleet(sessions, location.id, pool.id, [server.id for server in servers])


async def _allocate_together(fleet: Fleet, version: int) -> list[str | BaseException]:
    """Every caller opens its transaction and connection first; only when all have one do they
    allocate, so the allocations really run at the same time."""
    ready = asyncio.Barrier(len(fleet.server_ids))

    async def one(server_id: int) -> str:
        async with fleet.sessions() as session, session.begin():
            await session.execute(text("SELECT 1"))
            await ready.wait()
            row = await ipam.allocate(
                session, server_id=server_id, location_id=fleet.location_id, version=version
            )
            return str(row.address)

    results = await asyncio.gather(
        *(one(server_id) for server_id in fleet.server_ids), return_exceptions=True
    )
    return list(results)


async def _stored(fleet: Fleet) -> dict[str, int | None]:
    async with fleet.sessions() as session:
        rows = (await session.scalars(select(IpAddress).where(IpAddress.pool_id == fleet.pool_id))).all()
        return {str(row.address): row.server_id for row in rows}


async def _check_nothing_half_written(fleet: Fleet, results: list[str | BaseException]) -> None:
    winners = {
        server: result
        for server, result in zip(fleet.server_ids, results, strict=True)
        if isinstance(result, str)
    }
    stored = await _stored(fleet)
    held = {address: server for address, server in stored.items() if server is not None}
    # Exactly the winners hold exactly the addresses they were told, and no loser holds anything.
    assert held == {address: server for server, address in winners.items()}
    async with fleet.sessions() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "ipam.address.allocate"))
        ).all()
        assert sorted(event.payload["address"] for event in events) == sorted(winners.values())
        report = await audit.verify(session)
        assert report.ok, report.summary()


async def test_concurrent_ipv4_allocations_never_share_an_address(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # A /29 holds 6 usable addresses; one is the gateway, so 5 for 16 callers.
    fleet = await _fleet(sessions, "198.51.100.0/29")

    results = await _allocate_together(fleet, version=4)

    addresses = [result for result in results if isinstance(result, str)]
    refused = [result for result in results if not isinstance(result, str)]
    assert sorted(addresses) == [f"198.51.100.{host}" for host in range(2, 7)]
    assert len(refused) == CALLERS - 5
    assert all(isinstance(error, PoolExhausted) for error in refused), refused
    await _check_nothing_half_written(fleet, results)


async def test_concurrent_ipv6_allocations_are_distinct_and_leave_no_gaps(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fleet = await _fleet(sessions, "2001:db8:77::/64")

    results = await _allocate_together(fleet, version=6)

    assert all(isinstance(result, str) for result in results), results
    # Distinct, and the lowest ones: every address a caller passed over was taken by another.
    assert sorted(results, key=lambda a: int(ip_address(a))) == [  # type: ignore[arg-type]
        str(ip_address("2001:db8:77::2") + offset) for offset in range(CALLERS)
    ]
    await _check_nothing_half_written(fleet, results)


async def test_concurrent_ipv6_allocations_exhaust_a_small_pool_cleanly(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # A /125: ::0 is the subnet-router anycast address, ::1 the gateway, ::2 to ::7 for servers.
    fleet = await _fleet(sessions, "2001:db8:78::/125")

    results = await _allocate_together(fleet, version=6)

    addresses = sorted(result for result in results if isinstance(result, str))
    assert addresses == [f"2001:db8:78::{host}" for host in range(2, 8)]
    assert sum(isinstance(result, PoolExhausted) for result in results) == CALLERS - 6
    await _check_nothing_half_written(fleet, results)


async def test_an_allocation_in_progress_is_passed_over_not_waited_for(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The first transaction holds its address uncommitted; the second must get the next one at
    once. lock_timeout turns a wait into an error, so a regression fails instead of hanging."""
    v4 = await _fleet(sessions, "198.51.100.0/29")
    async with sessions() as first, first.begin(), sessions() as second, second.begin():
        await second.execute(text("SET LOCAL lock_timeout = '2s'"))
        a = await repository.take_free(first, v4.pool_id, v4.server_ids[0], utcnow())
        b = await repository.take_free(second, v4.pool_id, v4.server_ids[1], utcnow())
        assert a is not None
        assert b is not None
        assert (str(a.address), str(b.address)) == ("198.51.100.2", "198.51.100.3")

    v6 = await _fleet(sessions, "2001:db8:79::/64")
    async with sessions() as first, first.begin(), sessions() as second, second.begin():
        await second.execute(text("SET LOCAL lock_timeout = '2s'"))
        pool = await repository.pools_for_allocation(first, v6.location_id, 6)
        a6 = await ipam._allocate_v6(first, pool[0], v6.server_ids[0])
        pool = await repository.pools_for_allocation(second, v6.location_id, 6)
        b6 = await ipam._allocate_v6(second, pool[0], v6.server_ids[1])
        assert a6 is not None
        assert b6 is not None
        assert (str(a6.address), str(b6.address)) == ("2001:db8:79::2", "2001:db8:79::3")


async def test_released_addresses_return_to_the_free_set_under_concurrency(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fleet = await _fleet(sessions, "198.51.100.0/29")
    first = await _allocate_together(fleet, version=4)
    winners = [
        server for server, result in zip(fleet.server_ids, first, strict=True) if isinstance(result, str)
    ]

    async with sessions() as session, session.begin():
        for server_id in winners:
            await ipam.release_for_server(session, server_id)
    assert not any(server is not None for server in (await _stored(fleet)).values())

    again = await _allocate_together(fleet, version=4)
    assert sorted(result for result in again if isinstance(result, str)) == [
        f"198.51.100.{host}" for host in range(2, 7)
    ]


async def test_edits_and_deletes_do_not_queue_behind_each_other_or_behind_allocations(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Nothing waits for a pool lock: a second edit, or a delete while an allocation is in progress,
    is refused at once (409); allocations carry on while DNS servers or reserved addresses change,
    and say "busy, try again" (not "full") while the only pool is being renamed. lock_timeout turns
    any wait into an error, so a regression fails instead of hanging."""
    fleet = await _fleet(sessions, "198.51.100.0/29")
    operator = Actor.user(1, "ops@example.test", "operator")

    async def allocate_without_audit(session: AsyncSession, server_id: int) -> IpAddress | None:
        # What allocate() does before it audits: the audit append lock is the editor's until it
        # commits, so the whole allocate() would wait for that, by design.
        for pool in await repository.pools_for_allocation(session, fleet.location_id, 4):
            return await repository.take_free(session, pool.id, server_id, utcnow())
        return None

    async with sessions() as editing, editing.begin(), sessions() as other, other.begin():
        await other.execute(text("SET LOCAL lock_timeout = '2s'"))
        await ipam.update_pool(editing, operator, fleet.pool_id, IpPoolUpdate(name="being-renamed"))

        with pytest.raises(PoolBusy):
            await ipam.update_pool(other, operator, fleet.pool_id, IpPoolUpdate(name="me-too"))
        with pytest.raises(PoolBusy):
            await ipam.delete_pool(other, operator, fleet.pool_id)
        with pytest.raises(PoolBusy):
            await ipam.allocate(
                other, server_id=fleet.server_ids[0], location_id=fleet.location_id, version=4
            )

    async with sessions() as editing, editing.begin(), sessions() as allocating, allocating.begin():
        await allocating.execute(text("SET LOCAL lock_timeout = '2s'"))
        dns = IpPoolUpdate.model_validate({"dns_servers": ["9.9.9.9"], "reserved": ["198.51.100.6"]})
        await ipam.update_pool(editing, operator, fleet.pool_id, dns)
        taken = await allocate_without_audit(allocating, fleet.server_ids[0])
        assert taken is not None
        assert str(taken.address) == "198.51.100.2"

    async with sessions() as allocating, allocating.begin(), sessions() as deleting, deleting.begin():
        assert await allocate_without_audit(allocating, fleet.server_ids[1]) is not None
        with pytest.raises(PoolBusy):
            await ipam.delete_pool(deleting, operator, fleet.pool_id)
