"""SQL for OS templates and their presence on nodes. Every value is a bound parameter."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.locations import Location
from corral.models.nodes import Node, NodeStatus, NodeTemplate, OsTemplate
from corral.models.servers import Server

_ORDER = (OsTemplate.os_family, OsTemplate.os_version, OsTemplate.name, OsTemplate.id)


async def get(session: AsyncSession, template_id: int, *, for_update: bool = False) -> OsTemplate | None:
    statement = select(OsTemplate).where(OsTemplate.id == template_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


async def get_by_slug(session: AsyncSession, slug: str) -> OsTemplate | None:
    return (await session.scalars(select(OsTemplate).where(OsTemplate.slug == slug))).one_or_none()


async def list_with_counts(session: AsyncSession) -> Sequence[tuple[OsTemplate, int, int]]:
    """Every template with (nodes where its image is present, nodes it is listed on): one query."""
    counts = (
        select(
            NodeTemplate.template_id,
            func.count().filter(NodeTemplate.present.is_(True)).label("present"),
            func.count().label("listed"),
        )
        .group_by(NodeTemplate.template_id)
        .subquery("counts")
    )
    statement = (
        select(OsTemplate, func.coalesce(counts.c.present, 0), func.coalesce(counts.c.listed, 0))
        .outerjoin(counts, counts.c.template_id == OsTemplate.id)
        .order_by(OsTemplate.active.desc(), *_ORDER)
    )
    return [(row[0], int(row[1]), int(row[2])) for row in (await session.execute(statement)).all()]


async def is_used(session: AsyncSession, template_id: int) -> bool:
    return bool(
        (await session.execute(select(exists().where(Server.template_id == template_id)))).scalar_one()
    )


async def add(session: AsyncSession, template: OsTemplate) -> OsTemplate:
    session.add(template)
    await session.flush()
    return template


async def delete(session: AsyncSession, template: OsTemplate) -> None:
    await session.delete(template)
    await session.flush()


# --- presence on nodes ----------------------------------------------------------------------------


async def links_for_node(session: AsyncSession, node_id: int) -> Sequence[NodeTemplate]:
    statement = select(NodeTemplate).where(NodeTemplate.node_id == node_id).order_by(NodeTemplate.id)
    return (await session.scalars(statement)).all()


async def links_with_templates(
    session: AsyncSession, node_id: int
) -> Sequence[tuple[NodeTemplate, OsTemplate]]:
    statement = (
        select(NodeTemplate, OsTemplate)
        .join(OsTemplate, OsTemplate.id == NodeTemplate.template_id)
        .where(NodeTemplate.node_id == node_id)
        .order_by(*_ORDER)
    )
    return [(link, template) for link, template in (await session.execute(statement)).all()]


async def links_with_nodes(session: AsyncSession, template_id: int) -> Sequence[tuple[NodeTemplate, Node]]:
    statement = (
        select(NodeTemplate, Node)
        .join(Node, Node.id == NodeTemplate.node_id)
        .where(NodeTemplate.template_id == template_id)
        .order_by(Node.name)
    )
    return [(link, node) for link, node in (await session.execute(statement)).all()]


async def get_link(session: AsyncSession, node_id: int, template_id: int) -> NodeTemplate | None:
    statement = select(NodeTemplate).where(
        NodeTemplate.node_id == node_id, NodeTemplate.template_id == template_id
    )
    return (await session.scalars(statement)).one_or_none()


async def add_link(session: AsyncSession, link: NodeTemplate) -> NodeTemplate:
    session.add(link)
    await session.flush()
    return link


async def delete_link(session: AsyncSession, link: NodeTemplate) -> None:
    await session.delete(link)
    await session.flush()


# --- what customers may pick ----------------------------------------------------------------------


async def offered_on(session: AsyncSession, node_id: int) -> Sequence[OsTemplate]:
    """Active templates whose image is present on the node, if the node is online."""
    statement = (
        select(OsTemplate)
        .where(
            OsTemplate.active.is_(True),
            exists().where(
                NodeTemplate.template_id == OsTemplate.id,
                NodeTemplate.present.is_(True),
                NodeTemplate.node_id == node_id,
                Node.id == NodeTemplate.node_id,
                Node.status == NodeStatus.ONLINE.value,
            ),
        )
        .order_by(*_ORDER)
    )
    return (await session.scalars(statement)).all()


async def offered_in_location(session: AsyncSession, location_id: int) -> Sequence[OsTemplate]:
    """Active templates present on at least one online node of an active location."""
    statement = (
        select(OsTemplate)
        .where(
            OsTemplate.active.is_(True),
            exists().where(
                NodeTemplate.template_id == OsTemplate.id,
                NodeTemplate.present.is_(True),
                Node.id == NodeTemplate.node_id,
                Node.status == NodeStatus.ONLINE.value,
                Node.location_id == location_id,
                Location.id == Node.location_id,
                Location.active.is_(True),
            ),
        )
        .order_by(*_ORDER)
    )
    return (await session.scalars(statement)).all()
