"""The demo fleet: seeded idempotently, and rebuilt from the panel's records after a restart."""

from __future__ import annotations

from collections.abc import Callable

import libvirt
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from corral.config import Settings
from corral.db.session import create_session_factory, transaction
from corral.demo.fleet import DEMO_URI, restore_demo_node, seed_demo_fleet
from corral.drivers.base import InstanceRef
from corral.jobs.runtime import JobRuntime
from corral.kit.actors import Actor
from corral.models.ipam import IpPool
from corral.models.locations import Location
from corral.models.nodes import DriftReport, Node, OsTemplate
from corral.models.servers import Server
from corral.servers.hypervisor import open_driver
from corral.servers.reconciler import reconcile
from corral.servers.service import ServerOrder, ServerSetup, servers
from tests.factories.users import create_user
from tests.support.jobs import wait_for_job

ACTOR = Actor.cli("test")


async def test_seeding_twice_changes_nothing(fresh_database: Callable[[], URL], settings: Settings) -> None:
    engine = create_async_engine(fresh_database())
    factory = create_session_factory(engine, settings)
    try:
        for _ in range(2):
            async with transaction(factory) as session:
                await seed_demo_fleet(session)
        async with factory() as session:
            counts = [
                await session.scalar(select(func.count()).select_from(model))
                for model in (Location, Node, OsTemplate, IpPool)
            ]
        assert counts == [1, 1, 2, 2]
    finally:
        await engine.dispose()


async def test_a_restart_rebuilds_the_demo_hypervisor(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    url = fresh_database()
    engine = create_async_engine(url)
    factory = create_session_factory(engine, settings)
    conn = await restore_demo_node(factory)  # first start: templates only
    runtime = JobRuntime(url, settings, poll_interval=0.2)
    try:
        async with transaction(factory) as session:
            await seed_demo_fleet(session)
            user = await create_user(session)
            location_id = await session.scalar(select(Location.id))
            template_id = await session.scalar(select(OsTemplate.id).where(OsTemplate.slug == "debian-12"))
            assert location_id is not None
            assert template_id is not None
            order = ServerOrder(
                user_id=user.id, location_id=location_id, name="demo", vcpus=1, memory_mib=1024, disk_gib=10
            )
            server = await servers.reserve(session, ACTOR, order)
            job_id = await servers.setup(
                session,
                ACTOR,
                server.id,
                ServerSetup(
                    template_id=template_id,
                    hostname="demo.example.com",
                    ssh_keys=["ssh-ed25519 AAAAC3Nz demo"],
                ),
            )
        await runtime.open()
        await runtime.start_worker()
        job = await wait_for_job(factory, job_id)
        assert job.status == "succeeded", [line.message for line in job.logs]
        await runtime.close()

        # "Restart": the test hypervisor forgets everything once its last connection closes.
        conn.close()
        fresh: libvirt.virConnect = libvirt.open(DEMO_URI)
        assert [d.name() for d in fresh.listAllDomains() if d.name().startswith("corral-")] == []
        fresh.close()

        conn = await restore_demo_node(factory)
        async with transaction(factory) as session:
            restored = await session.get(Server, server.id)
            assert restored is not None
            assert restored.external_id is not None
            assert conn.lookupByUUIDString(restored.external_id).isActive()
            node_id = restored.node_id
            assert node_id is not None
            refs = [ref for ref in (await _list(node_id, factory)) if ref.name.startswith("corral-")]
            await reconcile(session, node_id, refs)
            missing = await session.scalar(
                select(func.count()).select_from(DriftReport).where(DriftReport.kind == "missing_instance")
            )
        assert missing == 0
    finally:
        await runtime.close()
        conn.close()
        await engine.dispose()


async def _list(node_id: int, factory: async_sessionmaker[AsyncSession]) -> list[InstanceRef]:
    async with factory() as session, open_driver(session, node_id) as driver:
        return await driver.list_instances()
