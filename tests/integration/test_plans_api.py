"""What customers can order: ``GET /api/v1/plans`` and the service other domains order through
(``plans.list_orderable`` / ``plans.get_orderable``), plus the demo plans."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.config import Settings
from corral.db.session import create_session_factory, transaction
from corral.demo.fleet import DEMO_NODE, seed_demo_fleet
from corral.kit.errors import ValidationFailed
from corral.models.nodes import Node
from corral.models.plans import Plan, PlanLocation
from corral.models.users import UserRole
from corral.plans.errors import PlanNotOffered
from corral.plans.money import format_price, minor_digits, parse_price
from corral.plans.service import plans
from tests.factories.fleet import create_location
from tests.factories.plans import create_plan
from tests.integration.test_nodes_support import error_code
from tests.support.admin import People, people_for

API = "/api/v1/plans"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def test_customers_see_active_plans_in_active_locations_cheapest_first(
    people: People, db: AsyncSession
) -> None:
    sydney = await create_location(db, slug="syd1", name="Sydney", country_code="AU")
    auckland = await create_location(db, slug="akl1", name="Auckland", country_code="NZ")
    closed = await create_location(db, slug="old1", name="Closed", country_code="AU", active=False)
    big = await create_plan(
        db, slug="big", name="Big", price_minor=2000, locations=[sydney, closed, auckland]
    )
    small = await create_plan(
        db, slug="small", name="Small", price_minor=550, traffic_gib=0, locations=[sydney]
    )
    await create_plan(db, slug="retired", price_minor=100, active=False, locations=[sydney])
    await create_plan(db, slug="stranded", price_minor=200, locations=[closed])
    await create_plan(db, slug="nowhere", price_minor=300)
    customer = await people.sign_in(UserRole.CUSTOMER)

    response = await customer.client.get(API)

    assert response.status_code == 200, response.text
    offers = response.json()
    assert [offer["slug"] for offer in offers] == ["small", "big"]
    assert offers[0] == {
        "id": small.id,
        "slug": "small",
        "name": "Small",
        "vcpus": 1,
        "memory_mib": 1024,
        "disk_gib": 20,
        "traffic_gib": 0,
        "price": {"minor": 550, "currency": "USD", "amount": "5.50", "formatted": "5.50 USD"},
        "locations": [{"id": sydney.id, "slug": "syd1", "name": "Sydney", "country_code": "AU"}],
    }
    assert [location["slug"] for location in offers[1]["locations"]] == ["akl1", "syd1"]
    assert offers[1]["id"] == big.id


async def test_the_catalogue_needs_a_signed_in_user(people: People) -> None:
    anonymous = await people.client()

    response = await anonymous.get(API)

    assert response.status_code == 401
    assert error_code(response.json()) == "not_authenticated"


async def test_list_orderable_gives_plans_with_their_active_locations(db: AsyncSession) -> None:
    open_one = await create_location(db, name="B open")
    open_two = await create_location(db, name="A open")
    closed = await create_location(db, active=False)
    cheap = await create_plan(db, price_minor=100, locations=[open_one, closed, open_two])
    dear = await create_plan(db, price_minor=900, locations=[open_one])
    await create_plan(db, price_minor=50, active=False, locations=[open_one])

    offers = await plans.list_orderable(db)

    assert [offer.plan.id for offer in offers] == [cheap.id, dear.id]
    assert [location.id for location in offers[0].locations] == [open_two.id, open_one.id]
    assert offers[0].price_text == "1.00 USD"


async def test_get_orderable_refuses_what_cannot_be_ordered(db: AsyncSession) -> None:
    here = await create_location(db)
    elsewhere = await create_location(db)
    closed = await create_location(db, active=False)
    plan = await create_plan(db, locations=[here, closed])
    retired = await create_plan(db, active=False, locations=[here])

    assert (await plans.get_orderable(db, plan.id, here.id)).id == plan.id
    for plan_id, location_id in (
        (plan.id, elsewhere.id),  # not offered there
        (plan.id, closed.id),  # offered, but the location is inactive
        (retired.id, here.id),  # the plan is inactive
        (987654, here.id),  # no such plan
        (plan.id, 987654),  # no such location
    ):
        with pytest.raises(PlanNotOffered) as refused:
            await plans.get_orderable(db, plan_id, location_id)
        assert isinstance(refused.value, ValidationFailed)
        assert refused.value.status_code == 422
        assert refused.value.message == "That plan is not offered in that location."


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1250, "USD", "12.50 USD"),
        (1200, "JPY", "1200 JPY"),
        (5, "EUR", "0.05 EUR"),
        (1234, "KWD", "1.234 KWD"),
    ],
)
def test_prices_are_formatted_with_the_currency_digits(minor: int, currency: str, text: str) -> None:
    assert format_price(minor, currency) == text
    assert parse_price(text.split()[0], currency) == minor


def test_unknown_currencies_default_to_two_digits() -> None:
    assert minor_digits("USD") == minor_digits("AUD") == 2
    assert minor_digits("JPY") == 0


async def test_demo_plans_are_seeded_once_and_fit_the_demo_node(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    engine = create_async_engine(fresh_database())
    factory = create_session_factory(engine, settings)
    try:
        for _ in range(2):
            async with transaction(factory) as session:
                await seed_demo_fleet(session)
        async with factory() as session:
            assert await session.scalar(select(func.count()).select_from(Plan)) == 3
            assert await session.scalar(select(func.count()).select_from(PlanLocation)) == 3
            node = (await session.scalars(select(Node).where(Node.name == DEMO_NODE))).one()
            offers = await plans.list_orderable(session)
            assert len(offers) == 3
            for offer in offers:
                assert [location.id for location in offer.locations] == [node.location_id]
                assert offer.plan.vcpus <= node.cpu_total
                assert offer.plan.memory_mib <= node.memory_total_mib
                assert offer.plan.disk_gib <= node.disk_total_gib
    finally:
        await engine.dispose()
