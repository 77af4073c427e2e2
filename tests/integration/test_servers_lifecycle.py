"""A server's whole life through the panel's services and a real job worker, on libvirt's test driver.

The real-QEMU version of this (a guest that boots) is tests/e2e/test_fleet_qemu.py; this one is
fast and runs the same services and jobs against ``test:///default``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import libvirt
import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from corral.config import Settings
from corral.db.session import transaction
from corral.jobs.service import job_service
from corral.models.nodes import DriftReport
from corral.servers.service import ServerOrder, ServerSetup, servers
from tests.support.jobs import run_job
from tests.support.server_fleet import ACTOR, WorkerFleet, worker_fleet


@pytest.fixture
async def fleet(fresh_database: Callable[[], URL], settings: Settings) -> AsyncIterator[WorkerFleet]:
    async with worker_fleet(fresh_database, settings) as built:
        yield built


async def test_a_server_from_order_to_deletion(fleet: WorkerFleet) -> None:
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
    reserved = await fleet.server(server_id)
    assert (reserved.status, reserved.node_id) == ("awaiting_setup", fleet.node_id)

    setup = ServerSetup(
        template_id=fleet.template_id, hostname="web-1.example.com", ssh_keys=["ssh-ed25519 AAAAC3Nz test"]
    )
    await run_job(fleet.factory, lambda session: servers.setup(session, ACTOR, server_id, setup))
    built = await fleet.server(server_id)
    assert built.status == "active"
    assert built.external_id is not None
    assert fleet.domain_state(built.external_id) == libvirt.VIR_DOMAIN_RUNNING

    await run_job(fleet.factory, lambda session: servers.power(session, ACTOR, server_id, "stop"))
    assert fleet.domain_state(built.external_id) == libvirt.VIR_DOMAIN_SHUTOFF
    assert (await fleet.server(server_id)).power_state == "stopped"
    await run_job(fleet.factory, lambda session: servers.power(session, ACTOR, server_id, "start"))
    assert fleet.domain_state(built.external_id) == libvirt.VIR_DOMAIN_RUNNING

    await run_job(fleet.factory, lambda session: servers.reinstall(session, ACTOR, server_id, setup))
    reinstalled = await fleet.server(server_id)
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
    gone = await fleet.server(server_id)
    assert gone.status == "deleted"
    with pytest.raises(libvirt.libvirtError):
        fleet.conn.lookupByUUIDString(built.external_id)
    assert await fleet.addresses_held(server_id) == 0
