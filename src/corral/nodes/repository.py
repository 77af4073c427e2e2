"""SQL for nodes. Every value reaches PostgreSQL as a bound parameter."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.locations import Location
from corral.models.nodes import Node
from corral.models.servers import Server, ServerStatus
from corral.nodes.schemas import NodeUsage


async def get(session: AsyncSession, node_id: int, *, for_update: bool = False) -> Node | None:
    statement = select(Node).where(Node.id == node_id)
    if for_update:
        # Re-read under the lock even if the session already holds the row: a health check that
        # took seconds must decide on the status as it is now, not as it was when it started.
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return (await session.scalars(statement)).one_or_none()


async def get_by_name(session: AsyncSession, name: str) -> Node | None:
    return (await session.scalars(select(Node).where(Node.name == name))).one_or_none()


def _usage() -> Select[int | None, int, int, int, int]:
    """Per node: servers counted against its capacity (every one not yet deleted)."""
    return (
        select(
            Server.node_id,
            func.count().label("servers"),
            func.coalesce(func.sum(Server.vcpus), 0).label("vcpus"),
            func.coalesce(func.sum(Server.memory_mib), 0).label("memory_mib"),
            func.coalesce(func.sum(Server.disk_gib), 0).label("disk_gib"),
        )
        .where(Server.node_id.is_not(None), Server.status != ServerStatus.DELETED.value)
        .group_by(Server.node_id)
    )


async def list_rows(session: AsyncSession) -> Sequence[tuple[Node, str, NodeUsage]]:
    """Every node with its location's name and usage: one query whatever the count."""
    usage = _usage().subquery("usage")
    statement = (
        select(
            Node,
            Location.name,
            func.coalesce(usage.c.servers, 0),
            func.coalesce(usage.c.vcpus, 0),
            func.coalesce(usage.c.memory_mib, 0),
            func.coalesce(usage.c.disk_gib, 0),
        )
        .join(Location, Location.id == Node.location_id)
        .outerjoin(usage, usage.c.node_id == Node.id)
        .order_by(Location.name, Node.name)
    )
    rows = []
    for node, location_name, servers, vcpus, memory, disk in (await session.execute(statement)).all():
        rows.append(
            (
                node,
                str(location_name),
                NodeUsage(servers=servers, vcpus=vcpus, memory_mib=memory, disk_gib=disk),
            )
        )
    return rows


async def usage_of(session: AsyncSession, node_id: int) -> NodeUsage:
    row = (await session.execute(_usage().where(Server.node_id == node_id))).one_or_none()
    if row is None:
        return NodeUsage()
    return NodeUsage(servers=row.servers, vcpus=row.vcpus, memory_mib=row.memory_mib, disk_gib=row.disk_gib)


async def ids(session: AsyncSession) -> Sequence[int]:
    return (await session.scalars(select(Node.id).order_by(Node.id))).all()


async def with_credentials_for_update(session: AsyncSession) -> Sequence[Node]:
    statement = (
        select(Node)
        .where(Node.credentials_encrypted.is_not(None))
        .order_by(Node.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).all()


async def has_servers(session: AsyncSession, node_id: int) -> bool:
    """Any server row at all (deleted ones included: they keep a foreign key to the node)."""
    return bool((await session.execute(select(exists().where(Server.node_id == node_id)))).scalar_one())


async def add(session: AsyncSession, node: Node) -> Node:
    session.add(node)
    await session.flush()
    return node


async def delete(session: AsyncSession, node: Node) -> None:
    await session.delete(node)
    await session.flush()
