"""The IP pool JSON API: who may do what, validation, conflicts, utilisation, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.ipam import ipam
from corral.models.audit import AuditEvent
from corral.models.users import UserRole
from tests.factories.fleet import create_ip_pool, create_location, create_server
from tests.support.admin import People, people_for
from tests.support.auth import ORIGIN

API = "/api/v1/admin/ip-pools"


@pytest.fixture
async def staff(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as staff:
        yield staff


def _body(location_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "name": "syd1-public",
        "network": "203.0.113.0/28",
        "gateway": "203.0.113.1",
        "dns_servers": ["1.1.1.1", "2606:4700:4700::1111"],
        "location_id": location_id,
        **fields,
    }


async def test_anonymous_callers_are_asked_to_authenticate(client: httpx.AsyncClient) -> None:
    response = await client.get(API)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_customers_get_nothing(staff: People, db: AsyncSession) -> None:
    customer = await staff.sign_in(UserRole.CUSTOMER)
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location)

    for method, path, body in [
        ("GET", API, None),
        ("GET", f"{API}/{pool.id}", None),
        ("GET", f"{API}/{pool.id}/addresses", None),
        ("POST", API, _body(location.id, network="198.51.100.0/29", gateway="198.51.100.1")),
        ("PATCH", f"{API}/{pool.id}", {"name": "mine"}),
        ("DELETE", f"{API}/{pool.id}", None),
    ]:
        response = await customer.send_json(method, path, body)
        assert response.status_code == 403, (method, path)
        assert response.json()["code"] == "missing_permission"


async def test_support_reads_but_cannot_change(staff: People, db: AsyncSession) -> None:
    support = await staff.sign_in(UserRole.SUPPORT)
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location)

    assert (await support.send_json("GET", API)).status_code == 200
    assert (await support.send_json("GET", f"{API}/{pool.id}")).status_code == 200
    assert (await support.send_json("GET", f"{API}/{pool.id}/addresses")).status_code == 200
    create = _body(location.id, network="198.51.100.0/29", gateway="198.51.100.1")
    assert (await support.send_json("POST", API, create)).status_code == 403
    assert (await support.send_json("PATCH", f"{API}/{pool.id}", {"name": "x"})).status_code == 403
    assert (await support.send_json("DELETE", f"{API}/{pool.id}")).status_code == 403


async def test_operators_manage_pools_and_every_change_is_audited(staff: People, db: AsyncSession) -> None:
    operator = await staff.sign_in(UserRole.OPERATOR)
    location = await create_location(db, slug="syd1")

    created = await operator.send_json("POST", API, _body(location.id, reserved=["203.0.113.14"]))
    assert created.status_code == 201, created.text
    pool = created.json()
    assert {
        key: pool[key] for key in ("name", "version", "network", "gateway", "dns_servers", "reserved")
    } == {
        "name": "syd1-public",
        "version": 4,
        "network": "203.0.113.0/28",
        "gateway": "203.0.113.1",
        "dns_servers": ["1.1.1.1", "2606:4700:4700::1111"],
        "reserved": ["203.0.113.14"],
    }
    assert pool["location_slug"] == "syd1"
    assert pool["utilisation"] == {
        "total": 14,
        "allocated": 0,
        "reserved": 2,
        "free": 12,
        "percent_used": 0.0,
    }

    updated = await operator.send_json("PATCH", f"{API}/{pool['id']}", {"name": "syd1-v4", "reserved": []})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["name"], updated.json()["reserved"]) == ("syd1-v4", [])
    assert updated.json()["utilisation"]["reserved"] == 1

    deleted = await operator.send_json("DELETE", f"{API}/{pool['id']}")
    assert deleted.status_code == 204
    assert (await operator.send_json("GET", f"{API}/{pool['id']}")).json()["code"] == "ip_pool_not_found"

    statement = select(AuditEvent).where(
        AuditEvent.target_type == "ip_pool", AuditEvent.target_id == str(pool["id"])
    )
    events = (await db.scalars(statement.order_by(AuditEvent.seq))).all()
    assert [(e.action, e.actor_id, e.actor_label) for e in events] == [
        ("ipam.pool.create", operator.user.id, operator.user.email),
        ("ipam.pool.update", operator.user.id, operator.user.email),
        ("ipam.pool.delete", operator.user.id, operator.user.email),
    ]
    assert events[1].payload["changes"] == {
        "name": {"from": "syd1-public", "to": "syd1-v4"},
        "reserved": {"added": [], "removed": ["203.0.113.14"]},
    }


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"network": "not/a-network"},
            "network",
            "not/a-network is not an IPv4 or IPv6 network in CIDR notation.",
        ),
        (
            {"network": "203.0.113.5/28"},
            "network",
            "203.0.113.5/28 has host bits set: the network is 203.0.113.0/28.",
        ),
        ({"network": "10.0.0.0/8", "gateway": "10.0.0.1"}, "network", "IPv4 pools are limited to /16"),
        ({"gateway": "203.0.113.99"}, "gateway", "The gateway 203.0.113.99 is outside 203.0.113.0/28."),
        ({"reserved": ["203.0.113.200"]}, "reserved", "203.0.113.200 is outside 203.0.113.0/28."),
        ({"version": 6}, "version", "203.0.113.0/28 is an IPv4 network, not IPv6."),
    ],
)
async def test_invalid_pools_are_a_422_naming_the_field(
    staff: People, db: AsyncSession, fields: dict[str, Any], field: str, message: str
) -> None:
    operator = await staff.sign_in(UserRole.OPERATOR)
    location = await create_location(db)

    response = await operator.send_json("POST", API, _body(location.id, **fields))

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_failed"
    [error] = body["errors"]
    assert error["field"] == field
    assert error["message"].startswith(message)


async def test_conflicts_are_409_with_a_code(staff: People, db: AsyncSession) -> None:
    operator = await staff.sign_in(UserRole.OPERATOR)
    location = await create_location(db)
    existing = await create_ip_pool(db, location=location, network="203.0.113.0/24", name="taken")

    name = await operator.send_json(
        "POST", API, _body(location.id, name="taken", network="198.51.100.0/29", gateway="198.51.100.1")
    )
    overlap = await operator.send_json("POST", API, _body(location.id))
    unknown_location = await operator.send_json(
        "POST", API, _body(2**40, network="198.51.100.0/29", gateway="198.51.100.1")
    )

    assert (name.status_code, name.json()["code"]) == (409, "ip_pool_name_taken")
    assert name.json()["details"] == {"fields": {"name": "Another IP pool already has that name."}}
    assert (overlap.status_code, overlap.json()["code"]) == (409, "ip_pool_overlaps")
    assert f"overlaps the pool taken ({existing.network})" in overlap.json()["message"]
    assert (unknown_location.status_code, unknown_location.json()["code"]) == (422, "ip_pool_invalid")
    assert unknown_location.json()["details"] == {"fields": {"location_id": "Choose one of the locations."}}


async def test_delete_is_refused_while_addresses_are_allocated(staff: People, db: AsyncSession) -> None:
    operator = await staff.sign_in(UserRole.OPERATOR)
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location, network="203.0.113.0/29")
    server = await create_server(db, location=location, name="db-1")
    held = await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)

    refused = await operator.send_json("DELETE", f"{API}/{pool.id}")
    reserve_held = await operator.send_json("PATCH", f"{API}/{pool.id}", {"reserved": [str(held.address)]})

    assert (refused.status_code, refused.json()["code"]) == (409, "ip_pool_in_use")
    assert (reserve_held.status_code, reserve_held.json()["code"]) == (409, "ip_address_in_use")
    await ipam.release_for_server(db, server.id)
    assert (await operator.send_json("DELETE", f"{API}/{pool.id}")).status_code == 204


async def test_utilisation_and_addresses_show_who_holds_what(staff: People, db: AsyncSession) -> None:
    support = await staff.sign_in(UserRole.SUPPORT)
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location, network="203.0.113.0/29", reserved=("203.0.113.6",))
    servers = [await create_server(db, location=location, name=f"web-{n}") for n in (1, 2)]
    for server in servers:
        await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)

    listing = (await support.send_json("GET", API)).json()
    allocated = (await support.send_json("GET", f"{API}/{pool.id}/addresses?state=allocated")).json()
    second_page = (await support.send_json("GET", f"{API}/{pool.id}/addresses?limit=4&page=2")).json()
    bad_state = await support.send_json("GET", f"{API}/{pool.id}/addresses?state=lost")

    [row] = [item for item in listing if item["id"] == pool.id]
    assert row["utilisation"] == {"total": 6, "allocated": 2, "reserved": 2, "free": 2, "percent_used": 50.0}
    assert [(a["address"], a["state"], a["server_name"]) for a in allocated["items"]] == [
        ("203.0.113.2", "allocated", "web-1"),
        ("203.0.113.3", "allocated", "web-2"),
    ]
    assert allocated["items"][0]["server_id"] == servers[0].id
    assert [(a["address"], a["state"]) for a in second_page["items"]] == [
        ("203.0.113.5", "free"),
        ("203.0.113.6", "reserved"),
    ]
    assert (second_page["total"], second_page["pages"]) == (6, 2)
    assert bad_state.status_code == 422


async def test_an_unknown_pool_is_404(staff: People) -> None:
    support = await staff.sign_in(UserRole.SUPPORT)
    response = await support.send_json("GET", f"{API}/999999999")
    assert (response.status_code, response.json()["code"]) == (404, "ip_pool_not_found")


async def test_the_api_refuses_forged_cookie_requests(staff: People, db: AsyncSession) -> None:
    operator = await staff.sign_in(UserRole.OPERATOR)
    location = await create_location(db)
    body = _body(location.id)

    no_token = await operator.client.post(API, json=body, headers=ORIGIN)

    assert no_token.status_code == 403
