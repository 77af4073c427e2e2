"""SQL for seeding and restoring the demo fleet."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.ipam import IpPool
from corral.models.locations import Location
from corral.models.nodes import Node, NodeTemplate, OsTemplate
from corral.models.servers import Server, ServerStatus


async def location_by_slug(session: AsyncSession, slug: str) -> Location | None:
    return await session.scalar(select(Location).where(Location.slug == slug))


async def node_by_name(session: AsyncSession, name: str, *, transport: str | None = None) -> Node | None:
    statement = select(Node).where(Node.name == name)
    if transport is not None:
        statement = statement.where(Node.transport == transport)
    return await session.scalar(statement)


async def template_by_slug(session: AsyncSession, slug: str) -> OsTemplate | None:
    return await session.scalar(select(OsTemplate).where(OsTemplate.slug == slug))


async def node_template(session: AsyncSession, node_id: int, template_id: int) -> NodeTemplate | None:
    return await session.scalar(
        select(NodeTemplate).where(NodeTemplate.node_id == node_id, NodeTemplate.template_id == template_id)
    )


async def pool_by_name(session: AsyncSession, name: str) -> IpPool | None:
    return await session.scalar(select(IpPool).where(IpPool.name == name))


async def running_servers_on(session: AsyncSession, node_id: int) -> Sequence[Server]:
    """Servers the panel says have an instance on the node."""
    statement = select(Server).where(
        Server.node_id == node_id,
        Server.status.in_((ServerStatus.ACTIVE.value, ServerStatus.SUSPENDED.value)),
    )
    return (await session.execute(statement)).scalars().all()
