"""A node that accepts connections and never answers (issue 11, point 2).

The hung node is real to the panel: a TCP server on loopback that accepts and then reads forever,
reached by the real libvirt driver over its ssh transport: libvirt's connect blocks in C code
waiting for the server's SSH banner (the TLS transport fails at once here for want of client
certificates, so it cannot stand in). libssh gives up by itself after 10 s; a libvirtd that hangs
after the handshake is never given up on. The panel's connect deadline here is 1 s, so everything
below must happen well inside those 10 s (before the fix, each attempt held its worker slot and
a shared pool thread for the 10 s, and for ever on a node hung past the handshake). A real worker
runs the jobs.

What must hold: the hung node's jobs fail within the deadline and are retried, the node is marked
down; a build on a healthy node (libvirt's test:///default) completes meanwhile; and a power request
on the hung server answers a 409 at once instead of waiting on a row lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from corral.app import create_app
from corral.config import DatabasePoolSettings, DriverSettings, Settings
from corral.db.session import transaction
from corral.drivers.executor import executor_for
from corral.jobs.schemas import JobRead
from corral.jobs.service import job_service
from corral.models.locations import Location
from corral.models.nodes import Node, NodeStatus, NodeTemplate
from corral.models.servers import Server, ServerStatus
from corral.models.users import User
from tests.factories.nodes import create_node_key, host_key
from tests.factories.users import DEFAULT_PASSWORD
from tests.support.auth import page_token, sign_in
from tests.support.server_fleet import WorkerFleet, worker_fleet

KEY = ["ssh-ed25519 AAAAC3Nz test"]
CONNECT_S = 1.0
HUNG_JOBS = 4  # as many as the worker runs at once: before the fix they held every slot forever
PROMPT_S = 2.0
LIBSSH_GIVES_UP_S = 8.0  # libssh's own connect timeout is 10 s: the deadline must act well before


class SilentPeer:
    """Accepts TCP connections on loopback and reads whatever comes, never writing a byte."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        while await reader.read(4096):
            pass

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        # Closing the sockets is what finally frees the driver threads stuck in libssh's connect.
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


def _quick(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "drivers": DriverSettings(
                connect_timeout_s=CONNECT_S, operation_timeout_s=2, build_timeout_s=3, threads_per_node=2
            ),
            "database": DatabasePoolSettings(lock_timeout_ms=300),
        }
    )


@pytest.fixture
async def peer() -> AsyncIterator[SilentPeer]:
    silent = SilentPeer()
    await silent.start()
    yield silent
    await silent.stop()


@pytest.fixture
async def fleet(fresh_database: Callable[[], URL], settings: Settings) -> AsyncIterator[WorkerFleet]:
    async with worker_fleet(fresh_database, _quick(settings)) as built:
        yield built


async def _hung_servers(fleet: WorkerFleet, port: int, count: int) -> tuple[int, list[int]]:
    """A node on the silent peer (its own location, so no order is placed there) and ``count``
    servers on it, each being built: (node id, server ids)."""
    async with transaction(fleet.factory) as session:
        location = Location(slug="hung1", name="Hung One", country_code="AU")
        session.add(location)
        await session.flush()
        key = await create_node_key(session)
        node = Node(
            name="hung-node",
            location_id=location.id,
            driver="libvirt",
            transport="ssh",
            host="127.0.0.1",
            port=port,
            ssh_user="corral",
            ssh_key_id=key.id,
            ssh_host_key=host_key(),
            storage_pool="default",
            network="default",
            domain_type="kvm",
            cpu_total=8,
            memory_total_mib=16384,
            disk_total_gib=500,
            status=NodeStatus.ONLINE.value,
        )
        session.add(node)
        await session.flush()
        session.add(NodeTemplate(node_id=node.id, template_id=fleet.template_id, image_ref="tpl.qcow2"))
        server_ids = []
        for number in range(count):
            server = Server(
                user_id=fleet.user_id,
                location_id=location.id,
                node_id=node.id,
                template_id=fleet.template_id,
                name=f"hung-{number}",
                hostname=f"hung-{number}.example.com",
                vcpus=1,
                memory_mib=256,
                disk_gib=2,
                status=ServerStatus.PROVISIONING.value,
            )
            session.add(server)
            await session.flush()
            server_ids.append(server.id)
            await job_service.defer(session, "server.provision", server_id=server.id, ssh_keys=KEY)
        return node.id, server_ids


async def _jobs_of(fleet: WorkerFleet, server_id: int) -> list[JobRead]:
    async with fleet.factory() as session:
        return list(await job_service.list(session, lock=f"server:{server_id}", limit=10))


async def _first_failure(fleet: WorkerFleet, server_id: int, deadline_s: float) -> JobRead:
    """The server's build job once an attempt has failed, waiting at most ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while True:
        jobs = await _jobs_of(fleet, server_id)
        if jobs and any(line.level == "error" for line in jobs[0].logs):
            return jobs[0]
        assert time.monotonic() < deadline, f"no attempt of server {server_id}'s build ended in time"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def _customer(fleet: WorkerFleet, url: URL, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The panel on the fleet's database (no worker of its own), signed in as the fleet's customer."""
    app = create_app(settings, database_url=url, run_worker=False)
    async with fleet.factory() as session:
        user = await session.get(User, fleet.user_id)
        assert user is not None
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://panel.test") as client:
            signed_in = await sign_in(client, user.email, DEFAULT_PASSWORD)
            assert signed_in.status_code == 303, signed_in.text[:300]
            client.headers.update({"Origin": "https://panel.test", "X-CSRF-Token": await page_token(client)})
            yield client


async def _power(client: httpx.AsyncClient, server_id: int) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.post(
        f"/servers/{server_id}/power", data={"action": "start"}, headers={"Accept": "application/json"}
    )
    return response, time.monotonic() - started


async def _until(check: Callable[[], bool], deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_hung_node_times_out_its_jobs_and_starves_no_other_node(
    fleet: WorkerFleet, peer: SilentPeer, settings: Settings
) -> None:
    node_id, hung = await _hung_servers(fleet, peer.port, HUNG_JOBS)
    deferred = time.monotonic()
    # The builds are under way: the driver is connecting to the silent peer.
    await _until(lambda: peer.accepted >= 2, 10, "the hung node's jobs never started")

    async with _customer(fleet, fleet.runtime.url, _quick(settings)) as client:
        # Before the fix the job held the server's row lock across the call that never returns:
        # this waited for the 30 s statement timeout and answered 500.
        response, took = await _power(client, hung[0])
        assert response.status_code == 409, response.text[:300]
        assert response.json()["code"] == "invalid_server_state"
        assert took < PROMPT_S

    # Deferred after the hung builds, which took every worker slot (and, before the fix, kept
    # them): the healthy node's build still runs and completes.
    healthy = await fleet.build_server("healthy-1")
    assert (await fleet.server(healthy)).status == ServerStatus.ACTIVE.value
    assert time.monotonic() - deferred < LIBSSH_GIVES_UP_S

    for server_id in hung:
        job = await _first_failure(fleet, server_id, deadline_s=LIBSSH_GIVES_UP_S)
        failure = next(line.message for line in job.logs if line.level == "error")
        assert failure.startswith("DriverTimeout: the node did not answer within 1 s (connecting)"), failure
        assert "retrying at" in failure
        assert job.status in ("todo", "doing")  # retried, not given up
        assert (await fleet.server(server_id)).status == ServerStatus.PROVISIONING.value
    # All of them failed over on the panel's deadline, not libssh's.
    assert time.monotonic() - deferred < LIBSSH_GIVES_UP_S

    async with fleet.factory() as session:
        node = await session.get(Node, node_id)
        assert node is not None
        assert node.status == NodeStatus.OFFLINE.value
        assert node.last_error is not None
        assert "did not answer within 1 s" in node.last_error
    # The stuck calls hold only the hung node's own threads, never more than its pool's size.
    assert executor_for(f"ssh corral@127.0.0.1:{peer.port}", 2).busy == 2


async def test_a_request_that_would_wait_on_a_row_lock_answers_409_busy(
    fleet: WorkerFleet, settings: Settings
) -> None:
    server_id = await fleet.build_server("web-1")
    async with _customer(fleet, fleet.runtime.url, _quick(settings)) as client:
        async with fleet.factory() as holder, holder.begin():
            # Another transaction holds the server's row (a slow job, an operator's edit).
            await holder.execute(text("SELECT id FROM servers WHERE id = :id FOR UPDATE"), {"id": server_id})
            response, took = await _power(client, server_id)
        assert response.status_code == 409, response.text[:300]
        assert response.json()["code"] == "busy"
        assert response.headers["Retry-After"] == "1"
        assert took < PROMPT_S
        # Once the lock is gone the same request goes through (a form post: back to the page).
        response, _ = await _power(client, server_id)
        assert response.status_code == 303, response.text[:300]
