"""Server jobs hold no row lock across a hypervisor call, and do not overwrite what a request changed
meanwhile (issue 11, point 2: "jobs never hold a row lock across a hypervisor call").

Real worker, libvirt's test driver; the driver's ``create`` is held at a gate (an asyncio event)
so the test decides when the node "answers".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.engine import URL

from corral.config import Settings
from corral.db.session import transaction
from corral.drivers.base import InstanceRef
from corral.drivers.libvirt.driver import LibvirtDriver
from corral.models.servers import ServerStatus
from corral.servers.service import ServerOrder, ServerSetup, servers
from tests.support.jobs import wait_for_job
from tests.support.server_fleet import ACTOR, WorkerFleet, worker_fleet

PROMPT_S = 2.0


@pytest.fixture
async def fleet(fresh_database: Callable[[], URL], settings: Settings) -> AsyncIterator[WorkerFleet]:
    async with worker_fleet(fresh_database, settings) as built:
        yield built


async def test_a_deletion_asked_for_during_a_build_neither_waits_nor_is_overwritten(
    fleet: WorkerFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached, gate = asyncio.Event(), asyncio.Event()
    create = LibvirtDriver.create

    async def create_at_the_gate(self: LibvirtDriver, *args: Any, **kwargs: Any) -> InstanceRef:
        reached.set()
        await gate.wait()
        return await create(self, *args, **kwargs)

    monkeypatch.setattr(LibvirtDriver, "create", create_at_the_gate)
    async with transaction(fleet.factory) as session:
        order = ServerOrder(
            user_id=fleet.user_id,
            location_id=fleet.location_id,
            name="web",
            vcpus=1,
            memory_mib=256,
            disk_gib=2,
        )
        server_id = (await servers.reserve(session, ACTOR, order)).id
    setup = ServerSetup(
        template_id=fleet.template_id, hostname="web.example.com", ssh_keys=["ssh-ed25519 AAAA"]
    )
    async with transaction(fleet.factory) as session:
        build_job = await servers.setup(session, ACTOR, server_id, setup)
    await asyncio.wait_for(reached.wait(), 30)

    # The build is waiting on the node. Before the fix it held the server's row all that time, and
    # this waited for it (here: until the timeout below).
    try:
        async with asyncio.timeout(PROMPT_S), transaction(fleet.factory) as session:
            destroy_job = await servers.destroy(session, ACTOR, server_id, reason="changed my mind")
    finally:
        gate.set()
    built = await wait_for_job(fleet.factory, build_job)
    assert built.status == "succeeded", [line.message for line in built.logs]
    assert "Built, but the server became deleting meanwhile" in built.logs[-1].message
    # The deletion (queued behind the build on the server's lock) finds the instance and removes it.
    deleted = await wait_for_job(fleet.factory, destroy_job)
    assert deleted.status == "succeeded", [line.message for line in deleted.logs]
    server = await fleet.server(server_id)
    assert server.status == ServerStatus.DELETED.value
    assert server.external_id is not None
    assert not fleet.instance_exists(server.external_id)
