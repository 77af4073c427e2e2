"""The IP pool admin pages: list with utilisation, detail with addresses, forms, delete."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from corral.ipam import ipam
from corral.models.ipam import IpAddress, IpPool
from corral.models.users import UserRole
from tests.factories.fleet import create_ip_pool, create_location, create_server
from tests.support.admin import People, people_for

PAGES = "/admin/ip-pools"


@pytest.fixture
async def staff(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as staff:
        yield staff


def _form(location_id: int, **fields: str) -> dict[str, str]:
    return {
        "name": "syd1-public",
        "network": "203.0.113.0/28",
        "version": "",
        "gateway": "203.0.113.1",
        "dns_servers": "1.1.1.1\n2606:4700:4700::1111",
        "location_id": str(location_id),
        "reserved": "203.0.113.13, 203.0.113.14",
        **fields,
    }


def _field_error(html: str, field: str) -> str | None:
    match = re.search(rf'data-testid="error-pool-{field}">([^<]*)<', html)
    return match.group(1) if match else None


async def _pool_named(db: AsyncSession, name: str) -> IpPool | None:
    statement = select(IpPool).where(IpPool.name == name).execution_options(populate_existing=True)
    return (await db.scalars(statement)).first()


async def test_the_list_shows_utilisation_per_pool(staff: People, db: AsyncSession) -> None:
    support = await staff.sign_in(UserRole.SUPPORT)
    location = await create_location(db, name="Sydney", slug="syd1")
    pool = await create_ip_pool(db, location=location, network="203.0.113.0/29", name="syd1-v4")
    await create_ip_pool(db, location=location, network="2001:db8:5::/64", name="syd1-v6")
    server = await create_server(db, location=location)
    await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)

    page = await support.client.get(PAGES)

    assert page.status_code == 200
    row = re.search(rf'<tr data-testid="pool-row" id="pool-{pool.id}">(.*?)</tr>', page.text, re.S)
    assert row is not None
    assert "syd1-v4" in row.group(1)
    assert "203.0.113.0/29" in row.group(1)
    assert "Sydney" in row.group(1)
    # 6 usable, 1 gateway: 1 of 5 allocatable addresses in use.
    assert '<meter class="ipam-usage__meter" min="0" max="5" low="3.75"' in row.group(1)
    assert 'value="1"' in row.group(1)
    assert '<td data-label="Allocated" class="num" data-testid="allocated">1</td>' in row.group(1)
    assert '<td data-label="Free" class="num" data-testid="free">4</td>' in row.group(1)
    assert "20%" in row.group(1)
    assert "≈ 2⁶⁴" in page.text  # the IPv6 pool's free addresses
    assert "style=" not in page.text  # the CSP forbids inline styles
    # Support sees, but is not offered changes.
    assert 'data-testid="new-pool"' not in page.text


async def test_customers_cannot_see_the_pages_and_support_cannot_change_anything(
    staff: People, db: AsyncSession
) -> None:
    customer = await staff.sign_in(UserRole.CUSTOMER)
    support = await staff.sign_in(UserRole.SUPPORT)
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location, name="untouched")

    assert (await customer.client.get(PAGES)).status_code == 403
    assert (await customer.client.get(f"{PAGES}/{pool.id}")).status_code == 403
    detail = await support.client.get(f"{PAGES}/{pool.id}")
    assert detail.status_code == 200
    assert 'data-testid="edit-pool"' not in detail.text
    assert 'id="pool-danger"' not in detail.text
    for path in (f"{PAGES}/new", f"{PAGES}/{pool.id}/edit", f"{PAGES}/{pool.id}/delete"):
        assert (await support.client.get(path)).status_code == 403, path
    assert (await support.post_form(PAGES, _form(location.id, network="198.51.100.0/29"))).status_code == 403
    assert (await support.post_form(f"{PAGES}/{pool.id}/edit", {"name": "mine"})).status_code == 403
    assert (await support.post_form(f"{PAGES}/{pool.id}/delete")).status_code == 403
    assert await _pool_named(db, "untouched") is not None


async def test_an_operator_creates_a_pool_with_the_form(staff: People, db: AsyncSession) -> None:
    operator = await staff.sign_in(UserRole.OPERATOR)
    location = await create_location(db, name="Sydney")

    form = await operator.client.get(f"{PAGES}/new")
    created = await operator.post_form(PAGES, _form(location.id))

    assert form.status_code == 200
    assert f'<option value="{location.id}">Sydney' in form.text
    assert created.status_code == 303
    pool = await _pool_named(db, "syd1-public")
    assert pool is not None
    assert created.headers["location"] == f"{PAGES}/{pool.id}?done=created"
    detail = await operator.client.get(created.headers["location"])
    assert "IP pool created." in detail.text
    assert '<dd class="mono" data-testid="reserved-list">203.0.113.13, 203.0.113.14</dd>' in detail.text
    assert '<dd data-testid="usage-total">14</dd>' in detail.text
    assert '<dd data-testid="usage-reserved">3</dd>' in detail.text


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"network": "203.0.113.9/28"},
            "network",
            "203.0.113.9/28 has host bits set: the network is 203.0.113.0/28.",
        ),
        ({"gateway": "198.51.100.1"}, "gateway", "The gateway 198.51.100.1 is outside 203.0.113.0/28."),
        ({"reserved": "203.0.113.99"}, "reserved", "203.0.113.99 is outside 203.0.113.0/28."),
        ({"version": "6"}, "version", "203.0.113.0/28 is an IPv4 network, not IPv6."),
        ({"dns_servers": ""}, "dns", "List should have at least 1 item after validation, not 0"),
        ({"location_id": ""}, "location", "This field is required."),
        ({"name": "   "}, "name", "This field is required."),
    ],
)
async def test_a_refused_form_comes_back_with_the_message_next_to_the_field(
    staff: People, db: AsyncSession, fields: dict[str, str], field: str, message: str
) -> None:
    operator = await staff.sign_in(UserRole.OPERATOR)
    location = await create_location(db)

    response = await operator.post_form(PAGES, {**_form(location.id), **fields})

    assert response.status_code == 422
    assert _field_error(response.text, field) == message
    assert 'data-testid="form-errors"' in response.text
    # What was typed is kept.
    assert 'value="syd1-public"' in response.text or field == "name"
    assert await _pool_named(db, "syd1-public") is None


async def test_a_taken_name_or_overlapping_network_is_shown_on_the_form(
    staff: People, db: AsyncSession
) -> None:
    operator = await staff.sign_in(UserRole.OPERATOR)
    location = await create_location(db)
    await create_ip_pool(db, location=location, network="203.0.113.0/24", name="existing")

    taken = await operator.post_form(
        PAGES,
        _form(location.id, name="existing", network="198.51.100.0/29", gateway="198.51.100.1", reserved=""),
    )
    overlapping = await operator.post_form(PAGES, _form(location.id))

    assert taken.status_code == 409
    assert _field_error(taken.text, "name") == "Another IP pool already has that name."
    assert overlapping.status_code == 409
    message = _field_error(overlapping.text, "network")
    assert message is not None
    assert "overlaps the pool existing (203.0.113.0/24)" in message


async def test_editing_a_pool(staff: People, db: AsyncSession) -> None:
    operator = await staff.sign_in(UserRole.OPERATOR)
    location = await create_location(db)
    pool = await create_ip_pool(
        db, location=location, network="203.0.113.0/29", name="before", reserved=("203.0.113.6",)
    )
    server = await create_server(db, location=location)
    held = await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)
    edit = f"{PAGES}/{pool.id}/edit"

    form = await operator.client.get(edit)
    refused = await operator.post_form(
        edit, {"name": "after", "dns_servers": "9.9.9.9", "reserved": str(held.address)}
    )

    assert form.status_code == 200
    assert 'value="before"' in form.text
    assert ">203.0.113.6</textarea>" in form.text
    assert refused.status_code == 409
    assert _field_error(refused.text, "reserved") == (
        f"{held.address} is allocated to server #{server.id}; release it before reserving it."
    )
    # The refusal left nothing behind: not the new name, not the reserved list.
    assert await _pool_named(db, "before") is not None
    rows = (await db.scalars(select(IpAddress).where(IpAddress.pool_id == pool.id, IpAddress.reserved))).all()
    assert sorted(str(row.address) for row in rows) == ["203.0.113.1", "203.0.113.6"]

    saved = await operator.post_form(
        edit, {"name": "after", "dns_servers": "9.9.9.9, 149.112.112.112", "reserved": ""}
    )

    assert saved.status_code == 303
    assert saved.headers["location"] == f"{PAGES}/{pool.id}?done=updated"
    changed = await _pool_named(db, "after")
    assert changed is not None
    assert [str(s) for s in changed.dns_servers] == ["9.9.9.9", "149.112.112.112"]


async def test_deleting_a_pool_asks_first_and_waits_until_it_is_empty(
    staff: People, db: AsyncSession
) -> None:
    operator = await staff.sign_in(UserRole.OPERATOR)
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location, network="203.0.113.0/29", name="doomed")
    server = await create_server(db, location=location)
    await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)

    blocked = await operator.client.get(f"{PAGES}/{pool.id}/delete")
    refused = await operator.post_form(f"{PAGES}/{pool.id}/delete")

    assert 'data-testid="delete-blocked"' in blocked.text
    assert 'data-testid="delete-form"' not in blocked.text
    assert refused.status_code == 409
    assert "release them before deleting it" in refused.text

    await ipam.release_for_server(db, server.id)
    detail = await operator.client.get(f"{PAGES}/{pool.id}")
    confirm = await operator.client.get(f"{PAGES}/{pool.id}/delete", headers={"HX-Request": "true"})
    deleted = await operator.post_form(f"{PAGES}/{pool.id}/delete")

    assert 'data-testid="delete-pool"' in detail.text
    assert confirm.text.lstrip().startswith('<article id="pool-danger"')
    assert 'data-testid="delete-form"' in confirm.text
    assert deleted.status_code == 303
    assert deleted.headers["location"] == f"{PAGES}?done=deleted"
    assert "IP pool deleted." in (await operator.client.get(deleted.headers["location"])).text
    assert await _pool_named(db, "doomed") is None


async def test_the_address_table_filters_and_pages_with_htmx(staff: People, db: AsyncSession) -> None:
    support = await staff.sign_in(UserRole.SUPPORT)
    location = await create_location(db)
    pool = await create_ip_pool(db, location=location, network="10.9.0.0/23")
    server = await create_server(db, location=location, name="mail-1")
    await ipam.allocate(db, server_id=server.id, location_id=location.id, version=4)

    full = await support.client.get(f"{PAGES}/{pool.id}")
    allocated = await support.client.get(f"{PAGES}/{pool.id}?state=allocated", headers={"HX-Request": "true"})
    second = await support.client.get(f"{PAGES}/{pool.id}?page=2", headers={"HX-Request": "true"})

    assert full.text.count('data-testid="address-row"') == 50
    assert "page 1 of 11" in full.text
    assert "?page=2" in full.text
    assert allocated.text.lstrip().startswith('<section id="pool-addresses"')
    assert "<html" not in allocated.text
    assert allocated.text.count('data-testid="address-row"') == 1
    assert "mail-1" in allocated.text
    assert f"#{server.id}" in allocated.text
    assert "10.9.0.51" in second.text
    assert "page 2 of 11" in second.text


@contextmanager
def _counting(engine: AsyncEngine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def test_the_list_costs_the_same_few_queries_for_1_pool_or_8(
    staff: People, db: AsyncSession, engine: AsyncEngine
) -> None:
    support = await staff.sign_in(UserRole.SUPPORT)
    location = await create_location(db)
    await create_ip_pool(db, location=location, network="10.50.0.0/24")

    async def cost(path: str) -> int:
        with _counting(engine) as statements:
            assert (await support.client.get(path)).status_code == 200
        return len(statements)

    few = (await cost(PAGES), await cost("/api/v1/admin/ip-pools"))
    for n in range(1, 8):
        await create_ip_pool(db, location=await create_location(db), network=f"10.50.{n}.0/24")
    many = (await cost(PAGES), await cost("/api/v1/admin/ip-pools"))

    assert 0 < few[0] < 15
    assert many == few
