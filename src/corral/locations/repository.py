"""SQL for locations. Every value reaches PostgreSQL as a bound parameter."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.ipam import IpPool
from corral.models.locations import Location
from corral.models.nodes import Node
from corral.models.servers import Server


async def get(session: AsyncSession, location_id: int, *, for_update: bool = False) -> Location | None:
    statement = select(Location).where(Location.id == location_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


async def get_by_slug(session: AsyncSession, slug: str) -> Location | None:
    return (await session.scalars(select(Location).where(Location.slug == slug))).one_or_none()


async def list_with_counts(session: AsyncSession) -> Sequence[tuple[Location, int]]:
    """Every location with its node count, in one query (active first, then by name)."""
    nodes = (
        select(Node.location_id, func.count().label("nodes"))
        .group_by(Node.location_id)
        .subquery("node_counts")
    )
    statement = (
        select(Location, func.coalesce(nodes.c.nodes, 0))
        .outerjoin(nodes, nodes.c.location_id == Location.id)
        .order_by(Location.active.desc(), Location.name, Location.id)
    )
    return [(location, int(count)) for location, count in (await session.execute(statement)).all()]


async def list_all(session: AsyncSession, *, active_only: bool = False) -> Sequence[Location]:
    statement = select(Location).order_by(Location.name, Location.id)
    if active_only:
        statement = statement.where(Location.active.is_(True))
    return (await session.scalars(statement)).all()


async def is_used(session: AsyncSession, location_id: int) -> bool:
    """Whether any node, server or IP pool refers to the location (so it cannot be deleted)."""
    statement = select(
        exists().where(Node.location_id == location_id)
        | exists().where(Server.location_id == location_id)
        | exists().where(IpPool.location_id == location_id)
    )
    return bool((await session.execute(statement)).scalar_one())


async def add(session: AsyncSession, location: Location) -> Location:
    session.add(location)
    await session.flush()
    return location


async def delete(session: AsyncSession, location: Location) -> None:
    await session.delete(location)
    await session.flush()
