"""The node health check: ask the node, record what it said, move its status, check its templates.

Status rules (maintenance is the operator's and is never changed here):

    answered                          online / offline / unhealthy -> online
    unreachable (transient, timeout)  online / unhealthy / offline -> offline
    refused us, or any other error    online / offline / unhealthy -> unhealthy

``last_checked_at`` and ``last_error`` are written on every check; an audit event only when the
status changes. The same check serves the periodic job, "Check now" and leaving maintenance.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.db.session import settings_of
from corral.drivers.base import DriverTimeouts, ImageRef
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.models.nodes import Node, NodeStatus
from corral.node_keys import repository as keys_repository
from corral.node_keys.errors import NodeKeyUnreadable
from corral.node_keys.service import private_key_of
from corral.nodes import repository
from corral.nodes.credentials import CredentialsUnreadable, credentials_of
from corral.nodes.errors import ConnectionNotSet, EncryptionNotConfigured
from corral.nodes.probe import ProbeResult, connection_for, probe, timeouts_for
from corral.nodes.probe import Target as ProbeTarget
from corral.nodes.schemas import NodeCredentials, endpoint_of
from corral.templates import repository as templates_repository


@dataclass(frozen=True)
class CheckOutcome:
    node: Node
    previous_status: str
    result: ProbeResult

    @property
    def changed(self) -> bool:
        return self.node.status != self.previous_status


def target_of(
    node: Node,
    credentials: NodeCredentials | None,
    private_key: str | None,
    timeouts: DriverTimeouts | None = None,
) -> ProbeTarget:
    """How to reach ``node`` with ``credentials`` and its SSH key's ``private_key`` (decrypted),
    its calls bounded by ``timeouts``. Raises ``ConnectionNotSet`` for a node whose connection must
    be entered again."""
    if node.transport is None:
        raise ConnectionNotSet()
    return connection_for(
        driver=node.driver,
        endpoint=endpoint_of(node, private_key),
        username=credentials.username if credentials else None,
        password=credentials.password.get_secret_value() if credentials and credentials.password else None,
        storage_pool=node.storage_pool,
        network=node.network,
        domain_type=node.domain_type,
        options=node.driver_options,
        timeouts=timeouts,
    )


async def private_key_for(session: AsyncSession, node: Node) -> str | None:
    """The private half of the panel key ``node`` logs in with (None without one)."""
    if node.ssh_key_id is None:
        return None
    key = await keys_repository.get(session, node.ssh_key_id)
    if key is None:  # the foreign key forbids it; kept for a row read mid-change
        raise NodeKeyUnreadable("The node's SSH key no longer exists: choose another one.")
    return private_key_of(session, key)


async def stored_target(session: AsyncSession, node: Node) -> ProbeTarget:
    """How to reach a stored node with its own credentials and key, decrypted."""
    timeouts = timeouts_for(settings_of(session), node.driver)
    return target_of(node, credentials_of(session, node), await private_key_for(session, node), timeouts)


async def probe_node(session: AsyncSession, node: Node, *, with_templates: bool = True) -> ProbeResult:
    """Probe a stored node (its own credentials), checking the template images listed on it."""
    try:
        target = await stored_target(session, node)
    except (CredentialsUnreadable, EncryptionNotConfigured, NodeKeyUnreadable, ConnectionNotSet) as error:
        # It may well answer, but not to us: that is a node needing attention, not an outage.
        message = str(error) if isinstance(error, CredentialsUnreadable) else error.message
        return ProbeResult(status=NodeStatus.UNHEALTHY, error=message)
    images: list[ImageRef] = []
    if with_templates:
        links = await templates_repository.links_for_node(session, node.id)
        images = [ImageRef(volume=link.image_ref) for link in links]
    return await probe(target, images=images)


async def record(
    session: AsyncSession,
    node_id: int,
    result: ProbeResult,
    actor: Actor,
    *,
    leave_maintenance: bool = False,
    action: str = "node.status.change",
) -> CheckOutcome | None:
    """Write ``result`` to the node (locked, re-read: the probe may have taken a while) and its
    template links; audit a status change as ``action``. A node in maintenance keeps that status
    unless ``leave_maintenance`` (the operator bringing it back)."""
    node = await repository.get(session, node_id, for_update=True)
    if node is None:
        return None  # deleted while we were asking it
    previous = node.status
    now = utcnow()
    node.last_checked_at = now
    node.last_error = result.error
    if previous != NodeStatus.MAINTENANCE or leave_maintenance:
        node.status = result.status
    if result.images is not None:
        for link in await templates_repository.links_for_node(session, node_id):
            if link.image_ref in result.images:
                link.present = result.images[link.image_ref]
                link.checked_at = now
    await session.flush()
    outcome = CheckOutcome(node=node, previous_status=previous, result=result)
    if outcome.changed:
        await audit.record(
            session,
            actor,
            action,
            target=Target(type="node", id=node.id),
            payload={"from": previous, "to": node.status, "error": result.error},
        )
    return outcome


async def check(session: AsyncSession, node_id: int, actor: Actor) -> CheckOutcome | None:
    """One health check of one node; None if the node no longer exists."""
    node = await repository.get(session, node_id)
    if node is None:
        return None
    result = await probe_node(session, node)
    return await record(session, node_id, result, actor)
