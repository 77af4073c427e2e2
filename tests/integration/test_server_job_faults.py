"""Reinstalls and builds that fail end in a state the owner can act on (issue 11, point 3 and 4).

Real worker, real libvirt test driver: a reinstall whose image the node lacks is refused once (not
retried) and leaves the server on its old disk; one that crashes between making the new disk and
the swap is retried and finishes with no volume left over; a build whose node keeps failing ends
as "Build failed" with the reason and the setup offered again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import libvirt
import pytest
from sqlalchemy.engine import URL

from corral.config import Settings
from corral.db.session import transaction
from corral.drivers.base import TransientDriverError
from corral.drivers.libvirt import storage
from corral.drivers.libvirt.driver import LibvirtDriver
from corral.jobs.service import job_service
from corral.models.nodes import NodeTemplate, OsTemplate
from corral.models.servers import ServerStatus
from corral.servers import tasks as server_tasks
from corral.servers.schemas import ServerRead
from corral.servers.service import ServerOrder, ServerSetup, servers
from corral.servers.status import DisplayCode, display_status
from tests.support.jobs import run_job, wait_for_job
from tests.support.server_fleet import ACTOR, POOL, WorkerFleet, worker_fleet

KEY = ["ssh-ed25519 AAAAC3Nz test"]


@pytest.fixture
async def fleet(fresh_database: Callable[[], URL], settings: Settings) -> AsyncIterator[WorkerFleet]:
    async with worker_fleet(fresh_database, settings) as built:
        yield built


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lifecycle jobs' retries without their minutes of backoff (same number of attempts)."""
    monkeypatch.setattr(server_tasks.LIFECYCLE_RETRY, "base_seconds", 0.0)


def _volumes(fleet: WorkerFleet, server_id: int) -> list[str]:
    return storage.owned_volumes(
        fleet.conn.storagePoolLookupByName(POOL), server_tasks.instance_name(server_id)
    )


async def _reinstall(fleet: WorkerFleet, server_id: int, template_id: int) -> int:
    setup = ServerSetup(template_id=template_id, hostname="web.example.com", ssh_keys=KEY)
    async with transaction(fleet.factory) as session:
        return await servers.reinstall(session, ACTOR, server_id, setup)


async def _assert_operable(fleet: WorkerFleet, server_id: int) -> None:
    """The owner can power the server and reinstall it (with an image that exists)."""
    server = await fleet.server(server_id)
    assert server.status == ServerStatus.ACTIVE.value
    assert server.external_id is not None
    await run_job(fleet.factory, lambda session: servers.power(session, ACTOR, server_id, "stop"))
    assert fleet.domain_state(server.external_id) == libvirt.VIR_DOMAIN_SHUTOFF
    await run_job(fleet.factory, lambda session: servers.power(session, ACTOR, server_id, "start"))
    job = await wait_for_job(fleet.factory, await _reinstall(fleet, server_id, fleet.template_id))
    assert job.status == "succeeded", [line.message for line in job.logs]
    again = await fleet.server(server_id)
    assert (again.status, again.external_id, again.status_detail) == ("active", server.external_id, None)
    assert fleet.domain_state(server.external_id) == libvirt.VIR_DOMAIN_RUNNING
    assert len(_volumes(fleet, server_id)) == 2  # its disk and seed; nothing left over


async def test_a_reinstall_whose_image_is_missing_keeps_the_old_disk_and_is_not_retried(
    fleet: WorkerFleet,
) -> None:
    server_id = await fleet.build_server("web")
    before = await fleet.server(server_id)
    assert before.external_id is not None
    old_volumes = _volumes(fleet, server_id)
    async with transaction(fleet.factory) as session:
        missing = OsTemplate(slug="gone-1", name="Gone 1", os_family="linux", os_version="1")
        session.add(missing)
        await session.flush()
        session.add(
            NodeTemplate(node_id=fleet.node_id, template_id=missing.id, image_ref="no-such-volume.qcow2")
        )
        missing_id = missing.id

    job = await wait_for_job(fleet.factory, await _reinstall(fleet, server_id, missing_id))

    assert job.status == "failed"
    assert job.attempts == 1  # a permanent refusal is not retried
    server = await fleet.server(server_id)
    assert (server.status, server.external_id) == ("active", before.external_id)
    assert "no-such-volume.qcow2" in (server.status_detail or "")
    assert fleet.domain_state(before.external_id) == libvirt.VIR_DOMAIN_RUNNING  # never stopped
    assert _volumes(fleet, server_id) == old_volumes  # the old disk, untouched; no new one left
    await _assert_operable(fleet, server_id)


async def test_a_reinstall_that_crashes_before_the_swap_is_retried_and_finishes(
    fleet: WorkerFleet, quick_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_id = await fleet.build_server("web")
    swap = LibvirtDriver._swap
    crashes: list[int] = []

    def crash_once(self: LibvirtDriver, *args: Any) -> None:
        # As a worker killed here would: the new volumes are made, the instance is not yet swapped.
        if not crashes:
            crashes.append(1)
            raise RuntimeError("worker died mid-reinstall")
        swap(self, *args)

    monkeypatch.setattr(LibvirtDriver, "_swap", crash_once)

    job = await wait_for_job(fleet.factory, await _reinstall(fleet, server_id, fleet.template_id))

    assert (job.status, job.attempts, crashes) == ("succeeded", 2, [1]), [line.message for line in job.logs]
    await _assert_operable(fleet, server_id)


async def test_a_reinstall_lost_for_good_ends_failed_with_the_reinstall_offered(
    fleet: WorkerFleet, quick_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_id = await fleet.build_server("web")

    def always_crash(self: LibvirtDriver, *args: Any) -> None:
        raise RuntimeError("worker died mid-reinstall")

    monkeypatch.setattr(LibvirtDriver, "_swap", always_crash)
    job = await wait_for_job(fleet.factory, await _reinstall(fleet, server_id, fleet.template_id))
    assert (job.status, job.attempts) == ("failed", server_tasks.LIFECYCLE_RETRY.attempts)
    server = await fleet.server(server_id)
    assert server.status == "failed"
    assert display_status(server).label == "Reinstall failed"
    assert "worker died mid-reinstall" in (server.status_detail or "")
    monkeypatch.undo()
    # "Reinstall" is offered again, and works.
    job = await wait_for_job(fleet.factory, await _reinstall(fleet, server_id, fleet.template_id))
    assert job.status == "succeeded", [line.message for line in job.logs]
    await _assert_operable(fleet, server_id)


async def test_a_build_abandoned_after_connection_errors_reads_build_failed_with_a_retry(
    fleet: WorkerFleet, quick_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: LibvirtDriver, *args: Any) -> None:
        raise TransientDriverError("could not connect to the node: connection refused")

    monkeypatch.setattr(LibvirtDriver, "_op_create", refuse)
    async with transaction(fleet.factory) as session:
        order = ServerOrder(
            user_id=fleet.user_id,
            location_id=fleet.location_id,
            name="b",
            vcpus=1,
            memory_mib=256,
            disk_gib=2,
        )
        server_id = (await servers.reserve(session, ACTOR, order)).id
    setup = ServerSetup(template_id=fleet.template_id, hostname="b.example.com", ssh_keys=KEY)
    async with transaction(fleet.factory) as session:
        job_id = await servers.setup(session, ACTOR, server_id, setup)

    job = await wait_for_job(fleet.factory, job_id)

    assert (job.status, job.attempts) == ("failed", server_tasks.LIFECYCLE_RETRY.attempts)
    server = await fleet.server(server_id)
    shown = display_status(server)
    assert (server.status, shown.code, shown.label, shown.spinner) == (
        "failed",
        DisplayCode.FAILED,
        "Build failed",
        False,
    )
    read = ServerRead.of(server)
    assert read.display_status == DisplayCode.FAILED
    assert "connection refused" in (read.status_detail or "")
    async with fleet.factory() as session:
        assert (await job_service.get(session, job_id)).can_retry
    # The retry: set it up again, and it builds.
    monkeypatch.undo()
    await run_job(fleet.factory, lambda session: servers.setup(session, ACTOR, server_id, setup))
    built = await fleet.server(server_id)
    assert (built.status, built.status_detail) == ("active", None)
