"""SQL for servers, node usage (placement) and drift reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.jobs import repository as jobs_repository
from corral.kit.clock import utcnow
from corral.models.ipam import IpAddress
from corral.models.locations import Location
from corral.models.nodes import DriftReport, Node, NodeStatus, NodeTemplate, OsTemplate
from corral.models.plans import Plan
from corral.models.servers import Server, ServerStatus
from corral.models.users import User

# Servers in these states hold no resources on their node.
RELEASED_STATUSES = (ServerStatus.DELETED.value,)
# Two-key advisory lock (int4, int4), apart from the one-key locks of the audit log and job queue:
# "SRVO" and a hash of the customer's id, so one person's orders are taken one at a time.
_ORDER_LOCK = 0x5352564F


async def online_nodes_locked(session: AsyncSession, location_id: int) -> Sequence[Node]:
    """The location's online nodes, row-locked in id order (a fixed order cannot deadlock)."""
    statement = (
        select(Node)
        .where(Node.location_id == location_id, Node.status == NodeStatus.ONLINE.value)
        .order_by(Node.id)
        .with_for_update()
    )
    return (await session.execute(statement)).scalars().all()


async def usage_by_node(session: AsyncSession, node_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """(vcpus, memory MiB, disk GiB) held by each node's servers."""
    if not node_ids:
        return {}
    rows = await session.execute(
        select(
            Server.node_id,
            func.coalesce(func.sum(Server.vcpus), 0),
            func.coalesce(func.sum(Server.memory_mib), 0),
            func.coalesce(func.sum(Server.disk_gib), 0),
        )
        .where(Server.node_id.in_(node_ids), Server.status.not_in(RELEASED_STATUSES))
        .group_by(Server.node_id)
    )
    return {int(row[0] or 0): (int(row[1]), int(row[2]), int(row[3])) for row in rows}


async def servers_placed_on(session: AsyncSession, node_id: int) -> Sequence[Server]:
    """Servers that have (or are getting) an instance on the node."""
    statement = select(Server).where(
        Server.node_id == node_id,
        Server.status.not_in((ServerStatus.DELETED.value, ServerStatus.AWAITING_SETUP.value)),
    )
    return (await session.execute(statement)).scalars().all()


_UPSERT_DRIFT = text(
    """
    INSERT INTO drift_reports (node_id, kind, external_id, server_id, detail)
    VALUES (:node_id, :kind, :external_id, :server_id, :detail)
    ON CONFLICT (node_id, kind, external_id) WHERE resolved_at IS NULL
    DO UPDATE SET last_seen_at = now(), detail = EXCLUDED.detail
    RETURNING id, (xmax = 0) AS created
    """
)


async def upsert_drift(
    session: AsyncSession, *, node_id: int, kind: str, external_id: str, server_id: int | None, detail: str
) -> tuple[int, bool]:
    """Open (or refresh) the one report for this disagreement; returns (id, newly created)."""
    row = (
        await session.execute(
            _UPSERT_DRIFT,
            {
                "node_id": node_id,
                "kind": kind,
                "external_id": external_id,
                "server_id": server_id,
                "detail": detail,
            },
        )
    ).one()
    return int(row.id), bool(row.created)


async def open_drift_on(session: AsyncSession, node_id: int) -> Sequence[DriftReport]:
    statement = select(DriftReport).where(DriftReport.node_id == node_id, DriftReport.resolved_at.is_(None))
    return (await session.execute(statement)).scalars().all()


async def resolve_drift(session: AsyncSession, report_ids: Sequence[int]) -> None:
    if report_ids:
        await session.execute(
            update(DriftReport).where(DriftReport.id.in_(report_ids)).values(resolved_at=utcnow())
        )


async def open_drift(session: AsyncSession, *, limit: int = 200) -> Sequence[DriftReport]:
    statement = (
        select(DriftReport)
        .where(DriftReport.resolved_at.is_(None))
        .order_by(DriftReport.first_seen_at.desc())
        .limit(limit)
    )
    return (await session.execute(statement)).scalars().all()


async def server_for_update(
    session: AsyncSession, server_id: int, *, owner_id: int | None = None
) -> Server | None:
    """The server row, locked; with ``owner_id``, only if it is that customer's and not deleted."""
    statement = select(Server).where(Server.id == server_id).with_for_update()
    if owner_id is not None:
        statement = statement.where(Server.user_id == owner_id, Server.status != ServerStatus.DELETED.value)
    return (await session.execute(statement)).scalar_one_or_none()


# --- a customer's own servers (ownership is part of every query: another's server is "not found") ---


async def owned(
    session: AsyncSession, owner_id: int, server_id: int, *, with_deleted: bool = False
) -> Server | None:
    statement = select(Server).where(Server.id == server_id, Server.user_id == owner_id)
    if not with_deleted:
        statement = statement.where(Server.status != ServerStatus.DELETED.value)
    return (await session.execute(statement)).scalar_one_or_none()


async def live_marks(session: AsyncSession, owner_id: int, server_id: int) -> tuple[Any, ...] | None:
    """Everything the server page's live block is drawn from that can change, in one query: the
    server's own state and the newest job event and log line under its lock. None when the
    customer owns no such server (deleted ones included, as the live block shows them)."""
    newest_event, newest_log = jobs_repository.activity_marks(f"server:{server_id}")
    statement = select(
        Server.status,
        Server.power_state,
        Server.status_detail,
        Server.status_changed_at,
        Server.suspended_at,
        Server.suspended_reason,
        Server.cancel_mode,
        Server.cancel_due_at,
        Server.deleted_at,
        Server.name,
        Server.hostname,
        Server.external_id,
        Server.template_id,
        newest_event,
        newest_log,
    ).where(Server.id == server_id, Server.user_id == owner_id)
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else tuple(row)


async def owned_list(session: AsyncSession, owner_id: int) -> Sequence[Server]:
    statement = (
        select(Server)
        .where(Server.user_id == owner_id, Server.status != ServerStatus.DELETED.value)
        .order_by(Server.created_at.desc(), Server.id.desc())
    )
    return (await session.execute(statement)).scalars().all()


async def lock_orders_of(session: AsyncSession, owner_id: int) -> None:
    """Held until the transaction ends: two orders at once cannot both pass the server limit, and a
    repeated order waits for the first to commit and then finds it."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:lock, hashtext(:owner))"),
        {"lock": _ORDER_LOCK, "owner": str(owner_id)},
    )


async def count_owned(session: AsyncSession, owner_id: int) -> int:
    statement = select(func.count()).where(
        Server.user_id == owner_id, Server.status != ServerStatus.DELETED.value
    )
    return int(await session.scalar(statement) or 0)


async def ordered_with_key(session: AsyncSession, owner_id: int, order_key: str) -> int | None:
    """The server an earlier order with this key created, if any."""
    statement = select(Server.id).where(Server.user_id == owner_id, Server.order_key == order_key)
    found = await session.scalar(statement)
    return int(found) if found is not None else None


async def names_for(
    session: AsyncSession, servers: Sequence[Server]
) -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    """Display names of the servers' plans, locations and templates ({id: name} each), in three
    queries whatever the number of servers."""
    plan_ids = {s.plan_id for s in servers if s.plan_id is not None}
    location_ids = {s.location_id for s in servers}
    template_ids = {s.template_id for s in servers if s.template_id is not None}
    plans: dict[int, str] = {}
    locations: dict[int, str] = {}
    templates: dict[int, str] = {}
    if plan_ids:
        rows = await session.execute(select(Plan.id, Plan.name).where(Plan.id.in_(plan_ids)))
        plans = {int(row[0]): str(row[1]) for row in rows}
    if location_ids:
        rows = await session.execute(select(Location.id, Location.name).where(Location.id.in_(location_ids)))
        locations = {int(row[0]): str(row[1]) for row in rows}
    if template_ids:
        rows = await session.execute(
            select(OsTemplate.id, OsTemplate.name).where(OsTemplate.id.in_(template_ids))
        )
        templates = {int(row[0]): str(row[1]) for row in rows}
    return plans, locations, templates


async def addresses_by_server(session: AsyncSession, server_ids: Sequence[int]) -> dict[int, list[str]]:
    """Each server's addresses as text, IPv4 first (one query for a whole list page)."""
    if not server_ids:
        return {}
    rows = await session.execute(
        select(IpAddress.server_id, IpAddress.address)
        .where(IpAddress.server_id.in_(server_ids))
        .order_by(func.family(IpAddress.address), IpAddress.address)
    )
    found: dict[int, list[str]] = {}
    for server_id, address in rows:
        if server_id is not None:
            found.setdefault(int(server_id), []).append(str(address))
    return found


async def template_on_node(session: AsyncSession, template_id: int, node_id: int) -> NodeTemplate | None:
    """The template's image on that node, when the template is active and the image present."""
    statement = (
        select(NodeTemplate)
        .join(OsTemplate, OsTemplate.id == NodeTemplate.template_id)
        .where(
            NodeTemplate.template_id == template_id,
            NodeTemplate.node_id == node_id,
            NodeTemplate.present.is_(True),
            OsTemplate.active.is_(True),
        )
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def node_ids_to_reconcile(session: AsyncSession) -> Sequence[int]:
    """Nodes worth listing: reachable ones (an offline node has nothing to tell)."""
    statement = select(Node.id).where(Node.status != NodeStatus.OFFLINE.value).order_by(Node.id)
    return (await session.execute(statement)).scalars().all()


async def node_names(session: AsyncSession, node_ids: set[int]) -> dict[int, str]:
    if not node_ids:
        return {}
    rows = await session.execute(select(Node.id, Node.name).where(Node.id.in_(node_ids)))
    return {int(row[0]): str(row[1]) for row in rows}


async def unfinished_to_remind(
    session: AsyncSession, ordered_before: datetime, *, limit: int
) -> Sequence[tuple[Server, str, str]]:
    """Orders still awaiting setup, made before ``ordered_before``, whose owner has not been told
    they will be released, oldest first, with the owner's email and name. Row-locked with ``SKIP
    LOCKED``: an overlapping run (or the owner finishing the setup right now) has the others."""
    statement = (
        select(Server, User.email, User.name)
        .join(User, User.id == Server.user_id)
        .where(
            Server.status == ServerStatus.AWAITING_SETUP.value,
            Server.created_at <= ordered_before,
            Server.setup_reminder_sent_at.is_(None),
        )
        .order_by(Server.created_at, Server.id)
        .limit(limit)
        .with_for_update(of=Server, skip_locked=True)
    )
    rows = await session.execute(statement)
    return [(row[0], str(row[1]), str(row[2] or "")) for row in rows]


async def unfinished_to_release(
    session: AsyncSession, ordered_before: datetime, reminded_before: datetime, *, limit: int
) -> Sequence[Server]:
    """Orders still awaiting setup, made before ``ordered_before``, whose owner was told before
    ``reminded_before``; oldest first, row-locked with ``SKIP LOCKED``."""
    statement = (
        select(Server)
        .where(
            Server.status == ServerStatus.AWAITING_SETUP.value,
            Server.created_at <= ordered_before,
            Server.setup_reminder_sent_at <= reminded_before,
        )
        .order_by(Server.created_at, Server.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(statement)).scalars().all()
