"""A server's whole life through the panel's services and a real job worker, on libvirt's test driver.

The real-QEMU version of this (a guest that boots) is tests/e2e/test_fleet_qemu.py; this one is
fast and runs the same services and jobs against ``test:///default``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import libvirt
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from corral.config import Settings
from corral.db.session import create_session_factory, transaction
from corral.drivers.libvirt.xml import VolumeConfig
from corral.ipam.schemas import IpPoolCreate
from corral.ipam.service import ipam
from corral.jobs.runtime import JobRuntime
from corral.jobs.service import job_service
from corral.kit.actors import Actor
from corral.models.ipam import IpAddress
from corral.models.locations import Location
from corral.models.nodes import DriftReport, Node, NodeTemplate, OsTemplate
from corral.models.servers import Server
from corral.servers.service import ServerOrder, ServerSetup, servers
from tests.factories.users import create_user
from tests.support.jobs import run_job

URI = "test:///default"
POOL = "default-pool"
ACTOR = Actor.cli("test")


@dataclass
class Fleet:
    factory: async_sessionmaker[AsyncSession]
    runtime: JobRuntime
    conn: Any
    user_id: int
    location_id: int
    node_id: int
    template_id: int


@pytest.fixture
async def fleet(fresh_database: Callable[[], URL], settings: Settings) -> AsyncIterator[Fleet]:
    # The test driver keeps its state only while a connection is open in this process.
    conn = libvirt.open(URI)
    template = f"tpl-{secrets.token_hex(3)}.qcow2"
    conn.storagePoolLookupByName(POOL).createXML(
        VolumeConfig(name=template, capacity_bytes=2 * 1024**3, format="qcow2").to_xml(), 0
    )
    url = fresh_database()
    engine = create_async_engine(url)
    factory = create_session_factory(engine, settings)
    async with transaction(factory) as session:
        user = await create_user(session)
        location = Location(slug="test1", name="Test One", country_code="AU")
        session.add(location)
        await session.flush()
        node = Node(
            name="test-node",
            location_id=location.id,
            driver="libvirt",
            connection_uri=URI,
            storage_pool=POOL,
            network="default",
            domain_type="qemu",
            cpu_total=8,
            memory_total_mib=16384,
            disk_total_gib=500,
            status="online",
        )
        os_template = OsTemplate(slug="tiny-1", name="Tiny 1", os_family="linux", os_version="1")
        session.add_all([node, os_template])
        await session.flush()
        session.add(NodeTemplate(node_id=node.id, template_id=os_template.id, image_ref=template))
        await ipam.create_pool(
            session,
            ACTOR,
            IpPoolCreate(
                name="test-v4",
                network="192.0.2.0/29",
                gateway="192.0.2.1",
                dns_servers=["192.0.2.53"],
                location_id=location.id,
            ),
        )
        ids = (user.id, location.id, node.id, os_template.id)
    runtime = JobRuntime(url, settings, poll_interval=0.2)
    await runtime.open()
    await runtime.start_worker()
    try:
        yield Fleet(factory, runtime, conn, *ids)
    finally:
        await runtime.close()
        await engine.dispose()
        conn.storagePoolLookupByName(POOL).storageVolLookupByName(template).delete(0)
        conn.close()


async def server_row(fleet: Fleet, server_id: int) -> Server:
    async with fleet.factory() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        return server


def domain_state(fleet: Fleet, external_id: str) -> int:
    state, _ = fleet.conn.lookupByUUIDString(external_id).state()
    return int(state)


async def test_a_server_from_order_to_deletion(fleet: Fleet) -> None:
    async with transaction(fleet.factory) as session:
        order = ServerOrder(
            user_id=fleet.user_id,
            location_id=fleet.location_id,
            name="web-1",
            vcpus=1,
            memory_mib=512,
            disk_gib=5,
        )
        server_id = (await servers.reserve(session, ACTOR, order)).id
    reserved = await server_row(fleet, server_id)
    assert (reserved.status, reserved.node_id) == ("awaiting_setup", fleet.node_id)

    setup = ServerSetup(
        template_id=fleet.template_id, hostname="web-1.example.com", ssh_keys=["ssh-ed25519 AAAAC3Nz test"]
    )
    await run_job(fleet.factory, lambda session: servers.setup(session, ACTOR, server_id, setup))
    built = await server_row(fleet, server_id)
    assert built.status == "active"
    assert built.external_id is not None
    assert domain_state(fleet, built.external_id) == libvirt.VIR_DOMAIN_RUNNING

    await run_job(fleet.factory, lambda session: servers.power(session, ACTOR, server_id, "stop"))
    assert domain_state(fleet, built.external_id) == libvirt.VIR_DOMAIN_SHUTOFF
    assert (await server_row(fleet, server_id)).power_state == "stopped"
    await run_job(fleet.factory, lambda session: servers.power(session, ACTOR, server_id, "start"))
    assert domain_state(fleet, built.external_id) == libvirt.VIR_DOMAIN_RUNNING

    await run_job(fleet.factory, lambda session: servers.reinstall(session, ACTOR, server_id, setup))
    reinstalled = await server_row(fleet, server_id)
    assert (reinstalled.status, reinstalled.external_id) == ("active", built.external_id)

    # Something on the node the panel never made: the reconciler must report it, and not touch it.
    foreign = f"foreign-{secrets.token_hex(3)}"
    fleet.conn.defineXML(
        f"<domain type='test'><name>{foreign}</name><memory>65536</memory><os><type>hvm</type></os></domain>"
    )
    foreign_id = fleet.conn.lookupByName(foreign).UUIDString()
    try:
        await run_job(
            fleet.factory,
            lambda session: job_service.defer(session, "servers.reconcile_node", node_id=fleet.node_id),
        )
        assert fleet.conn.lookupByName(foreign).UUIDString() == foreign_id  # reported, never deleted
    finally:
        fleet.conn.lookupByName(foreign).undefine()
    async with fleet.factory() as session:
        drift = (await session.execute(select(DriftReport))).scalars().all()
    # Our server matches its instance, so nothing is reported about it. (The test driver's state is
    # shared by the whole test process, so other tests' instances may be reported too.)
    ours = [
        (r.kind, r.detail) for r in drift if r.server_id == server_id or r.external_id == built.external_id
    ]
    assert ours == []
    assert [r.kind for r in drift if r.external_id == foreign_id] == ["unknown_instance"]

    await run_job(
        fleet.factory, lambda session: servers.destroy(session, ACTOR, server_id, reason="test over")
    )
    gone = await server_row(fleet, server_id)
    assert gone.status == "deleted"
    with pytest.raises(libvirt.libvirtError):
        fleet.conn.lookupByUUIDString(built.external_id)
    async with fleet.factory() as session:
        held = await session.scalar(
            select(func.count()).select_from(IpAddress).where(IpAddress.server_id == server_id)
        )
    assert held == 0
