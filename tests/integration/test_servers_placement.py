"""Placement: least-loaded node with room, honouring oversell and status; never overcommits."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from corral.models.locations import Location
from corral.models.nodes import Node, NodeStatus
from corral.models.servers import Server, ServerStatus
from corral.servers.errors import NoCapacity, NoNodeAvailable
from corral.servers.placement import Demand, choose_node
from tests.factories.users import create_user

SMALL = Demand(vcpus=1, memory_mib=1024, disk_gib=10)


async def make_location(session: AsyncSession) -> Location:
    location = Location(slug=f"loc-{secrets.token_hex(3)}", name="Test", country_code="AU")
    session.add(location)
    await session.flush()
    return location


async def make_node(
    session: AsyncSession,
    location: Location,
    *,
    cpus: int = 4,
    memory_mib: int = 8192,
    disk_gib: int = 100,
    status: NodeStatus = NodeStatus.ONLINE,
    cpu_oversell: float = 1.0,
) -> Node:
    node = Node(
        name=f"node-{secrets.token_hex(3)}",
        location_id=location.id,
        driver="libvirt",
        transport="test",
        cpu_total=cpus,
        memory_total_mib=memory_mib,
        disk_total_gib=disk_gib,
        cpu_oversell=cpu_oversell,
        memory_oversell=1.0,
        disk_oversell=1.0,
        status=status.value,
    )
    session.add(node)
    await session.flush()
    return node


async def place(session: AsyncSession, user_id: int, location: Location, demand: Demand) -> Server:
    node = await choose_node(session, location.id, demand)
    server = Server(
        user_id=user_id,
        location_id=location.id,
        node_id=node.id,
        name="srv",
        vcpus=demand.vcpus,
        memory_mib=demand.memory_mib,
        disk_gib=demand.disk_gib,
        status=ServerStatus.PROVISIONING.value,
    )
    session.add(server)
    await session.flush()
    return server


async def test_the_least_loaded_node_with_room_wins(db: AsyncSession) -> None:
    user = await create_user(db)
    location = await make_location(db)
    busy = await make_node(db, location)
    idle = await make_node(db, location)
    await place(db, user.id, location, Demand(vcpus=2, memory_mib=4096, disk_gib=50))  # goes to `busy`
    assert (await choose_node(db, location.id, SMALL)).id == idle.id
    assert busy.id != idle.id


@pytest.mark.parametrize("status", [NodeStatus.MAINTENANCE, NodeStatus.OFFLINE, NodeStatus.UNHEALTHY])
async def test_nodes_that_are_not_online_take_no_servers(db: AsyncSession, status: NodeStatus) -> None:
    location = await make_location(db)
    await make_node(db, location, status=status)
    # Not "full": nothing in the location can take a server right now (issue 11, point 4).
    with pytest.raises(NoNodeAvailable):
        await choose_node(db, location.id, SMALL)


async def test_oversell_ratio_stretches_capacity(db: AsyncSession) -> None:
    user = await create_user(db)
    location = await make_location(db)
    await make_node(db, location, cpus=2, cpu_oversell=2.0)
    for _ in range(4):  # 4 vCPUs on 2 cores at 2x
        await place(db, user.id, location, SMALL)
    with pytest.raises(NoCapacity):
        await choose_node(db, location.id, SMALL)


async def test_deleted_servers_free_their_room(db: AsyncSession) -> None:
    user = await create_user(db)
    location = await make_location(db)
    await make_node(db, location, cpus=1)
    server = await place(db, user.id, location, SMALL)
    with pytest.raises(NoCapacity):
        await choose_node(db, location.id, SMALL)
    server.status = ServerStatus.DELETED.value
    await db.flush()
    assert await choose_node(db, location.id, SMALL)


@pytest.fixture
async def shared_engine(fresh_database: Callable[[], URL]) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(fresh_database(), pool_size=10)
    yield engine
    await engine.dispose()


async def _setup_node_with_room_for(engine: AsyncEngine, servers: int) -> tuple[int, Location]:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as session, session.begin():
        user = await create_user(session)
        location = await make_location(session)
        await make_node(session, location, cpus=servers, memory_mib=1024 * servers, disk_gib=10 * servers)
    return user.id, location


async def test_a_second_order_waits_for_the_first_and_then_finds_no_room(shared_engine: AsyncEngine) -> None:
    user_id, location = await _setup_node_with_room_for(shared_engine, 1)
    factory = async_sessionmaker(shared_engine, expire_on_commit=False)
    async with factory() as first, factory() as second, factory() as observer:
        await first.begin()
        await place(first, user_id, location, SMALL)  # holds the node row lock until commit

        second_order = asyncio.create_task(choose_node(second, location.id, SMALL))
        # Wait (with a deadline) until the second order is blocked on the first one's lock.
        for _ in range(100):
            waiting = await observer.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
            await observer.rollback()
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert waiting == 1
        assert not second_order.done()

        await first.commit()
        with pytest.raises(NoCapacity):
            await second_order
        await second.rollback()


async def test_parallel_orders_never_overcommit_a_node(shared_engine: AsyncEngine) -> None:
    user_id, location = await _setup_node_with_room_for(shared_engine, 2)
    factory = async_sessionmaker(shared_engine, expire_on_commit=False)

    async def order() -> bool:
        async with factory() as session:
            try:
                async with session.begin():
                    await place(session, user_id, location, SMALL)
            except NoCapacity:
                return False
            return True

    results = await asyncio.gather(*(order() for _ in range(8)))
    assert sorted(results) == [False] * 6 + [True] * 2
    async with factory() as session:
        placed = await session.scalar(select(func.count()).select_from(Server))
    assert placed == 2
