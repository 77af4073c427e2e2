"""Plans for tests. Persisted through the session handed in.

plan = await create_plan(db, locations=[location], price_minor=1250, currency="USD")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import factory
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.locations import Location
from corral.models.plans import Plan, PlanLocation


class PlanFactory(factory.Factory):  # type: ignore[misc]
    class Meta:
        model = Plan

    slug = factory.Sequence(lambda n: f"plan-{n}")
    name = factory.Sequence(lambda n: f"Plan {n}")
    vcpus = 1
    memory_mib = 1024
    disk_gib = 20
    traffic_gib = 1000
    price_minor = 500
    currency = "USD"
    active = True


async def create_plan(session: AsyncSession, *, locations: Sequence[Location] = (), **overrides: Any) -> Plan:
    """A plan offered at ``locations`` (none by default)."""
    plan: Plan = PlanFactory.build(**overrides)
    session.add(plan)
    await session.flush()
    session.add_all(PlanLocation(plan_id=plan.id, location_id=location.id) for location in locations)
    await session.flush()
    await session.refresh(plan)
    return plan
