"""SQL for node SSH keys. Every value reaches PostgreSQL as a bound parameter."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.nodes import Node, NodeSshKey


async def get(session: AsyncSession, key_id: int, *, for_update: bool = False) -> NodeSshKey | None:
    statement = select(NodeSshKey).where(NodeSshKey.id == key_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


async def get_by_name(session: AsyncSession, name: str) -> NodeSshKey | None:
    return (await session.scalars(select(NodeSshKey).where(NodeSshKey.name == name))).one_or_none()


async def list_with_use(session: AsyncSession) -> Sequence[tuple[NodeSshKey, int]]:
    """Every key with the number of nodes that log in with it, by name."""
    used = (
        select(Node.ssh_key_id, func.count().label("nodes"))
        .where(Node.ssh_key_id.is_not(None))
        .group_by(Node.ssh_key_id)
        .subquery("key_use")
    )
    statement = (
        select(NodeSshKey, func.coalesce(used.c.nodes, 0))
        .outerjoin(used, used.c.ssh_key_id == NodeSshKey.id)
        .order_by(NodeSshKey.name, NodeSshKey.id)
    )
    return [(key, int(count)) for key, count in (await session.execute(statement)).all()]


async def is_used(session: AsyncSession, key_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(Node.ssh_key_id == key_id))))


async def all_for_update(session: AsyncSession) -> Sequence[NodeSshKey]:
    return (await session.scalars(select(NodeSshKey).order_by(NodeSshKey.id).with_for_update())).all()


async def add(session: AsyncSession, key: NodeSshKey) -> NodeSshKey:
    session.add(key)
    await session.flush()
    return key


async def delete(session: AsyncSession, key: NodeSshKey) -> None:
    await session.delete(key)
    await session.flush()
