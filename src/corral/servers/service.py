"""The server lifecycle as the panel drives it.

Every change is a row update plus a job deferred in the same transaction; the job talks to the
hypervisor. Jobs touching a server hold the lock ``server:<id>``, so conflicting operations never
run at once, and each kind of operation has a queueing lock, so a double click queues one job.

Customer-facing calls pass ``owner_id``: the server row is then looked up (and row-locked) only
among that person's servers, so someone else's server is "not found" (404), never "forbidden".
Calls without it (jobs, staff tools, the CLI) act on any server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from procrastinate.types import JSONValue
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.ipam.service import ipam
from corral.jobs.errors import JobAlreadyQueued, JobNotFound
from corral.jobs.schemas import JobRead
from corral.jobs.service import job_service
from corral.kit.actors import Actor
from corral.models.servers import Server, ServerStatus
from corral.panel_settings.service import panel_settings
from corral.plans.service import plans
from corral.servers import repository
from corral.servers.errors import (
    InvalidServerState,
    NoWayToSignIn,
    ReinstallNotConfirmed,
    ServerBeingDeleted,
    ServerBusy,
    ServerLimitReached,
    ServerNotFound,
    TemplateNotOffered,
)
from corral.servers.lifecycle import move
from corral.servers.placement import Demand, choose_node
from corral.servers.root_password import sha512_crypt
from corral.servers.schemas import ServerSetupCreate, ServerView
from corral.servers.suspension import ensure_not_suspended
from corral.ssh_keys.parsing import parse_public_key
from corral.ssh_keys.service import ssh_keys

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
    plan_id: int | None = None
    # A random key the order form (or an API client) sends once per order: the same key again
    # returns the server it already made instead of reserving a second one (a double submit).
    order_key: str | None = None


@dataclass(frozen=True)
class PlanOrder:
    """A customer's order: a plan in a location, and what to call the server."""

    plan_id: int
    location_id: int
    name: str
    order_key: str | None = None


@dataclass(frozen=True)
class ServerSetup:
    template_id: int
    hostname: str
    ssh_keys: Sequence[str] = ()
    root_password_hash: str | None = None


@dataclass(frozen=True)
class ServerAllowance:
    """How many servers a customer has (deleted ones left out) against the panel's limit."""

    used: int
    limit: int

    @property
    def reached(self) -> bool:
        return self.used >= self.limit

    def refusal(self) -> ServerLimitReached:
        limit = self.limit
        return ServerLimitReached(
            f"You have reached your limit of {limit} server{'s' if limit != 1 else ''}.",
            details={"limit": limit},
        )


# The server page's timeline: its newest jobs, then older ones a page at a time ("Show older");
# polling keeps at most TIMELINE_MAX of the newest in view.
TIMELINE_PAGE = 10
TIMELINE_MAX = 100
LIVE_VERSION_LENGTH = 16

# A server can be set up while it waits for its first setup, or after a build the node refused.
SETUP_STATES = (ServerStatus.AWAITING_SETUP.value, ServerStatus.FAILED.value)
# ...and reinstalled while it is built, or after a reinstall that did not finish.
REINSTALL_STATES = (ServerStatus.ACTIVE.value, ServerStatus.FAILED.value)


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
            plan_id=order.plan_id,
            order_key=order.order_key,
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
            payload={
                "node_id": node.id,
                "plan_id": order.plan_id,
                "vcpus": order.vcpus,
                "memory_mib": order.memory_mib,
                "disk_gib": order.disk_gib,
            },
        )
        return server

    async def order(self, session: AsyncSession, actor: Actor, user_id: int, order: PlanOrder) -> Server:
        """A customer orders a plan (phase one): limit and plan checked, then :meth:`reserve`.

        Orders of one customer are taken one at a time (an advisory lock held to commit), so two at
        once cannot both pass the limit, and a repeated ``order_key`` finds the first order's server
        (a unique index on (user, order_key) backs this up).
        """
        await repository.lock_orders_of(session, user_id)
        if order.order_key:
            earlier = await repository.ordered_with_key(session, user_id, order.order_key)
            if earlier is not None:
                existing = await repository.owned(session, user_id, earlier)
                if existing is not None:
                    return existing
        allowance = await self.allowance(session, user_id)
        if allowance.reached:
            raise allowance.refusal()
        plan = await plans.get_orderable(session, order.plan_id, order.location_id)
        return await self.reserve(
            session,
            actor,
            ServerOrder(
                user_id=user_id,
                location_id=order.location_id,
                name=order.name,
                vcpus=plan.vcpus,
                memory_mib=plan.memory_mib,
                disk_gib=plan.disk_gib,
                plan_id=plan.id,
                order_key=order.order_key,
            ),
        )

    async def allowance(self, session: AsyncSession, user_id: int) -> ServerAllowance:
        """The customer's servers against the limit: shown before an order, checked by one."""
        limit = (await panel_settings.current(session)).customer_server_limit
        return ServerAllowance(used=await repository.count_owned(session, user_id), limit=limit)

    async def get(
        self, session: AsyncSession, server_id: int, *, owner_id: int, with_deleted: bool = False
    ) -> Server:
        """The customer's server; a deleted one only ``with_deleted`` (for its "gone" screen)."""
        server = await repository.owned(session, owner_id, server_id, with_deleted=with_deleted)
        if server is None:
            raise ServerNotFound()
        return server

    async def list_owned(self, session: AsyncSession, owner_id: int) -> list[ServerView]:
        """The customer's servers (not deleted), newest first, with names and addresses resolved."""
        return await self._views(session, await repository.owned_list(session, owner_id))

    async def view(
        self,
        session: AsyncSession,
        server_id: int,
        *,
        owner_id: int,
        with_deleted: bool = False,
        jobs_since: int | None = None,
    ) -> ServerView:
        """One server for its page: names, addresses and its task timeline.

        The timeline holds the newest :data:`TIMELINE_PAGE` jobs (older ones come a page at a time,
        see :meth:`jobs`), or with ``jobs_since`` every job from that id up: the page polls with
        the oldest id it first showed, so a new job never pushes one out of view.
        """
        server = await self.get(session, server_id, owner_id=owner_id, with_deleted=with_deleted)
        (view,) = await self._views(session, [server])
        view = replace(
            view, live_version=await self.live_version(session, server.id, owner_id=owner_id) or ""
        )
        lock = f"server:{server.id}"
        if jobs_since is not None:
            jobs = list(await job_service.list(session, lock=lock, since=jobs_since, limit=TIMELINE_MAX))
            return replace(view, jobs=jobs, jobs_since=jobs_since)
        rows = list(await job_service.list(session, lock=lock, limit=TIMELINE_PAGE + 1))
        jobs = rows[:TIMELINE_PAGE]
        older = jobs[-1].id if len(rows) > TIMELINE_PAGE else None
        return replace(view, jobs=jobs, jobs_since=jobs[-1].id if jobs else 0, older_jobs_before=older)

    async def live_version(self, session: AsyncSession, server_id: int, *, owner_id: int) -> str | None:
        """A short fingerprint of what the server page's live block shows: equal fingerprints mean
        the block would be drawn the same, so a poll can be answered with one query and no body.
        None when the customer has no such server (the caller then takes the normal path)."""
        marks = await repository.live_marks(session, owner_id, server_id)
        if marks is None:
            return None
        return hashlib.sha256(repr(marks).encode()).hexdigest()[:LIVE_VERSION_LENGTH]

    async def _views(self, session: AsyncSession, rows: Sequence[Server]) -> list[ServerView]:
        plan_names, location_names, template_names = await repository.names_for(session, rows)
        addresses = await repository.addresses_by_server(session, [server.id for server in rows])
        return [
            ServerView(
                server=server,
                plan_name=plan_names.get(server.plan_id) if server.plan_id is not None else None,
                location_name=location_names.get(server.location_id),
                template_name=template_names.get(server.template_id)
                if server.template_id is not None
                else None,
                addresses=addresses.get(server.id, []),
            )
            for server in rows
        ]

    async def jobs(
        self,
        session: AsyncSession,
        server_id: int,
        *,
        owner_id: int,
        before: int | None = None,
        limit: int = TIMELINE_PAGE,
    ) -> Sequence[JobRead]:
        """One page of the server's task timeline (the jobs that held its lock), newest first; the
        next page is the jobs ``before`` the last one's id."""
        server = await self.get(session, server_id, owner_id=owner_id)
        return await job_service.list(session, lock=f"server:{server.id}", before=before, limit=limit)

    async def rename(
        self, session: AsyncSession, actor: Actor, server_id: int, name: str, *, owner_id: int | None = None
    ) -> Server:
        """Change the display name (``name`` already checked by naming.normalise_display_name)."""
        server = await self._actionable(session, server_id, owner_id)
        before = server.name
        server.name = name
        await session.flush()
        await audit.record(
            session,
            actor,
            "server.rename",
            target=Target(type="server", id=server.id),
            payload={"before": before, "after": name},
        )
        return server

    async def retry_job(
        self, session: AsyncSession, actor: Actor, server_id: int, job_id: int, *, owner_id: int | None = None
    ) -> JobRead:
        """The timeline's retry button: queue a failed job of this server again."""
        server = await self._actionable(session, server_id, owner_id)
        job = await job_service.get(session, job_id)
        if job.lock != f"server:{server.id}":
            raise JobNotFound()  # another server's job answers as a missing one
        await job_service.retry(session, job_id)
        await audit.record(
            session,
            actor,
            "server.job.retry",
            target=Target(type="server", id=server.id),
            payload={"job_id": job_id, "task": job.task_name},
        )
        return await job_service.get(session, job_id)

    async def setup(
        self,
        session: AsyncSession,
        actor: Actor,
        server_id: int,
        setup: ServerSetup,
        *,
        owner_id: int | None = None,
    ) -> int:
        """Phase two: the operating system and access are chosen; a job builds the server.

        A server whose build the node refused (status failed) can be set up again: the provision
        job is safe to repeat (the driver adopts what an earlier try left behind).
        """
        server = await self._install_on(
            session,
            server_id,
            setup,
            owner_id,
            allowed=SETUP_STATES,
            refusal="This server has already been set up.",
            status=ServerStatus.PROVISIONING,
        )
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

    async def power(
        self,
        session: AsyncSession,
        actor: Actor,
        server_id: int,
        action: PowerAction,
        *,
        owner_id: int | None = None,
    ) -> int:
        server = await self._actionable(session, server_id, owner_id)
        if server.status not in _OPERABLE:
            raise InvalidServerState(f"A {server.status.replace('_', ' ')} server cannot be powered.")
        job_id = await self._defer_once(session, "server.power", server.id, action=action)
        await audit.record(
            session, actor, f"server.power.{action}", target=Target(type="server", id=server.id)
        )
        return job_id

    async def reinstall(
        self,
        session: AsyncSession,
        actor: Actor,
        server_id: int,
        setup: ServerSetup,
        *,
        owner_id: int | None = None,
    ) -> int:
        server = await self._install_on(
            session,
            server_id,
            setup,
            owner_id,
            allowed=REINSTALL_STATES,
            refusal="Only a running or stopped server, or one whose reinstall failed, can be reinstalled.",
            status=ServerStatus.REINSTALLING,
        )
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

    async def reinstall_confirmed(
        self,
        session: AsyncSession,
        actor: Actor,
        server_id: int,
        setup: ServerSetup,
        confirm: str,
        *,
        owner_id: int | None = None,
    ) -> int:
        """A reinstall asked for by a person: the current hostname typed back, as the disk is wiped."""
        server = await self._locked(session, server_id, owner_id)
        expected = (server.hostname or server.name).lower()
        if confirm.strip().lower() != expected:
            raise ReinstallNotConfirmed(details={"field": "confirm"})
        return await self.reinstall(session, actor, server_id, setup, owner_id=owner_id)

    async def prepare_setup(
        self, session: AsyncSession, owner_id: int, data: ServerSetupCreate
    ) -> ServerSetup:
        """The wizard's (or API's) choices as the job needs them: saved keys looked up among the
        person's own (404 if any is not theirs), pasted keys checked (422), the password hashed."""
        saved = await ssh_keys.owned(session, owner_id, data.ssh_key_ids)
        keys = [key.public_key for key in saved]
        for text in data.ssh_keys:
            if text.strip():
                keys.append(parse_public_key(text).public_key)
        return ServerSetup(
            template_id=data.template_id,
            hostname=data.hostname,
            ssh_keys=list(dict.fromkeys(keys)),
            root_password_hash=sha512_crypt(data.root_password) if data.root_password else None,
        )

    async def destroy(self, session: AsyncSession, actor: Actor, server_id: int, *, reason: str) -> int:
        server = await self._locked(session, server_id)
        if server.status in (ServerStatus.DELETING.value, ServerStatus.DELETED.value):
            raise InvalidServerState("This server is already being deleted.")
        move(server, ServerStatus.DELETING)
        job_id = await self._defer_once(session, "server.destroy", server.id)
        await audit.record(
            session, actor, "server.destroy", target=Target(type="server", id=server.id), reason=reason
        )
        return job_id

    async def _locked(self, session: AsyncSession, server_id: int, owner_id: int | None = None) -> Server:
        server = await repository.server_for_update(session, server_id, owner_id=owner_id)
        if server is None:
            raise ServerNotFound()
        return server

    async def _actionable(self, session: AsyncSession, server_id: int, owner_id: int | None) -> Server:
        """The server, locked, if it may take a customer action now (see _ensure_actionable)."""
        server = await self._locked(session, server_id, owner_id)
        self._ensure_actionable(server)
        return server

    async def _install_on(
        self,
        session: AsyncSession,
        server_id: int,
        setup: ServerSetup,
        owner_id: int | None,
        *,
        allowed: Sequence[str],
        refusal: str,
        status: ServerStatus,
    ) -> Server:
        """Point a server at the template and hostname it is (re)installed with, once it is in one
        of the ``allowed`` states and the template is offered on its node; it moves to ``status``.
        A setup with no SSH key and no root password is refused: nobody could sign in to it."""
        if not setup.ssh_keys and not setup.root_password_hash:
            raise NoWayToSignIn()
        server = await self._actionable(session, server_id, owner_id)
        if not self._may_install(server, allowed, status):
            raise InvalidServerState(refusal)
        if server.node_id is None or not await repository.template_on_node(
            session, setup.template_id, server.node_id
        ):
            raise TemplateNotOffered()
        server.template_id = setup.template_id
        server.hostname = setup.hostname
        move(server, status)
        return server

    @staticmethod
    def _may_install(server: Server, allowed: Sequence[str], status: ServerStatus) -> bool:
        """A failed server is set up again when its build failed (it has no instance), and
        reinstalled when its reinstall failed (it has one): a build on a half-reinstalled instance
        would adopt it as it is, and a reinstall of nothing has no instance to wipe."""
        if server.status not in allowed:
            return False
        if server.status != ServerStatus.FAILED.value:
            return True
        return (server.external_id is not None) == (status == ServerStatus.REINSTALLING)

    @staticmethod
    def _ensure_actionable(server: Server) -> None:
        """A server on its way out, or suspended by staff, takes no customer action."""
        # Imported here: the cancellation module builds on this one (it calls servers.destroy).
        from corral.servers.cancellation import locked_for_deletion

        if locked_for_deletion(server) or server.status in (
            ServerStatus.DELETING.value,
            ServerStatus.DELETED.value,
        ):
            raise ServerBeingDeleted()
        ensure_not_suspended(server)

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
