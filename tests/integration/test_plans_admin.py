"""Plans for staff: the admin JSON API and pages, validation, money, delete-or-deactivate,
permissions, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.plans import Plan, PlanLocation
from corral.models.users import UserRole
from tests.factories.fleet import create_location, create_server
from tests.factories.plans import create_plan
from tests.integration.test_nodes_support import audit_events, error_code
from tests.support.admin import People, people_for

API = "/api/v1/admin/plans"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


def new_plan(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "slug": "s-2-4",
        "name": "Standard",
        "vcpus": 2,
        "memory_mib": 4096,
        "disk_gib": 80,
        "traffic_gib": 4000,
        "price": "12.50",
        "currency": "usd",
    }
    return body | overrides


async def offered_location_ids(db: AsyncSession, plan_id: int) -> list[int]:
    statement = select(PlanLocation.location_id).where(PlanLocation.plan_id == plan_id)
    return sorted((await db.scalars(statement)).all())


async def test_an_operator_creates_lists_and_edits_a_plan(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    sydney = await create_location(db, name="Sydney", country_code="AU")
    tokyo = await create_location(db, name="Tokyo", country_code="JP")

    created = await operator.post_json(API, new_plan(slug=" S-2-4 ", location_ids=[sydney.id]))

    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["slug"], body["name"], body["vcpus"], body["memory_mib"]) == ("s-2-4", "Standard", 2, 4096)
    assert body["price"] == {"minor": 1250, "currency": "USD", "amount": "12.50", "formatted": "12.50 USD"}
    assert [location["id"] for location in body["locations"]] == [sydney.id]
    assert (body["active"], body["server_count"], body["traffic_gib"]) == (True, 0, 4000)
    listed = await operator.client.get(API)
    assert [item["slug"] for item in listed.json()] == ["s-2-4"]

    changed = await operator.client.patch(
        f"{API}/{body['id']}",
        json={"name": "Standard 4G", "price": "15", "currency": "USD", "location_ids": [tokyo.id, sydney.id]},
        headers=operator.headers(),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["price"]["formatted"] == "15.00 USD"
    assert [location["name"] for location in changed.json()["locations"]] == ["Sydney", "Tokyo"]
    plan = await db.get(Plan, body["id"])
    assert plan is not None
    await db.refresh(plan)
    assert (plan.name, plan.price_minor, plan.currency) == ("Standard 4G", 1500, "USD")

    events = await audit_events(db, "plan.")
    assert [event.action for event in events] == ["plan.create", "plan.update"]
    assert events[0].actor_label == operator.user.email
    assert events[0].payload["price_minor"] == 1250
    assert events[0].payload["location_ids"] == [sydney.id]
    assert events[1].payload == {
        "before": {"name": "Standard", "price_minor": 1250, "location_ids": [sydney.id]},
        "after": {"name": "Standard 4G", "price_minor": 1500, "location_ids": sorted([sydney.id, tokyo.id])},
    }


async def test_currencies_keep_their_own_minor_digits(people: People) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    yen = await operator.post_json(API, new_plan(slug="yen", price="1200", currency="JPY"))
    dinar = await operator.post_json(API, new_plan(slug="dinar", price="4.125", currency="KWD"))
    whole = await operator.post_json(API, new_plan(slug="whole", price=7, currency="EUR", traffic_gib=0))

    assert yen.json()["price"] == {
        "minor": 1200,
        "currency": "JPY",
        "amount": "1200",
        "formatted": "1200 JPY",
    }
    assert dinar.json()["price"]["minor"] == 4125
    assert dinar.json()["price"]["formatted"] == "4.125 KWD"
    assert whole.json()["price"]["formatted"] == "7.00 EUR"
    assert whole.json()["traffic_gib"] == 0  # unmetered


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "DOLLARS"}, "currency"),
        ({"price": "-1.00"}, "price"),
        ({"price": "12.505"}, "price"),
        ({"price": "12.5", "currency": "JPY"}, "price"),
        ({"price": 12.5}, "price"),  # a float never carries money
        ({"price": "1e3"}, "price"),
        ({"vcpus": 0}, "vcpus"),
        ({"memory_mib": 0}, "memory_mib"),
        ({"disk_gib": 0}, "disk_gib"),
        ({"traffic_gib": -1}, "traffic_gib"),
        ({"slug": "Bad Slug!"}, "slug"),
        ({"name": " "}, "name"),
    ],
)
async def test_invalid_plans_are_refused_field_by_field(
    people: People, db: AsyncSession, overrides: dict[str, Any], field: str
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    response = await operator.post_json(API, new_plan(**overrides))

    assert response.status_code == 422, response.text
    assert error_code(response.json()) == "validation_failed"
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert (await db.scalars(select(Plan))).all() == []


async def test_price_messages_say_what_to_fix(people: People) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    cents = await operator.post_json(API, new_plan(price="12.505"))
    yen = await operator.post_json(API, new_plan(price="12.5", currency="JPY"))
    negative = await operator.post_json(API, new_plan(price="-3"))

    assert "USD prices have at most 2 decimal places." in cents.json()["errors"][0]["message"]
    assert "JPY prices are whole numbers." in yen.json()["errors"][0]["message"]
    assert "The price cannot be negative." in negative.json()["errors"][0]["message"]


async def test_price_and_currency_change_together(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    plan = await create_plan(db, price_minor=500, currency="USD")

    for body in ({"price": "9.99"}, {"currency": "EUR"}, {"price": "9.999", "currency": "EUR"}):
        refused = await operator.client.patch(f"{API}/{plan.id}", json=body, headers=operator.headers())
        assert refused.status_code == 422, body
        assert [error["field"] for error in refused.json()["errors"]] == ["price"]

    changed = await operator.client.patch(
        f"{API}/{plan.id}", json={"price": "999", "currency": "JPY"}, headers=operator.headers()
    )
    assert changed.json()["price"]["formatted"] == "999 JPY"


async def test_unknown_locations_and_taken_slugs_are_refused(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    await create_plan(db, slug="taken")
    other = await create_plan(db, slug="other")

    unknown = await operator.post_json(API, new_plan(location_ids=[987654]))
    taken = await operator.post_json(API, new_plan(slug="taken"))
    renamed = await operator.client.patch(
        f"{API}/{other.id}", json={"slug": "taken"}, headers=operator.headers()
    )
    missing = await operator.client.patch(f"{API}/987654", json={"name": "X"}, headers=operator.headers())

    assert unknown.status_code == 422
    assert error_code(unknown.json()) == "unknown_location"
    assert (taken.status_code, error_code(taken.json())) == (409, "plan_slug_taken")
    assert (renamed.status_code, error_code(renamed.json())) == (409, "plan_slug_taken")
    assert (missing.status_code, error_code(missing.json())) == (404, "plan_not_found")
    assert await audit_events(db, "plan.") == []


async def test_a_used_plan_cannot_be_deleted_only_deactivated(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    location = await create_location(db)
    used = await create_plan(db, locations=[location])
    await create_server(db, location=location, plan_id=used.id)
    unused = await create_plan(db, locations=[location])

    refused = await operator.client.delete(f"{API}/{used.id}", headers=operator.headers())
    assert refused.status_code == 409
    assert error_code(refused.json()) == "plan_in_use"
    assert "deactivate it instead" in refused.json()["message"]
    deleted = await operator.client.delete(f"{API}/{unused.id}", headers=operator.headers())
    assert deleted.status_code == 204
    assert (await operator.client.get(f"{API}/{unused.id}")).status_code == 404
    assert await offered_location_ids(db, unused.id) == []

    deactivated = await operator.client.patch(
        f"{API}/{used.id}", json={"active": False}, headers=operator.headers()
    )
    assert (deactivated.json()["active"], deactivated.json()["server_count"]) == (False, 1)
    events = await audit_events(db, "plan.")
    assert [event.action for event in events] == ["plan.delete", "plan.update"]
    assert events[0].payload == {"slug": unused.slug, "name": unused.name}


async def test_who_may_read_and_change_plans(people: People, db: AsyncSession) -> None:
    plan = await create_plan(db)
    customer = await people.sign_in(UserRole.CUSTOMER)
    support = await people.sign_in(UserRole.SUPPORT)
    operator = await people.sign_in(UserRole.OPERATOR)

    for person in (customer,):
        assert (await person.client.get(API)).status_code == 403
        assert (await person.client.get(f"{API}/{plan.id}")).status_code == 403
        assert (await person.client.get("/admin/plans")).status_code == 403
        assert (await person.client.get(f"/admin/plans/{plan.id}")).status_code == 403
        assert (await person.post_json(API, new_plan())).status_code == 403
        assert (await person.post_form("/admin/plans", new_plan())).status_code == 403

    # Support reads the catalogue to answer tickets, and changes nothing.
    assert (await support.client.get(API)).status_code == 200
    page = await support.client.get(f"/admin/plans/{plan.id}")
    assert page.status_code == 200
    assert 'action="/admin/plans/' not in page.text  # read-only: no edit or delete forms
    assert (await support.post_json(API, new_plan())).status_code == 403
    patch = await support.client.patch(f"{API}/{plan.id}", json={"name": "Mine"}, headers=support.headers())
    assert patch.status_code == 403
    assert (await support.client.delete(f"{API}/{plan.id}", headers=support.headers())).status_code == 403
    assert (await support.post_form(f"/admin/plans/{plan.id}/delete")).status_code == 403

    anonymous = await people.client()
    assert (await anonymous.get(API)).status_code == 401
    assert await audit_events(db, "plan.") == []

    assert (await operator.client.get(API)).status_code == 200
    assert (await operator.post_json(API, new_plan())).status_code == 201
    renamed = await operator.client.patch(
        f"{API}/{plan.id}", json={"name": "Ours"}, headers=operator.headers()
    )
    assert renamed.status_code == 200
    assert [event.action for event in await audit_events(db, "plan.")] == ["plan.create", "plan.update"]


def form(**overrides: str | list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "slug": "web-1",
        "name": "Web 1",
        "vcpus": "1",
        "memory_mib": "1024",
        "disk_gib": "25",
        "traffic_gib": "",
        "price": "5.50",
        "currency": "eur",
        "active": "on",
    }
    return values | overrides


async def test_the_pages_add_edit_and_refuse_bad_input_inline(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    frankfurt = await create_location(db, name="Frankfurt", country_code="DE")
    paris = await create_location(db, name="Paris", country_code="FR")

    bad = await operator.post_form(
        "/admin/plans", form(slug="Bad Slug!", vcpus="0", price="5.505", currency="ZZZ", name="Typed")
    )
    assert bad.status_code == 422
    for field in ("slug", "vcpus", "currency"):
        assert f'data-field-error="{field}"' in bad.text, field
    assert 'value="Typed"' in bad.text  # what was typed comes back
    decimals = await operator.post_form("/admin/plans", form(price="5.505"))
    assert decimals.status_code == 422
    assert "EUR prices have at most 2 decimal places." in decimals.text

    added = await operator.client.post(
        "/admin/plans",
        data={**form(), "location_ids": [str(frankfurt.id), str(paris.id)], "csrf_token": operator.csrf},
        headers={"Origin": "https://panel.test"},
    )
    assert added.status_code == 303, added.text[:500]
    assert added.headers["location"] == "/admin/plans?done=created"
    page = await operator.client.get(added.headers["location"])
    assert "Web 1" in page.text
    assert "5.50 EUR" in page.text
    assert "Unmetered" in page.text  # traffic left blank
    assert "Plan added." in page.text

    plan = (await db.scalars(select(Plan).where(Plan.slug == "web-1"))).one()
    assert (plan.price_minor, plan.currency, plan.traffic_gib) == (550, "EUR", 0)
    assert await offered_location_ids(db, plan.id) == sorted([frankfurt.id, paris.id])

    detail = await operator.client.get(f"/admin/plans/{plan.id}")
    assert 'value="5.50"' in detail.text  # the price is shown as typed, not in cents
    saved = await operator.client.post(
        f"/admin/plans/{plan.id}",
        data={**form(name="Web One", price="6"), "location_ids": [str(paris.id)], "csrf_token": operator.csrf}
        | {"active": ""},
        headers={"Origin": "https://panel.test"},
    )
    assert saved.status_code == 303
    detail = await operator.client.get(f"/admin/plans/{plan.id}")
    assert "Web One" in detail.text
    assert "6.00 EUR" in detail.text
    assert "Inactive" in detail.text  # the checkbox was left unticked
    assert await offered_location_ids(db, plan.id) == [paris.id]

    refused = await operator.post_form(f"/admin/plans/{plan.id}", form(price="-2"))
    assert refused.status_code == 422
    assert "The price cannot be negative." in refused.text

    deleted = await operator.post_htmx(f"/admin/plans/{plan.id}/delete")
    assert deleted.headers["HX-Redirect"] == "/admin/plans?done=deleted"
    assert [event.action for event in await audit_events(db, "plan.")] == [
        "plan.create",
        "plan.update",
        "plan.delete",
    ]


async def test_a_taken_slug_is_shown_beside_the_field(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    await create_plan(db, slug="web-1")

    response = await operator.post_form("/admin/plans", form())

    assert response.status_code == 409
    assert 'data-field-error="slug"' in response.text
    assert "Another plan already uses that slug." in response.text


async def test_deleting_a_used_plan_from_the_page_says_why(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    plan = await create_plan(db)
    await create_server(db, plan_id=plan.id)

    response = await operator.post_htmx(f"/admin/plans/{plan.id}/delete")

    assert response.status_code == 409
    assert "deactivate it instead" in response.headers["HX-Trigger"]
    assert await db.get(Plan, plan.id) is not None
