"""Nodes: list, inspect, test a connection, create, change, maintenance, delete, check now.

Saving a node runs the same connection test an operator can run from the form. A node that does not
answer is refused (``NodeUnreachable``, with the driver's message) unless the caller says
``allow_unreachable``: it is then stored **offline** with the error recorded, whatever status was
asked for, and the health check brings it online once it answers. Capacity left empty is taken
from what the node reports.

Status belongs to two parties: operators put a node in and out of maintenance; the health check
(``corral.nodes.health``) moves it between online, offline and unhealthy and leaves maintenance
alone. Every change is audited in the same transaction; credentials never reach the audit log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.db.session import settings_of
from corral.drivers.base import HostInfo
from corral.kit.clock import utcnow
from corral.kit.errors import ValidationFailed
from corral.locations import repository as locations_repository
from corral.models.locations import Location
from corral.models.nodes import Node, NodeStatus, NodeTemplate, OsTemplate
from corral.node_keys import repository as keys_repository
from corral.node_keys.errors import NodeKeyUnreadable
from corral.node_keys.service import private_key_of
from corral.nodes import health, repository
from corral.nodes.credentials import CredentialsUnreadable, credentials_of, store
from corral.nodes.errors import (
    CapacityUnknown,
    NodeInUse,
    NodeNameTaken,
    NodeNotFound,
    NodeUnreachable,
    UnknownLocation,
)
from corral.nodes.health import CheckOutcome
from corral.nodes.probe import ProbeResult, connection_for, probe, timeouts_for
from corral.nodes.schemas import (
    ENDPOINT_FIELDS,
    GIB,
    MIB,
    ConnectionTestResult,
    HostInfoRead,
    NodeConnectionFields,
    NodeConnectionTest,
    NodeCreate,
    NodeCredentials,
    NodeDetailRead,
    NodeRead,
    NodeRow,
    NodeTemplateRead,
    NodeUpdate,
    NodeUsage,
    check_endpoint,
    endpoint_of,
)
from corral.rbac.permissions import Permission
from corral.templates import repository as templates_repository

READ = Permission.NODES_READ
MANAGE = Permission.NODES_MANAGE
# Changing any of these means talking to the node differently: test again before saving.
CONNECTION_FIELDS = frozenset({"driver", *ENDPOINT_FIELDS, "storage_pool", "network", "domain_type"})
# What the audit log may say about a node (never its credentials).
AUDITED_FIELDS = (
    "name",
    "location_id",
    "driver",
    *ENDPOINT_FIELDS,
    "storage_pool",
    "network",
    "domain_type",
    "cpu_total",
    "memory_total_mib",
    "disk_total_gib",
    "cpu_oversell",
    "memory_oversell",
    "disk_oversell",
    "status",
)


def _need(principal: Principal, permission: Permission) -> None:
    if not principal.can(permission):
        raise MissingPermission()


def _target(node_id: int) -> Target:
    return Target(type="node", id=node_id)


def _snapshot(node: Node) -> dict[str, Any]:
    values = {name: getattr(node, name) for name in AUDITED_FIELDS}
    # Named so the audit log's secret redaction (which hides any "credential…" key) keeps it.
    values["login_set"] = node.credentials_encrypted is not None
    return values


def _unreachable(result: ProbeResult) -> NodeUnreachable:
    return NodeUnreachable(
        f"The node did not answer the connection test: {result.error}",
        details={"error": result.error, "status": result.status.value},
    )


@dataclass(frozen=True)
class NodeDetail:
    node: Node
    location: Location
    usage: NodeUsage
    templates: Sequence[tuple[NodeTemplate, OsTemplate]]

    def read(self) -> NodeDetailRead:
        base = NodeRead.of(self.node, self.usage).model_dump()
        links = [
            NodeTemplateRead(
                template_id=template.id,
                slug=template.slug,
                name=template.name,
                image_ref=link.image_ref,
                present=link.present,
                checked_at=link.checked_at,
                active=template.active,
            )
            for link, template in self.templates
        ]
        return NodeDetailRead(**base, location_slug=self.location.slug, templates=links)


def test_result(result: ProbeResult) -> ConnectionTestResult:
    return ConnectionTestResult(
        ok=result.ok,
        status=result.status,
        error=result.error,
        host=HostInfoRead.of(result.host) if result.host is not None else None,
    )


def _capacity_from(host: HostInfo | None) -> dict[str, int]:
    if host is None:
        return {}
    found = {
        "cpu_total": host.cpus,
        "memory_total_mib": host.memory_bytes // MIB,
        "disk_total_gib": host.storage_total_bytes // GIB,
    }
    return {key: value for key, value in found.items() if value > 0}


async def _private_key(session: AsyncSession, key_id: int | None) -> str | None:
    """The chosen panel key's private half, or a refusal naming the field."""
    if key_id is None:
        return None
    key = await keys_repository.get(session, key_id)
    if key is None:
        raise ValidationFailed("No node SSH key with that id.", details={"field": "ssh_key_id"})
    return private_key_of(session, key)


async def _probe_fields(
    session: AsyncSession, fields: NodeConnectionFields, credentials: NodeCredentials | None
) -> ProbeResult:
    target = connection_for(
        driver=fields.driver,
        endpoint=endpoint_of(fields, await _private_key(session, fields.ssh_key_id)),
        username=credentials.username if credentials else None,
        password=credentials.password.get_secret_value() if credentials and credentials.password else None,
        storage_pool=fields.storage_pool,
        network=fields.network,
        domain_type=fields.domain_type,
        timeouts=timeouts_for(settings_of(session), fields.driver),
    )
    return await probe(target)


class NodeService:
    async def list(self, session: AsyncSession, principal: Principal) -> Sequence[NodeRow]:
        _need(principal, READ)
        rows = await repository.list_rows(session)
        return [NodeRow(node=node, location_name=name, usage=usage) for node, name, usage in rows]

    async def get(self, session: AsyncSession, principal: Principal, node_id: int) -> Node:
        _need(principal, READ)
        node = await repository.get(session, node_id)
        if node is None:
            raise NodeNotFound()
        return node

    async def detail(self, session: AsyncSession, principal: Principal, node_id: int) -> NodeDetail:
        node = await self.get(session, principal, node_id)
        location = await locations_repository.get(session, node.location_id)
        assert location is not None  # a foreign key
        return NodeDetail(
            node=node,
            location=location,
            usage=await repository.usage_of(session, node_id),
            templates=await templates_repository.links_with_templates(session, node_id),
        )

    async def test_connection(
        self, session: AsyncSession, principal: Principal, data: NodeConnectionTest
    ) -> ConnectionTestResult:
        """Ask the node described by ``data`` for its host information. When editing a node, its
        stored credentials stand in for credentials left empty."""
        _need(principal, MANAGE)
        credentials = data.credentials
        if (credentials is None or credentials.is_empty()) and data.node_id is not None:
            node = await self.get(session, principal, data.node_id)
            try:
                credentials = credentials_of(session, node)
            except CredentialsUnreadable as error:
                return ConnectionTestResult(ok=False, status=NodeStatus.UNHEALTHY, error=str(error))
        try:
            return test_result(await _probe_fields(session, data, credentials))
        except NodeKeyUnreadable as error:
            return ConnectionTestResult(ok=False, status=NodeStatus.UNHEALTHY, error=error.message)

    async def _check_location(self, session: AsyncSession, location_id: int) -> None:
        if await locations_repository.get(session, location_id) is None:
            raise UnknownLocation()

    async def create(self, session: AsyncSession, principal: Principal, data: NodeCreate) -> Node:
        _need(principal, MANAGE)
        await self._check_location(session, data.location_id)
        if await repository.get_by_name(session, data.name) is not None:
            raise NodeNameTaken()
        result = await _probe_fields(session, data, data.credentials)
        if not result.ok and not data.allow_unreachable:
            raise _unreachable(result)
        capacity = {
            **_capacity_from(result.host),
            **data.model_dump(include={"cpu_total", "memory_total_mib", "disk_total_gib"}, exclude_none=True),
        }
        if len(capacity) < 3:
            raise CapacityUnknown()
        if result.ok:
            status = NodeStatus.MAINTENANCE if data.maintenance else NodeStatus.ONLINE
        else:
            status = NodeStatus.OFFLINE
        node = Node(
            name=data.name,
            location_id=data.location_id,
            driver=data.driver,
            **data.model_dump(include=set(ENDPOINT_FIELDS)),
            storage_pool=data.storage_pool,
            network=data.network,
            domain_type=data.domain_type,
            cpu_oversell=data.cpu_oversell,
            memory_oversell=data.memory_oversell,
            disk_oversell=data.disk_oversell,
            status=status.value,
            last_checked_at=utcnow(),
            last_error=result.error,
            **capacity,
        )
        try:
            async with session.begin_nested():
                await repository.add(session, node)
        except IntegrityError as error:
            raise NodeNameTaken() from error
        # The ciphertext is bound to the row id, which exists only now.
        store(session, node, data.credentials)
        await session.flush()
        await audit.record(
            session, principal.actor, "node.create", target=_target(node.id), payload=_snapshot(node)
        )
        return node

    async def update(
        self, session: AsyncSession, principal: Principal, node_id: int, data: NodeUpdate
    ) -> Node:
        _need(principal, MANAGE)
        # Read, check and ask the node first; lock the row only to write. Nothing may wait on a
        # hypervisor call behind a node's row (placement and the health check lock it).
        node = await repository.get(session, node_id)
        if node is None:
            raise NodeNotFound()
        changes = {key: value for key, value in data.changes().items() if getattr(node, key) != value}
        new_credentials = data.credentials if data.credentials and not data.credentials.is_empty() else None
        credentials_change = "replaced" if new_credentials else "cleared" if data.clear_credentials else None
        if credentials_change == "cleared" and node.credentials_encrypted is None:
            credentials_change = None
        if not changes and credentials_change is None:
            return node
        if "location_id" in changes:
            await self._check_location(session, changes["location_id"])
            if await repository.has_servers(session, node_id):
                # Servers carry their location too; moving the node would split them from it.
                raise NodeInUse("Servers belong to this node and its location: it cannot move elsewhere.")
        if "name" in changes and await repository.get_by_name(session, changes["name"]) is not None:
            raise NodeNameTaken()
        merged = {name: changes.get(name, getattr(node, name)) for name in CONNECTION_FIELDS}
        try:
            check_endpoint(merged["driver"], merged)
        except ValueError as error:
            raise ValidationFailed(str(error), details={"field": "transport"}) from None
        result = None
        if CONNECTION_FIELDS & set(changes) or credentials_change is not None:
            result = await self._probe_update(session, node, merged, new_credentials, credentials_change)
            if not result.ok and not data.allow_unreachable:
                raise _unreachable(result)
        locked = await repository.get(session, node_id, for_update=True)  # re-read under the lock
        if locked is None:
            raise NodeNotFound()
        node = locked
        if "location_id" in changes and await repository.has_servers(session, node_id):
            raise NodeInUse("Servers belong to this node and its location: it cannot move elsewhere.")
        before = _snapshot(node)
        if result is not None:
            node.last_checked_at = utcnow()
            node.last_error = result.error
            if node.status != NodeStatus.MAINTENANCE:
                node.status = (NodeStatus.ONLINE if result.ok else NodeStatus.OFFLINE).value
        try:
            # Changed inside a savepoint: if a concurrent rename took the name, the savepoint's
            # rollback also undoes these attribute changes, and the transaction stays usable.
            async with session.begin_nested():
                for key, value in changes.items():
                    setattr(node, key, value)
                if credentials_change == "replaced":
                    store(session, node, new_credentials)
                elif credentials_change == "cleared":
                    node.credentials_encrypted = None
                await session.flush()
        except IntegrityError as error:
            raise NodeNameTaken() from error
        after = _snapshot(node)
        payload: dict[str, Any] = {
            "before": {key: before[key] for key in before if before[key] != after[key]},
            "after": {key: after[key] for key in after if before[key] != after[key]},
        }
        if credentials_change is not None:
            payload["login"] = credentials_change  # "replaced" or "cleared", never the values
        await audit.record(session, principal.actor, "node.update", target=_target(node.id), payload=payload)
        return node

    async def _probe_update(
        self,
        session: AsyncSession,
        node: Node,
        fields: dict[str, Any],
        new_credentials: NodeCredentials | None,
        credentials_change: str | None,
    ) -> ProbeResult:
        credentials = new_credentials
        if credentials is None and credentials_change is None:
            try:
                credentials = credentials_of(session, node)
            except CredentialsUnreadable as error:
                return ProbeResult(status=NodeStatus.UNHEALTHY, error=str(error))
        connection = NodeConnectionFields.model_validate({**fields, "credentials": None})
        return await _probe_fields(session, connection, credentials)

    async def set_maintenance(
        self, session: AsyncSession, principal: Principal, node_id: int, enabled: bool
    ) -> Node:
        """Into maintenance at once; out of it only after asking the node how it is (so it comes
        back online, or straight to offline/unhealthy with the reason)."""
        _need(principal, MANAGE)
        # Leaving asks the node first, without the row lock: nothing may wait on a hypervisor call
        # behind a node's row (placement locks the location's nodes); record() locks and re-reads.
        node = await repository.get(session, node_id, for_update=enabled)
        if node is None:
            raise NodeNotFound()
        if enabled:
            if node.status == NodeStatus.MAINTENANCE:
                return node
            previous = node.status
            node.status = NodeStatus.MAINTENANCE.value
            await session.flush()
            await audit.record(
                session,
                principal.actor,
                "node.maintenance.enter",
                target=_target(node.id),
                payload={"from": previous, "to": node.status},
            )
            return node
        if node.status != NodeStatus.MAINTENANCE:
            return node
        result = await health.probe_node(session, node)
        outcome = await health.record(
            session, node_id, result, principal.actor, leave_maintenance=True, action="node.maintenance.leave"
        )
        if outcome is None:  # deleted while we asked it
            raise NodeNotFound()
        return outcome.node

    async def check_now(self, session: AsyncSession, principal: Principal, node_id: int) -> CheckOutcome:
        """The health check, run in the request: the operator sees the answer at once."""
        _need(principal, MANAGE)
        outcome = await health.check(session, node_id, principal.actor)
        if outcome is None:
            raise NodeNotFound()
        return outcome

    async def delete(self, session: AsyncSession, principal: Principal, node_id: int) -> None:
        """Delete a node no server ever used; its template links and drift reports go with it."""
        _need(principal, MANAGE)
        node = await repository.get(session, node_id, for_update=True)
        if node is None:
            raise NodeNotFound()
        if await repository.has_servers(session, node_id):
            raise NodeInUse()
        snapshot = _snapshot(node)
        try:
            async with session.begin_nested():
                await repository.delete(session, node)
        except IntegrityError as error:
            raise NodeInUse() from error
        await audit.record(session, principal.actor, "node.delete", target=_target(node_id), payload=snapshot)


nodes = NodeService()
