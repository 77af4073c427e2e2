"""SQL for plans. Every value reaches PostgreSQL as a bound parameter."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.locations import Location
from corral.models.plans import Plan, PlanLocation
from corral.models.servers import Server


async def get(session: AsyncSession, plan_id: int, *, for_update: bool = False) -> Plan | None:
    statement = select(Plan).where(Plan.id == plan_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


async def get_by_slug(session: AsyncSession, slug: str) -> Plan | None:
    return (await session.scalars(select(Plan).where(Plan.slug == slug))).one_or_none()


async def list_with_counts(
    session: AsyncSession, *, plan_id: int | None = None
) -> Sequence[tuple[Plan, int]]:
    """Plans with how many servers use each, in one query: active first, then by price."""
    used = select(Server.plan_id, func.count().label("servers")).group_by(Server.plan_id).subquery("used")
    statement = (
        select(Plan, func.coalesce(used.c.servers, 0))
        .outerjoin(used, used.c.plan_id == Plan.id)
        .order_by(Plan.active.desc(), Plan.currency, Plan.price_minor, Plan.name, Plan.id)
    )
    if plan_id is not None:
        statement = statement.where(Plan.id == plan_id)
    return [(plan, int(count)) for plan, count in (await session.execute(statement)).all()]


async def locations_of(
    session: AsyncSession, plan_ids: Collection[int], *, active_only: bool = False
) -> dict[int, list[Location]]:
    """The locations offering each plan, by name, in one query (no N+1 on the list pages)."""
    if not plan_ids:
        return {}
    statement = (
        select(PlanLocation.plan_id, Location)
        .join(Location, Location.id == PlanLocation.location_id)
        .where(PlanLocation.plan_id.in_(plan_ids))
        .order_by(Location.name, Location.id)
    )
    if active_only:
        statement = statement.where(Location.active.is_(True))
    found: dict[int, list[Location]] = {plan_id: [] for plan_id in plan_ids}
    for plan_id, location in (await session.execute(statement)).all():
        found[plan_id].append(location)
    return found


async def orderable(session: AsyncSession) -> Sequence[tuple[Plan, Location]]:
    """Active plans paired with each active location offering them, cheapest plan first."""
    statement = (
        select(Plan, Location)
        .join(PlanLocation, PlanLocation.plan_id == Plan.id)
        .join(Location, Location.id == PlanLocation.location_id)
        .where(Plan.active.is_(True), Location.active.is_(True))
        .order_by(Plan.price_minor, Plan.name, Plan.id, Location.name, Location.id)
    )
    return [(plan, location) for plan, location in (await session.execute(statement)).all()]


async def offered(session: AsyncSession, plan_id: int, location_id: int) -> Plan | None:
    """The plan if it is active and offered at that location, and the location is active; locked
    against deletion until the caller's transaction ends."""
    statement = (
        select(Plan)
        .join(PlanLocation, PlanLocation.plan_id == Plan.id)
        .join(Location, Location.id == PlanLocation.location_id)
        .where(
            Plan.id == plan_id,
            Location.id == location_id,
            Plan.active.is_(True),
            Location.active.is_(True),
        )
        # FOR SHARE on the plan row: a concurrent delete waits for the order's transaction, then
        # sees the new server and refuses (409) instead of the order failing on the foreign key.
        .with_for_update(read=True, of=Plan)
    )
    return (await session.scalars(statement)).one_or_none()


async def all_locations(session: AsyncSession) -> Sequence[Location]:
    """Every location, active first, for the "offered in" checkboxes."""
    statement = select(Location).order_by(Location.active.desc(), Location.name, Location.id)
    return (await session.scalars(statement)).all()


async def existing_location_ids(session: AsyncSession, location_ids: Collection[int]) -> set[int]:
    if not location_ids:
        return set()
    statement = select(Location.id).where(Location.id.in_(location_ids))
    return set((await session.scalars(statement)).all())


async def location_ids_of(session: AsyncSession, plan_id: int) -> set[int]:
    statement = select(PlanLocation.location_id).where(PlanLocation.plan_id == plan_id)
    return set((await session.scalars(statement)).all())


async def set_locations(session: AsyncSession, plan_id: int, location_ids: Collection[int]) -> None:
    """Make exactly ``location_ids`` offer the plan."""
    await session.execute(
        delete(PlanLocation).where(
            PlanLocation.plan_id == plan_id, PlanLocation.location_id.not_in(list(location_ids))
        )
    )
    missing = set(location_ids) - await location_ids_of(session, plan_id)
    if missing:
        await session.execute(
            insert(PlanLocation), [{"plan_id": plan_id, "location_id": lid} for lid in sorted(missing)]
        )


async def is_used(session: AsyncSession, plan_id: int) -> bool:
    """Whether any server refers to the plan (so it cannot be deleted)."""
    return bool((await session.execute(select(exists().where(Server.plan_id == plan_id)))).scalar_one())


async def add(session: AsyncSession, plan: Plan) -> Plan:
    session.add(plan)
    await session.flush()
    return plan


async def delete_plan(session: AsyncSession, plan: Plan) -> None:
    """Delete the plan; the database drops its location offers with it (ON DELETE CASCADE)."""
    await session.delete(plan)
    await session.flush()
