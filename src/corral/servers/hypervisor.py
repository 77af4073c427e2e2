"""Reaching the driver of the node a server (or reconcile job) works on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from corral.db.session import transaction
from corral.drivers.base import DriverTimeout, HypervisorDriver
from corral.jobs.errors import PermanentJobError
from corral.kit.actors import Actor
from corral.kit.logging import get_logger
from corral.models.nodes import Node
from corral.node_keys.errors import NodeKeyUnreadable
from corral.nodes import health, probe
from corral.nodes.errors import ConnectionNotSet
from corral.nodes.health import stored_target

log = get_logger("corral.servers.hypervisor")
JOB_ACTOR = Actor.system("server.jobs")


@asynccontextmanager
async def open_driver(session: AsyncSession, node_id: int | None) -> AsyncIterator[HypervisorDriver]:
    """The node's driver with its credentials decrypted, closed when the block ends.

    A call that passes its deadline (``DriverTimeout``) also marks the node down, at once and in a
    transaction of its own (the job's is rolled back): placement stops choosing it and staff see why,
    without waiting for the next health check, which brings it back when it answers again.
    """
    node = await session.get(Node, node_id) if node_id is not None else None
    if node is None:
        raise PermanentJobError("the server is not placed on a node")
    try:
        target = await stored_target(session, node)
    except (ConnectionNotSet, NodeKeyUnreadable) as error:  # an operator must act: retrying cannot help
        raise PermanentJobError(error.message) from error
    try:
        async with probe.open_driver(target) as driver:
            yield driver
    except DriverTimeout as error:
        await _mark_unanswered(session, node.id, error)
        raise


async def _mark_unanswered(session: AsyncSession, node_id: int, error: DriverTimeout) -> None:
    factory = async_sessionmaker(session.bind, expire_on_commit=False, info=session.info)
    try:
        async with transaction(factory) as side:
            await health.record(side, node_id, probe.ProbeResult.failed(error), JOB_ACTOR)
    except Exception as failure:  # the job's own error is the one to report; this is a bonus
        log.warning("node_mark_down_failed", node_id=node_id, error=type(failure).__name__)
