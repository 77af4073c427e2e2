"""The server lifecycle as the panel drives it.

Every change is a row update plus a job deferred in the same transaction; the job talks to the
hypervisor. Jobs touching a server hold the lock ``server:<id>``, so conflicting operations never
run at once, and each kind of operation has a queueing lock, so a double click queues one job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from procrastinate.types import JSONValue
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.ipam.service import ipam
from corral.jobs.errors import JobAlreadyQueued
from corral.jobs.service import job_service
from corral.kit.actors import Actor
from corral.models.servers import Server, ServerStatus
from corral.servers import repository
from corral.servers.errors import InvalidServerState, ServerBusy, ServerNotFound, TemplateNotOffered
from corral.servers.placement import Demand, choose_node

PowerAction = Literal["start", "shutdown", "restart", "stop"]
# States in which the hypervisor side may be touched by a customer action.
_OPERABLE = (ServerStatus.ACTIVE.value,)


@dataclass(frozen=True)
class ServerOrder:
    user_id: int
    location_id: int
    name: str
    vcpus: int
    memory_mib: int
    disk_gib: int


@dataclass(frozen=True)
class ServerSetup:
    template_id: int
    hostname: str
    ssh_keys: Sequence[str] = ()
    root_password_hash: str | None = None


class ServerService:
    async def reserve(self, session: AsyncSession, actor: Actor, order: ServerOrder) -> Server:
        """Phase one of a deploy: a node with room and IP addresses, held for the customer."""
        demand = Demand(vcpus=order.vcpus, memory_mib=order.memory_mib, disk_gib=order.disk_gib)
        node = await choose_node(session, order.location_id, demand)
        server = Server(
            user_id=order.user_id,
            location_id=order.location_id,
            node_id=node.id,
            name=order.name,
            vcpus=order.vcpus,
            memory_mib=order.memory_mib,
            disk_gib=order.disk_gib,
            status=ServerStatus.AWAITING_SETUP.value,
        )
        session.add(server)
        await session.flush()
        await ipam.allocate(
            session, server_id=server.id, location_id=order.location_id, version=4, actor=actor
        )
        await audit.record(
            session,
            actor,
            "server.create",
            target=Target(type="server", id=server.id),
            payload={"node_id": node.id, "vcpus": order.vcpus, "memory_mib": order.memory_mib},
        )
        return server

    async def setup(self, session: AsyncSession, actor: Actor, server_id: int, setup: ServerSetup) -> int:
        """Phase two: the operating system and access are chosen; a job builds the server."""
        server = await self._locked(session, server_id)
        if server.status != ServerStatus.AWAITING_SETUP:
            raise InvalidServerState("This server has already been set up.")
        if server.node_id is None or not await repository.template_on_node(
            session, setup.template_id, server.node_id
        ):
            raise TemplateNotOffered()
        server.template_id = setup.template_id
        server.hostname = setup.hostname
        server.status = ServerStatus.PROVISIONING.value
        job_id = await job_service.defer(
            session,
            "server.provision",
            server_id=server.id,
            ssh_keys=list(setup.ssh_keys),
            root_password_hash=setup.root_password_hash,
        )
        await audit.record(
            session,
            actor,
            "server.setup",
            target=Target(type="server", id=server.id),
            payload={
                "template_id": setup.template_id,
                "hostname": setup.hostname,
                "ssh_keys": len(setup.ssh_keys),
            },
        )
        return job_id

    async def power(self, session: AsyncSession, actor: Actor, server_id: int, action: PowerAction) -> int:
        server = await self._locked(session, server_id)
        if server.status not in _OPERABLE:
            raise InvalidServerState(f"A {server.status.replace('_', ' ')} server cannot be powered.")
        job_id = await self._defer_once(session, "server.power", server.id, action=action)
        await audit.record(
            session, actor, f"server.power.{action}", target=Target(type="server", id=server.id)
        )
        return job_id

    async def reinstall(self, session: AsyncSession, actor: Actor, server_id: int, setup: ServerSetup) -> int:
        server = await self._locked(session, server_id)
        if server.status not in _OPERABLE:
            raise InvalidServerState("Only a running or stopped server can be reinstalled.")
        if server.node_id is None or not await repository.template_on_node(
            session, setup.template_id, server.node_id
        ):
            raise TemplateNotOffered()
        server.template_id = setup.template_id
        server.hostname = setup.hostname
        server.status = ServerStatus.REINSTALLING.value
        job_id = await self._defer_once(
            session,
            "server.reinstall",
            server.id,
            ssh_keys=list(setup.ssh_keys),
            root_password_hash=setup.root_password_hash,
        )
        await audit.record(
            session,
            actor,
            "server.reinstall",
            target=Target(type="server", id=server.id),
            payload={"template_id": setup.template_id},
        )
        return job_id

    async def destroy(self, session: AsyncSession, actor: Actor, server_id: int, *, reason: str) -> int:
        server = await self._locked(session, server_id)
        if server.status in (ServerStatus.DELETING.value, ServerStatus.DELETED.value):
            raise InvalidServerState("This server is already being deleted.")
        server.status = ServerStatus.DELETING.value
        job_id = await self._defer_once(session, "server.destroy", server.id)
        await audit.record(
            session, actor, "server.destroy", target=Target(type="server", id=server.id), reason=reason
        )
        return job_id

    async def _locked(self, session: AsyncSession, server_id: int) -> Server:
        server = await repository.server_for_update(session, server_id)
        if server is None:
            raise ServerNotFound()
        return server

    async def _defer_once(
        self, session: AsyncSession, task: str, server_id: int, **arguments: JSONValue
    ) -> int:
        try:
            return await job_service.defer(
                # mypy cannot see that ``arguments`` never holds defer's own keywords; the callers
                # above pass only task arguments.
                session,
                task,
                queueing_lock=f"server:{server_id}:{task}",
                server_id=server_id,
                **arguments,  # type: ignore[arg-type]
            )
        except JobAlreadyQueued as error:
            raise ServerBusy() from error


servers = ServerService()
