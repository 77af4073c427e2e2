"""Reaching the driver of the node a server (or reconcile job) works on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from corral.drivers.base import HypervisorDriver
from corral.jobs.errors import PermanentJobError
from corral.models.nodes import Node
from corral.nodes import probe
from corral.nodes.credentials import credentials_of
from corral.nodes.health import target_of


@asynccontextmanager
async def open_driver(session: AsyncSession, node_id: int | None) -> AsyncIterator[HypervisorDriver]:
    """The node's driver with its credentials decrypted, closed when the block ends."""
    node = await session.get(Node, node_id) if node_id is not None else None
    if node is None:
        raise PermanentJobError("the server is not placed on a node")
    async with probe.open_driver(target_of(node, credentials_of(session, node))) as driver:
        yield driver
