"""IP pools and allocation through the service, on the rolled-back test database."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.ipam import NoPoolInLocation, PoolExhausted, ipam
from corral.ipam.errors import AddressInUse, InvalidPool, PoolInUse, PoolNameTaken, PoolNotFound, PoolOverlaps
from corral.ipam.schemas import AddressFilter, AddressState, IpPoolCreate, IpPoolUpdate
from corral.kit.actors import Actor
from corral.models.audit import AuditEvent
from corral.models.ipam import IpAddress
from corral.models.servers import Server
from tests.factories.fleet import create_ip_pool, create_location, create_server

OPERATOR = Actor.user(42, "ops@example.test", "operator")


def _create(location_id: int, **fields: Any) -> IpPoolCreate:
    body = {
        "name": "syd1-v4",
        "network": "198.51.100.0/29",
        "gateway": "198.51.100.1",
        "dns_servers": ["1.1.1.1"],
        "location_id": location_id,
    }
    return IpPoolCreate.model_validate({**body, **fields})


async def _rows(db: AsyncSession, pool_id: int) -> dict[str, tuple[bool, int | None]]:
    statement = select(IpAddress).where(IpAddress.pool_id == pool_id).order_by(IpAddress.address)
    rows = (await db.scalars(statement.execution_options(populate_existing=True))).all()
    return {str(row.address): (row.reserved, row.server_id) for row in rows}


async def _events(db: AsyncSession, action: str) -> list[AuditEvent]:
    statement = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
    return list((await db.scalars(statement)).all())


async def _servers(db: AsyncSession, count: int, **overrides: Any) -> list[Server]:
    return [await create_server(db, **overrides) for _ in range(count)]


async def test_an_ipv4_pool_stores_its_usable_addresses_with_the_gateway_reserved(db: AsyncSession) -> None:
    location = await create_location(db)

    view = await ipam.create_pool(db, OPERATOR, _create(location.id, reserved=["198.51.100.6"]))

    rows = await _rows(db, view.pool.id)
    # A /29 has 8 addresses: network (.0) and broadcast (.7) are not stored, .1 is the gateway.
    assert list(rows) == [f"198.51.100.{host}" for host in range(1, 7)]
    assert {address for address, (reserved, _) in rows.items() if reserved} == {
        "198.51.100.1",
        "198.51.100.6",
    }
    assert view.utilisation.model_dump() == {
        "total": 6,
        "allocated": 0,
        "reserved": 2,
        "free": 4,
        "percent_used": 0.0,
    }
    assert view.reserved == [ip_address("198.51.100.6")]
    assert view.pool.version == 4
    assert view.pool.network == ip_network("198.51.100.0/29")


@pytest.mark.parametrize(
    ("network", "gateway", "stored"),
    [
        ("192.0.2.0/31", "192.0.2.0", 2),  # point-to-point: both addresses usable
        ("192.0.2.8/30", "192.0.2.9", 2),
        ("10.20.0.0/16", "10.20.0.1", 65534),
    ],
)
async def test_materialised_row_counts(db: AsyncSession, network: str, gateway: str, stored: int) -> None:
    location = await create_location(db)

    view = await ipam.create_pool(db, OPERATOR, _create(location.id, network=network, gateway=gateway))

    count = select(func.count()).select_from(IpAddress).where(IpAddress.pool_id == view.pool.id)
    assert (await db.execute(count)).scalar_one() == stored
    assert view.utilisation.total == stored
    assert view.utilisation.free == stored - 1


async def test_an_ipv6_pool_stores_only_its_reserved_addresses(db: AsyncSession) -> None:
    location = await create_location(db)
    body = _create(
        location.id,
        name="syd1-v6",
        network="2001:db8:10::/64",
        gateway="2001:db8:10::1",
        dns_servers=["2606:4700:4700::1111", "1.1.1.1"],
        reserved=["2001:db8:10::53"],
    )

    view = await ipam.create_pool(db, OPERATOR, body)

    assert list(await _rows(db, view.pool.id)) == ["2001:db8:10::1", "2001:db8:10::53"]
    assert view.utilisation.total == 2**64 - 1  # all but the subnet-router anycast address
    assert view.utilisation.reserved == 2
    assert view.utilisation.free == 2**64 - 3
    assert view.pool.dns_servers == [ip_address("2606:4700:4700::1111"), ip_address("1.1.1.1")]


async def test_pool_names_are_unique_and_networks_never_overlap(db: AsyncSession) -> None:
    location = await create_location(db)
    await ipam.create_pool(db, OPERATOR, _create(location.id))

    with pytest.raises(PoolNameTaken):
        await ipam.create_pool(
            db, OPERATOR, _create(location.id, network="198.51.100.64/29", gateway="198.51.100.65")
        )
    # Inside, around, or equal to an existing pool's network: one address would be in two pools.
    for network, gateway in [("198.51.100.0/30", "198.51.100.1"), ("198.51.100.0/24", "198.51.100.1")]:
        with pytest.raises(PoolOverlaps) as refused:
            await ipam.create_pool(
                db, OPERATOR, _create(location.id, name="other", network=network, gateway=gateway)
            )
        assert "syd1-v4" in refused.value.message
        assert refused.value.details == {"fields": {"network": refused.value.message}}


async def test_an_unknown_location_is_a_field_error(db: AsyncSession) -> None:
    with pytest.raises(InvalidPool) as refused:
        await ipam.create_pool(db, OPERATOR, _create(2**40))
    assert refused.value.fields == {"location_id": "Choose one of the locations."}
    assert refused.value.status_code == 422


async def test_allocation_hands_out_the_lowest_free_address_and_release_returns_it(db: AsyncSession) -> None:
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location, network="198.51.100.0/29", reserved=("198.51.100.2",))
    first, second = await _servers(db, 2, location=location)

    a = await ipam.allocate(db, server_id=first.id, location_id=location.id, version=4)
    b = await ipam.allocate(db, server_id=second.id, location_id=location.id, version=4)

    assert (str(a.address), str(b.address)) == ("198.51.100.3", "198.51.100.4")
    assert a.pool_id == b.pool_id == pool.id
    assert a.allocated_at is not None
    assert [str(row.address) for row in await ipam.addresses_of(db, first.id)] == ["198.51.100.3"]

    released = await ipam.release_for_server(db, first.id)

    assert [str(address) for address in released] == ["198.51.100.3"]
    assert await ipam.addresses_of(db, first.id) == []
    assert (await _rows(db, pool.id))["198.51.100.3"] == (False, None)
    # Idempotent: nothing left to release, nothing recorded.
    assert await ipam.release_for_server(db, first.id) == []
    assert len(await _events(db, "ipam.address.release")) == 1
    # The lowest free address again.
    third = await create_server(db, location=location)
    again = await ipam.allocate(db, server_id=third.id, location_id=location.id, version=4)
    assert str(again.address) == "198.51.100.3"


async def test_allocation_moves_to_the_next_pool_then_reports_exhaustion(db: AsyncSession) -> None:
    location = await create_location(db)
    older = await create_ip_pool(db, location=location, network="192.0.2.0/31")
    newer = await create_ip_pool(db, location=location, network="192.0.2.8/31")
    servers = await _servers(db, 3, location=location)

    taken = [await ipam.allocate(db, server_id=s.id, location_id=location.id, version=4) for s in servers[:2]]

    assert [(row.pool_id, str(row.address)) for row in taken] == [
        (older.id, "192.0.2.1"),
        (newer.id, "192.0.2.9"),
    ]
    with pytest.raises(PoolExhausted) as refused:
        await ipam.allocate(db, server_id=servers[2].id, location_id=location.id, version=4)
    assert refused.value.status_code == 409
    with pytest.raises(NoPoolInLocation):
        await ipam.allocate(db, server_id=servers[2].id, location_id=location.id, version=6)
    other = await create_location(db)
    with pytest.raises(NoPoolInLocation):
        await ipam.allocate(db, server_id=servers[2].id, location_id=other.id, version=4)


async def test_ipv6_allocation_creates_rows_on_demand_and_reuses_released_ones(db: AsyncSession) -> None:
    location = await create_location(db)
    pool = await create_ip_pool(
        db, location=location, network="2001:db8:20::/64", reserved=("2001:db8:20::3",)
    )
    servers = await _servers(db, 4, location=location)

    taken = [await ipam.allocate(db, server_id=s.id, location_id=location.id, version=6) for s in servers[:3]]

    # ::1 is the gateway, ::3 reserved: the lowest addresses without a row are ::2, ::4, ::5.
    assert [str(row.address) for row in taken] == ["2001:db8:20::2", "2001:db8:20::4", "2001:db8:20::5"]
    await ipam.release_for_server(db, servers[0].id)
    assert "2001:db8:20::2" not in await _rows(db, pool.id)  # an IPv6 row lives only while in use
    again = await ipam.allocate(db, server_id=servers[3].id, location_id=location.id, version=6)
    assert str(again.address) == "2001:db8:20::2"
    view = await ipam.pool(db, pool.id)
    assert (view.utilisation.allocated, view.utilisation.reserved) == (3, 2)


async def test_a_small_ipv6_pool_is_exhausted_too(db: AsyncSession) -> None:
    location = await create_location(db)
    await create_ip_pool(db, location=location, network="2001:db8:30::/126", gateway="2001:db8:30::1")
    servers = await _servers(db, 3, location=location)

    # A /126 has ::0 (anycast, not usable), ::1 (gateway), ::2 and ::3.
    taken = [await ipam.allocate(db, server_id=s.id, location_id=location.id, version=6) for s in servers[:2]]

    assert [str(row.address) for row in taken] == ["2001:db8:30::2", "2001:db8:30::3"]
    with pytest.raises(PoolExhausted):
        await ipam.allocate(db, server_id=servers[2].id, location_id=location.id, version=6)


async def test_network_config_for_cloud_init(db: AsyncSession) -> None:
    location = await create_location(db)
    await create_ip_pool(db, location=location, network="198.51.100.0/24", dns_servers=("1.1.1.1", "8.8.8.8"))
    await create_ip_pool(
        db, location=location, network="2001:db8:40::/64", dns_servers=("2606:4700:4700::1111", "1.1.1.1")
    )
    server = await create_server(db, location=location)
    await ipam.allocate(db, server_id=server.id, location_id=location.id, version=6)
    await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)

    network = await ipam.network_config(db, server.id)

    assert [(c.version, str(c.address), c.prefix_length, str(c.gateway)) for c in network.addresses] == [
        (4, "198.51.100.2", 24, "198.51.100.1"),
        (6, "2001:db8:40::2", 64, "2001:db8:40::1"),
    ]
    assert network.cidrs == ("198.51.100.2/24", "2001:db8:40::2/64")
    assert (network.gateway4, network.gateway6) == ("198.51.100.1", "2001:db8:40::1")
    assert network.nameservers == ("1.1.1.1", "8.8.8.8", "2606:4700:4700::1111")


async def test_a_pool_with_allocated_addresses_cannot_be_deleted(db: AsyncSession) -> None:
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location, network="198.51.100.0/29")
    server = await create_server(db, location=location)
    await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)

    with pytest.raises(PoolInUse) as refused:
        await ipam.delete_pool(db, OPERATOR, pool.id)
    assert refused.value.status_code == 409
    assert "1 address of" in refused.value.message

    await ipam.release_for_server(db, server.id)
    await ipam.delete_pool(db, OPERATOR, pool.id)

    with pytest.raises(PoolNotFound):
        await ipam.pool(db, pool.id)
    count = select(func.count()).select_from(IpAddress).where(IpAddress.pool_id == pool.id)
    assert (await db.execute(count)).scalar_one() == 0
    [event] = await _events(db, "ipam.pool.delete")
    assert (event.target_type, event.target_id, event.actor_label) == (
        "ip_pool",
        str(pool.id),
        OPERATOR.label,
    )


async def test_editing_the_reserved_list_of_an_ipv4_pool(db: AsyncSession) -> None:
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location, network="198.51.100.0/29", reserved=("198.51.100.6",))
    original_name = pool.name
    server = await create_server(db, location=location)
    held = await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)
    assert str(held.address) == "198.51.100.2"

    with pytest.raises(AddressInUse) as refused:
        await ipam.update_pool(
            db, OPERATOR, pool.id, IpPoolUpdate.model_validate({"reserved": ["198.51.100.2"]})
        )
    assert f"server #{server.id}" in refused.value.message
    with pytest.raises(InvalidPool) as outside:
        await ipam.update_pool(
            db, OPERATOR, pool.id, IpPoolUpdate.model_validate({"reserved": ["198.51.100.9"]})
        )
    assert outside.value.fields == {"reserved": "198.51.100.9 is outside 198.51.100.0/29."}

    update = IpPoolUpdate.model_validate(
        {"name": "renamed", "dns_servers": ["9.9.9.9"], "reserved": ["198.51.100.5", "198.51.100.1"]}
    )
    view = await ipam.update_pool(db, OPERATOR, pool.id, update)

    assert view.pool.name == "renamed"
    assert view.reserved == [ip_address("198.51.100.5")]  # the gateway stays reserved, not listed
    rows = await _rows(db, pool.id)
    assert {address for address, (reserved, _) in rows.items() if reserved} == {
        "198.51.100.1",
        "198.51.100.5",
    }
    [event] = await _events(db, "ipam.pool.update")
    assert event.payload["changes"]["reserved"] == {"added": ["198.51.100.5"], "removed": ["198.51.100.6"]}
    assert event.payload["changes"]["name"] == {"from": original_name, "to": "renamed"}
    assert event.payload["changes"]["dns_servers"] == {
        "from": ["1.1.1.1", "2606:4700:4700::1111"],
        "to": ["9.9.9.9"],
    }
    # Nothing changed: nothing recorded.
    await ipam.update_pool(db, OPERATOR, pool.id, update)
    assert len(await _events(db, "ipam.pool.update")) == 1


async def test_editing_the_reserved_list_of_an_ipv6_pool(db: AsyncSession) -> None:
    location = await create_location(db)
    pool = await create_ip_pool(
        db, location=location, network="2001:db8:50::/64", reserved=("2001:db8:50::9",)
    )
    server = await create_server(db, location=location)
    await ipam.allocate(db, server_id=server.id, location_id=location.id, version=6)

    with pytest.raises(AddressInUse):
        await ipam.update_pool(
            db, OPERATOR, pool.id, IpPoolUpdate.model_validate({"reserved": ["2001:db8:50::2"]})
        )
    await ipam.update_pool(
        db, OPERATOR, pool.id, IpPoolUpdate.model_validate({"reserved": ["2001:db8:50::a"]})
    )

    assert list(await _rows(db, pool.id)) == ["2001:db8:50::1", "2001:db8:50::2", "2001:db8:50::a"]


async def test_address_listing_filters_by_state(db: AsyncSession) -> None:
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location, network="198.51.100.0/28", reserved=("198.51.100.14",))
    server = await create_server(db, location=location, name="web-1")
    await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)

    every = await ipam.addresses(db, pool.id, AddressFilter(limit=5))
    allocated = await ipam.addresses(db, pool.id, AddressFilter(state=AddressState.ALLOCATED))
    reserved = await ipam.addresses(db, pool.id, AddressFilter(state=AddressState.RESERVED))
    free = await ipam.addresses(db, pool.id, AddressFilter(state=AddressState.FREE, page=2, limit=5))

    assert (every.total, every.pages, len(every.rows)) == (14, 3, 5)
    assert [(str(r.row.address), r.server_name, r.state) for r in allocated.rows] == [
        ("198.51.100.2", "web-1", AddressState.ALLOCATED)
    ]
    assert [str(r.row.address) for r in reserved.rows] == ["198.51.100.1", "198.51.100.14"]
    assert free.total == 11
    assert [str(r.row.address) for r in free.rows] == [f"198.51.100.{host}" for host in range(8, 13)]


async def test_every_pool_change_is_audited(db: AsyncSession) -> None:
    location = await create_location(db)
    view = await ipam.create_pool(db, OPERATOR, _create(location.id, reserved=["198.51.100.5"]))
    server = await create_server(db, location=location)
    await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4, actor=OPERATOR)
    await ipam.release_for_server(db, server.id)
    await ipam.update_pool(db, OPERATOR, view.pool.id, IpPoolUpdate(name="renamed"))
    await ipam.delete_pool(db, OPERATOR, view.pool.id)

    events = list(
        (
            await db.scalars(
                select(AuditEvent).where(AuditEvent.target_type == "ip_pool").order_by(AuditEvent.seq)
            )
        ).all()
    )

    assert [(e.action, e.target_id) for e in events] == [
        (action, str(view.pool.id))
        for action in (
            "ipam.pool.create",
            "ipam.address.allocate",
            "ipam.address.release",
            "ipam.pool.update",
            "ipam.pool.delete",
        )
    ]
    assert events[0].payload == {
        "name": "syd1-v4",
        "network": "198.51.100.0/29",
        "gateway": "198.51.100.1",
        "dns_servers": ["1.1.1.1"],
        "reserved": ["198.51.100.5"],
        "location_id": location.id,
    }
    assert events[1].payload == {"address": "198.51.100.2", "server_id": server.id}
    assert events[1].actor_label == OPERATOR.label
    assert events[2].actor_label == "system:ipam.release"


async def test_allocating_again_for_the_same_server_returns_its_address(db: AsyncSession) -> None:
    location = await create_location(db)
    await create_ip_pool(db, location=location, network="198.51.100.0/29")
    await create_ip_pool(db, location=location, network="2001:db8:60::/64")
    server = await create_server(db, location=location)

    first = await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)
    again = await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)
    v6 = await ipam.allocate(db, server_id=server.id, location_id=location.id, version=6)

    # A provisioning job that runs twice does not take a second address; the other family is separate.
    assert again.id == first.id
    assert str(v6.address) == "2001:db8:60::2"
    assert len(await ipam.addresses_of(db, server.id)) == 2
    assert len(await _events(db, "ipam.address.allocate")) == 2


async def test_an_ipv6_row_left_by_a_deleted_server_row_is_handed_out_again(db: AsyncSession) -> None:
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location, network="2001:db8:61::/64")
    gone, other, later = await _servers(db, 3, location=location)
    await ipam.allocate(db, server_id=gone.id, location_id=location.id, version=6)
    await ipam.allocate(db, server_id=other.id, location_id=location.id, version=6)

    # Not released: the server row itself is deleted, and the foreign key sets server_id to NULL.
    await db.delete(gone)
    await db.flush()
    assert (await _rows(db, pool.id))["2001:db8:61::2"] == (False, None)

    reused = await ipam.allocate(db, server_id=later.id, location_id=location.id, version=6)
    assert str(reused.address) == "2001:db8:61::2"
