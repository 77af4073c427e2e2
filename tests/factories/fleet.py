"""The fleet for tests: locations, IP pools, servers. Persisted through the session handed in.

location = await create_location(db)
pool = await create_ip_pool(db, location=location, network="203.0.113.0/29")
server = await create_server(db, location=location)
"""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import factory
from sqlalchemy.ext.asyncio import AsyncSession

from corral.ipam.schemas import IpPoolCreate, usable_bounds
from corral.ipam.service import ipam
from corral.kit.actors import Actor
from corral.models.ipam import IpPool
from corral.models.locations import Location
from corral.models.servers import Server
from corral.models.users import User
from tests.factories.users import create_user

FACTORY_ACTOR = Actor.system("tests.factory")


class LocationFactory(factory.Factory):  # type: ignore[misc]
    class Meta:
        model = Location

    slug = factory.Sequence(lambda n: f"loc{n}")
    name = factory.Sequence(lambda n: f"Location {n}")
    country_code = "AU"


async def create_location(session: AsyncSession, **overrides: Any) -> Location:
    location: Location = LocationFactory.build(**overrides)
    session.add(location)
    await session.flush()
    return location


_pool_numbers = iter(range(1, 1_000_000))


async def create_ip_pool(
    session: AsyncSession,
    *,
    location: Location | None = None,
    network: str = "203.0.113.0/24",
    gateway: str | None = None,
    dns_servers: tuple[str, ...] = ("1.1.1.1", "2606:4700:4700::1111"),
    reserved: tuple[str, ...] = (),
    name: str | None = None,
) -> IpPool:
    """A pool made through the service, so its address rows exist as in production (the creation
    is audited as the system). The gateway defaults to the first usable address."""
    location = location or await create_location(session)
    if gateway is None:
        gateway = str(usable_bounds(ip_network(network))[0])
    data = IpPoolCreate.model_validate(
        {
            "name": name or f"pool-{next(_pool_numbers)}",
            "network": network,
            "gateway": gateway,
            "dns_servers": list(dns_servers),
            "location_id": location.id,
            "reserved": list(reserved),
        }
    )
    view = await ipam.create_pool(session, FACTORY_ACTOR, data)
    return view.pool


class ServerFactory(factory.Factory):  # type: ignore[misc]
    class Meta:
        model = Server

    name = factory.Sequence(lambda n: f"server-{n}")
    vcpus = 1
    memory_mib = 1024
    disk_gib = 20


async def create_server(
    session: AsyncSession, *, user: User | None = None, location: Location | None = None, **overrides: Any
) -> Server:
    """A server row (awaiting setup, on no node) owned by ``user`` (a new customer by default)."""
    user = user or await create_user(session)
    location = location or await create_location(session)
    server: Server = ServerFactory.build(user_id=user.id, location_id=location.id, **overrides)
    session.add(server)
    await session.flush()
    return server
