"""Reaching the driver of the node a server (or reconcile job) works on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from corral.drivers.base import HypervisorDriver
from corral.jobs.errors import PermanentJobError
from corral.models.nodes import Node
from corral.node_keys.errors import NodeKeyUnreadable
from corral.nodes import probe
from corral.nodes.errors import ConnectionNotSet
from corral.nodes.health import stored_target


@asynccontextmanager
async def open_driver(session: AsyncSession, node_id: int | None) -> AsyncIterator[HypervisorDriver]:
    """The node's driver with its credentials decrypted, closed when the block ends."""
    node = await session.get(Node, node_id) if node_id is not None else None
    if node is None:
        raise PermanentJobError("the server is not placed on a node")
    try:
        target = await stored_target(session, node)
    except (ConnectionNotSet, NodeKeyUnreadable) as error:  # an operator must act: retrying cannot help
        raise PermanentJobError(error.message) from error
    async with probe.open_driver(target) as driver:
        yield driver
