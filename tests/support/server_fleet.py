"""A committed database with one libvirt ``test:///default`` node, an IP pool and a real job worker,
for tests of server jobs: build servers through the services and run the cancellation processor.

    async with worker_fleet(fresh_database, settings) as fleet:
        server_id = await fleet.build_server("web-1")
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import libvirt
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from corral.config import Settings
from corral.db.session import create_session_factory, transaction
from corral.drivers.libvirt.xml import VolumeConfig
from corral.ipam.schemas import IpPoolCreate
from corral.ipam.service import ipam
from corral.jobs.errors import JobAlreadyQueued
from corral.jobs.runtime import JobRuntime
from corral.jobs.schemas import JobRead
from corral.jobs.service import job_service
from corral.kit.actors import Actor
from corral.models.ipam import IpAddress
from corral.models.locations import Location
from corral.models.nodes import Node, NodeTemplate, OsTemplate
from corral.models.servers import Server
from corral.servers.service import ServerOrder, ServerSetup, servers
from tests.factories.users import create_user
from tests.support.jobs import run_job, wait_for_job

URI = "test:///default"
POOL = "default-pool"
ACTOR = Actor.cli("test")
PROCESSOR_TASK = "servers.process_cancellations"


@dataclass
class WorkerFleet:
    factory: async_sessionmaker[AsyncSession]
    runtime: JobRuntime
    conn: Any
    user_id: int
    location_id: int
    node_id: int
    template_id: int

    async def build_server(self, name: str) -> int:
        """Order and set up a server for the fleet's user; returns its id once it is active."""
        async with transaction(self.factory) as session:
            order = ServerOrder(
                user_id=self.user_id,
                location_id=self.location_id,
                name=name,
                vcpus=1,
                memory_mib=256,
                disk_gib=2,
            )
            server_id = (await servers.reserve(session, ACTOR, order)).id
        # A server is never built without a way to sign in to it (servers.errors.NoWayToSignIn).
        setup = ServerSetup(
            template_id=self.template_id,
            hostname=f"{name}.example.com",
            ssh_keys=["ssh-ed25519 AAAAC3Nz test"],
        )
        await run_job(self.factory, lambda session: servers.setup(session, ACTOR, server_id, setup))
        return server_id

    async def server(self, server_id: int) -> Server:
        async with self.factory() as session:
            server = await session.get(Server, server_id)
            assert server is not None
            return server

    async def addresses_held(self, server_id: int) -> int:
        async with self.factory() as session:
            count = await session.scalar(
                select(func.count()).select_from(IpAddress).where(IpAddress.server_id == server_id)
            )
        return int(count or 0)

    def instance_exists(self, external_id: str) -> bool:
        try:
            self.conn.lookupByUUIDString(external_id)
        except libvirt.libvirtError:
            return False
        return True

    def domain_state(self, external_id: str) -> int:
        state, _ = self.conn.lookupByUUIDString(external_id).state()
        return int(state)

    async def latest_destroy_job(self, server_id: int) -> JobRead | None:
        async with self.factory() as session:
            jobs = await job_service.list(
                session, lock=f"server:{server_id}", task_name="server.destroy", limit=1
            )
        return jobs[0] if jobs else None

    async def settle_destroy(self, server_id: int) -> JobRead:
        """Wait for the server's latest deletion job to finish, whatever the outcome."""
        job = await self.latest_destroy_job(server_id)
        assert job is not None, "no deletion job was queued"
        return await wait_for_job(self.factory, job.id)

    async def run_processor(self) -> None:
        """One run of the cancellation processor through the worker. The worker's own schedule
        may have queued a run already; then that one is waited for instead."""
        deadline = time.monotonic() + 60
        while True:
            try:
                await run_job(
                    self.factory,
                    lambda session: job_service.defer(session, PROCESSOR_TASK, timestamp=int(time.time())),
                )
                return
            except JobAlreadyQueued:
                async with self.factory() as session:
                    queued = await job_service.list(session, task_name=PROCESSOR_TASK, status="todo", limit=1)
                if queued:
                    await wait_for_job(self.factory, queued[0].id)
                    return
            assert time.monotonic() < deadline, "could not run the cancellation processor"
            await asyncio.sleep(0.1)


async def process_server_until(
    fleet: WorkerFleet, server_id: int, check: Callable[[Server], bool], *, deadline_s: float = 60
) -> Server:
    """Run the processor, letting deletion jobs finish in between, until ``check`` holds."""
    deadline = time.monotonic() + deadline_s
    while True:
        await fleet.run_processor()
        job = await fleet.latest_destroy_job(server_id)
        if job is not None and not job.is_finished:
            await wait_for_job(fleet.factory, job.id)
        server = await fleet.server(server_id)
        if check(server):
            return server
        assert time.monotonic() < deadline, f"server {server_id} never reached the expected state"


@asynccontextmanager
async def worker_fleet(fresh_database: Callable[[], URL], settings: Settings) -> AsyncIterator[WorkerFleet]:
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
            transport="test",  # URI: test:///default
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
                network="192.0.2.0/28",
                gateway="192.0.2.1",
                dns_servers=["192.0.2.53"],
                location_id=location.id,
            ),
        )
        ids = (user.id, location.id, node.id, os_template.id)
    runtime = JobRuntime(url, settings, poll_interval=0.1)
    await runtime.open()
    await runtime.start_worker()
    try:
        yield WorkerFleet(factory, runtime, conn, *ids)
    finally:
        await runtime.close()
        await engine.dispose()
        conn.storagePoolLookupByName(POOL).storageVolLookupByName(template).delete(0)
        conn.close()
