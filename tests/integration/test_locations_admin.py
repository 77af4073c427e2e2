"""Locations: the JSON API and the pages, validation, delete-or-deactivate, permissions, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.users import UserRole
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import create_node
from tests.integration.test_nodes_support import audit_events, error_code
from tests.support.admin import People, people_for

API = "/api/v1/admin/locations"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def test_an_operator_creates_lists_and_edits_a_location(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    created = await operator.post_json(API, {"slug": " SYD1 ", "name": "Sydney 1", "country_code": "au"})

    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["slug"], body["name"], body["country_code"], body["active"]) == (
        "syd1",
        "Sydney 1",
        "AU",
        True,
    )
    listed = await operator.client.get(API)
    assert [item["slug"] for item in listed.json()] == ["syd1"]
    assert listed.json()[0]["node_count"] == 0

    changed = await operator.client.patch(
        f"{API}/{body['id']}", json={"name": "Sydney One", "active": False}, headers=operator.headers()
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["active"]) == ("Sydney One", False)

    events = await audit_events(db, "location.")
    assert [event.action for event in events] == ["location.create", "location.update"]
    assert events[0].actor_label == operator.user.email
    assert events[1].payload == {
        "before": {"name": "Sydney 1", "active": True},
        "after": {"name": "Sydney One", "active": False},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "x", "name": "One letter", "country_code": "AU"}, "slug"),
        ({"slug": "has space", "name": "Spaces", "country_code": "AU"}, "slug"),
        ({"slug": "ok-slug", "name": "", "country_code": "AU"}, "name"),
        ({"slug": "ok-slug", "name": "Nowhere", "country_code": "XX"}, "country_code"),
        ({"slug": "ok-slug", "name": "Too long", "country_code": "AUS"}, "country_code"),
    ],
)
async def test_invalid_locations_are_refused_field_by_field(
    people: People, body: dict[str, str], field: str
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    response = await operator.post_json(API, body)

    assert response.status_code == 422
    assert error_code(response.json()) == "validation_failed"
    assert [error["field"] for error in response.json()["errors"]] == [field]


async def test_a_taken_slug_is_a_conflict(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    await create_location(db, slug="fra1")

    response = await operator.post_json(API, {"slug": "fra1", "name": "Frankfurt", "country_code": "DE"})

    assert response.status_code == 409
    assert error_code(response.json()) == "location_slug_taken"


async def test_a_used_location_cannot_be_deleted_only_deactivated(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    with_node = await create_location(db)
    await create_node(db, location=with_node)
    with_server = await create_location(db)
    await create_server(db, location=with_server)
    unused = await create_location(db)

    for location in (with_node, with_server):
        refused = await operator.client.delete(f"{API}/{location.id}", headers=operator.headers())
        assert refused.status_code == 409
        assert error_code(refused.json()) == "location_in_use"
    deleted = await operator.client.delete(f"{API}/{unused.id}", headers=operator.headers())
    assert deleted.status_code == 204
    assert (await operator.client.get(f"{API}/{unused.id}")).status_code == 404

    deactivated = await operator.client.patch(
        f"{API}/{with_node.id}", json={"active": False}, headers=operator.headers()
    )
    assert deactivated.json()["active"] is False
    assert [event.action for event in await audit_events(db, "location.")] == [
        "location.delete",
        "location.deactivate",
    ]


async def test_who_may_read_and_change_locations(people: People, db: AsyncSession) -> None:
    location = await create_location(db)
    customer = await people.sign_in(UserRole.CUSTOMER)
    support = await people.sign_in(UserRole.SUPPORT)
    new = {"slug": "new-one", "name": "New", "country_code": "NZ"}

    assert (await customer.client.get(API)).status_code == 403
    assert (await customer.client.get("/admin/locations")).status_code == 403
    assert (await customer.post_json(API, new)).status_code == 403

    assert (await support.client.get(API)).status_code == 200
    assert (await support.client.get(f"{API}/{location.id}")).status_code == 200
    page = await support.client.get(f"/admin/locations/{location.id}")
    assert page.status_code == 200
    assert 'action="/admin/locations/' not in page.text  # read-only: no edit or delete forms
    assert (await support.post_json(API, new)).status_code == 403
    patch = await support.client.patch(
        f"{API}/{location.id}", json={"name": "Mine"}, headers=support.headers()
    )
    assert patch.status_code == 403
    assert (await support.client.delete(f"{API}/{location.id}", headers=support.headers())).status_code == 403
    assert (await support.post_form(f"/admin/locations/{location.id}/delete")).status_code == 403

    anonymous = await people.client()
    assert (await anonymous.get(API)).status_code == 401
    assert await audit_events(db, "location.") == []


async def test_the_pages_add_edit_and_refuse_bad_input_inline(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    bad = await operator.post_form(
        "/admin/locations", {"slug": "Bad Slug!", "name": "Somewhere", "country_code": "zz", "active": "on"}
    )
    assert bad.status_code == 422
    assert 'data-field-error="slug"' in bad.text
    assert 'data-field-error="country_code"' in bad.text
    assert 'value="Somewhere"' in bad.text  # what was typed comes back

    added = await operator.post_form(
        "/admin/locations", {"slug": "ams1", "name": "Amsterdam", "country_code": "nl", "active": "on"}
    )
    assert added.status_code == 303
    assert added.headers["location"] == "/admin/locations?done=created"
    page = await operator.client.get(added.headers["location"])
    assert "Amsterdam" in page.text
    assert "Location added." in page.text

    location_id = (await operator.client.get(API)).json()[0]["id"]
    saved = await operator.post_form(
        f"/admin/locations/{location_id}", {"name": "Amsterdam 1", "country_code": "NL"}
    )
    assert saved.status_code == 303
    detail = await operator.client.get(f"/admin/locations/{location_id}")
    assert "Amsterdam 1" in detail.text
    assert "Inactive" in detail.text  # the checkbox was left unticked

    deleted = await operator.post_htmx(f"/admin/locations/{location_id}/delete")
    assert deleted.headers["HX-Redirect"] == "/admin/locations?done=deleted"
    assert [event.action for event in await audit_events(db, "location.")] == [
        "location.create",
        "location.update",
        "location.delete",
    ]


async def test_deleting_a_used_location_from_the_page_says_why(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    location = await create_location(db)
    await create_node(db, location=location)

    response = await operator.post_htmx(f"/admin/locations/{location.id}/delete")

    assert response.status_code == 409
    assert "deactivate it instead" in response.headers["HX-Trigger"]
