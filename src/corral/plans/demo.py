"""Plans for the demo fleet, offered at the demo location. Seeded once by slug: a plan the
operator changed or took out of the location afterwards is left as they made it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.plans import Plan
from corral.plans import repository

# All fit many times over on the demo node (16 vCPUs, 64 GiB memory, 2000 GiB disk).
DEMO_PLANS: tuple[dict[str, str | int], ...] = (
    {
        "slug": "demo-s1",
        "name": "Starter",
        "vcpus": 1,
        "memory_mib": 1024,
        "disk_gib": 25,
        "traffic_gib": 1000,
        "price_minor": 600,
    },
    {
        "slug": "demo-s2",
        "name": "Standard",
        "vcpus": 2,
        "memory_mib": 2048,
        "disk_gib": 50,
        "traffic_gib": 2000,
        "price_minor": 1200,
    },
    {
        "slug": "demo-s4",
        "name": "Performance",
        "vcpus": 4,
        "memory_mib": 8192,
        "disk_gib": 160,
        "traffic_gib": 0,
        "price_minor": 4800,
    },
)
DEMO_CURRENCY = "AUD"


async def seed_demo_plans(session: AsyncSession, location_id: int) -> None:
    """Create the demo plans that are missing, each offered at ``location_id`` (idempotent)."""
    for spec in DEMO_PLANS:
        if await repository.get_by_slug(session, str(spec["slug"])) is not None:
            continue
        plan = await repository.add(session, Plan(**spec, currency=DEMO_CURRENCY))
        await repository.set_locations(session, plan.id, [location_id])
