"""Plans: list, create, change, delete, and what customers may order.

Routes already refuse callers without the permission; the service checks again because the JSON
API, the pages and later the CLI all reach it. Every change is audited in the same transaction.
A plan that a server was ordered on is never deleted (409): deactivating it stops new orders and
keeps the server's history intact.

    from corral.plans.service import plans

    offers = await plans.list_orderable(session)
    plan = await plans.get_orderable(session, plan_id, location_id)  # PlanNotOffered (422)
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.kit.clock import utcnow
from corral.models.locations import Location
from corral.models.plans import Plan
from corral.plans import repository
from corral.plans.errors import PlanInUse, PlanNotFound, PlanNotOffered, PlanSlugTaken, UnknownPlanLocation
from corral.plans.schemas import OrderablePlan, PlanCreate, PlanRow, PlanUpdate
from corral.rbac.permissions import Permission

# Plans are part of the fleet's catalogue: whoever may read the fleet (support answering "what
# does my plan include") may read them, as with locations.
READ = Permission.NODES_READ
MANAGE = Permission.PLANS_MANAGE


def _need(principal: Principal, permission: Permission) -> None:
    if not principal.can(permission):
        raise MissingPermission()


def _target(plan_id: int) -> Target:
    return Target(type="plan", id=plan_id)


async def _check_locations(session: AsyncSession, location_ids: Sequence[int]) -> list[int]:
    wanted = sorted(set(location_ids))
    missing = set(wanted) - await repository.existing_location_ids(session, wanted)
    if missing:
        raise UnknownPlanLocation(details={"field": "location_ids", "location_ids": sorted(missing)})
    return wanted


class PlanService:
    async def list(self, session: AsyncSession, principal: Principal) -> Sequence[PlanRow]:
        _need(principal, READ)
        return await self._rows(session)

    async def get(self, session: AsyncSession, principal: Principal, plan_id: int) -> PlanRow:
        _need(principal, READ)
        rows = await self._rows(session, plan_id=plan_id)
        if not rows:
            raise PlanNotFound()
        return rows[0]

    async def location_choices(self, session: AsyncSession, principal: Principal) -> Sequence[Location]:
        """Every location, active first, to tick the ones offering a plan."""
        _need(principal, READ)
        return await repository.all_locations(session)

    async def create(self, session: AsyncSession, principal: Principal, data: PlanCreate) -> PlanRow:
        _need(principal, MANAGE)
        location_ids = await _check_locations(session, data.location_ids)
        if await repository.get_by_slug(session, data.slug) is not None:
            raise PlanSlugTaken()
        values = data.values()
        plan = Plan(**values)
        try:
            # A savepoint: a concurrent insert of the same slug fails only this statement.
            async with session.begin_nested():
                await repository.add(session, plan)
        except IntegrityError as error:
            raise PlanSlugTaken() from error
        await repository.set_locations(session, plan.id, location_ids)
        await session.refresh(plan)  # created_at/updated_at come from the database
        await audit.record(
            session,
            principal.actor,
            "plan.create",
            target=_target(plan.id),
            payload={**values, "location_ids": location_ids},
        )
        return (await self._rows(session, plan_id=plan.id))[0]

    async def update(
        self, session: AsyncSession, principal: Principal, plan_id: int, data: PlanUpdate
    ) -> PlanRow:
        _need(principal, MANAGE)
        plan = await repository.get(session, plan_id, for_update=True)
        if plan is None:
            raise PlanNotFound()
        changes: dict[str, Any] = {
            key: value for key, value in data.changes().items() if getattr(plan, key) != value
        }
        before: dict[str, Any] = {key: getattr(plan, key) for key in changes}
        if data.location_ids is not None:
            wanted = await _check_locations(session, data.location_ids)
            current = sorted(await repository.location_ids_of(session, plan_id))
            if wanted != current:
                before["location_ids"] = current
                changes["location_ids"] = wanted
        if not changes:
            return (await self._rows(session, plan_id=plan_id))[0]
        if "slug" in changes:
            other = await repository.get_by_slug(session, changes["slug"])
            if other is not None and other.id != plan_id:
                raise PlanSlugTaken()
        for key, value in changes.items():
            if key != "location_ids":
                setattr(plan, key, value)
        plan.updated_at = utcnow()
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError as error:
            raise PlanSlugTaken() from error
        if "location_ids" in changes:
            await repository.set_locations(session, plan_id, changes["location_ids"])
        await audit.record(
            session,
            principal.actor,
            "plan.update",
            target=_target(plan_id),
            payload={"before": before, "after": changes},
        )
        return (await self._rows(session, plan_id=plan_id))[0]

    async def delete(self, session: AsyncSession, principal: Principal, plan_id: int) -> None:
        _need(principal, MANAGE)
        plan = await repository.get(session, plan_id, for_update=True)
        if plan is None:
            raise PlanNotFound()
        if await repository.is_used(session, plan_id):
            raise PlanInUse()
        snapshot = {"slug": plan.slug, "name": plan.name}
        try:
            async with session.begin_nested():
                await repository.delete_plan(session, plan)
        except IntegrityError as error:
            # A server was ordered on it between the check and the delete.
            raise PlanInUse() from error
        await audit.record(session, principal.actor, "plan.delete", target=_target(plan_id), payload=snapshot)

    async def list_orderable(self, session: AsyncSession) -> builtins.list[OrderablePlan]:
        """Active plans with their active locations, cheapest first; a plan offered nowhere active
        is left out (it cannot be ordered). Callers check the customer's own permission."""
        found: dict[int, OrderablePlan] = {}
        for plan, location in await repository.orderable(session):
            offer = found.setdefault(plan.id, OrderablePlan(plan=plan, locations=[]))
            offer.locations.append(location)
        return list(found.values())

    async def get_orderable(self, session: AsyncSession, plan_id: int, location_id: int) -> Plan:
        """The plan to order at that location; ``PlanNotOffered`` (422) when the plan is missing or
        inactive, or the location is inactive or does not offer it. The plan row stays share-locked
        until the caller's transaction ends, so it cannot be deleted under the order."""
        plan = await repository.offered(session, plan_id, location_id)
        if plan is None:
            raise PlanNotOffered(details={"plan_id": plan_id, "location_id": location_id})
        return plan

    async def _rows(self, session: AsyncSession, *, plan_id: int | None = None) -> builtins.list[PlanRow]:
        counted = await repository.list_with_counts(session, plan_id=plan_id)
        locations = await repository.locations_of(session, [plan.id for plan, _ in counted])
        return [
            PlanRow(plan=plan, locations=locations[plan.id], server_count=count) for plan, count in counted
        ]


plans = PlanService()
