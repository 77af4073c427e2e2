"""Ordering (phase one): names, limits, capacity, double submits; and the hostname rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.ipam import IpAddress
from corral.models.servers import Server
from corral.models.settings import PanelSetting
from corral.servers.errors import NoCapacity, NoNodeAvailable
from corral.servers.naming import NameRefused, normalise_display_name, normalise_hostname
from corral.servers.placement import Demand, choose_node
from corral.servers.root_password import sha512_crypt
from tests.integration.test_servers_pages import Offer, make_offer, make_server, order_key
from tests.support.admin import People, Person, people_for


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("web-1", "web-1"),
        ("Web-1.Example.COM", "web-1.example.com"),
        ("  db1.internal  ", "db1.internal"),
        ("1web.example.com", "1web.example.com"),  # RFC 1123 allows a leading digit
        ("a" * 63 + ".example.com", "a" * 63 + ".example.com"),
        ("x." * 125 + "io", "x." * 125 + "io"),  # 252 characters
    ],
)
def test_valid_hostnames_are_kept_lower_cased(typed: str, stored: str) -> None:
    assert normalise_hostname(typed) == stored


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "-web",
        "web-",
        "web_1",
        "web 1",
        "web..example.com",
        ".web",
        "web.example.com.",
        "a" * 64 + ".example.com",
        "a." * 126 + "io",  # 254 characters
        "10.0.0.1",
        "web.123",
        "wéb.example.com",
        "web;rm -rf",
        "web\n1",
    ],
)
def test_invalid_hostnames_are_refused(typed: str) -> None:
    with pytest.raises(NameRefused):
        normalise_hostname(typed)


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("web-1", "web-1"),
        ("  My   Web  server ", "My Web server"),
        ("db1.example.com", "db1.example.com"),
        ("Scunthorpe backups", "Scunthorpe backups"),  # a blocked word inside another is fine
        ("Ünïcode ✓ name", "Ünïcode ✓ name"),
        ("x" * 64, "x" * 64),
    ],
)
def test_ordinary_display_names_pass(typed: str, kept: str) -> None:
    assert normalise_display_name(typed) == kept


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "   ",
        "x" * 65,
        "line\nbreak",
        "tab\there",
        "bidi\u202eevil",
        "zero\u200bwidth",
        "visit https://phish.example",
        "www.example.com",
        "ftp://files",
        "retard box",
        "R3T4RD",
        "n.i.g.g.e.r",
        "f a g",
    ],
)
def test_the_display_name_filter_refuses(typed: str) -> None:
    with pytest.raises(NameRefused):
        normalise_display_name(typed)


def test_root_passwords_are_sha512_crypt() -> None:
    # glibc's own test vector for SHA-512 crypt.
    assert sha512_crypt("Hello world!", "saltstring") == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
    )
    made = sha512_crypt("correct horse battery")
    assert made.startswith("$6$")
    assert len(made.split("$")[2]) == 16


async def place_order(customer: Person, offer: Offer, name: str) -> httpx.Response:
    """Open the order page and post it for ``offer``, with the order key the page gave."""
    page = await customer.client.get("/servers/new")
    form = {
        "plan_id": str(offer.plan.id),
        "location_id": str(offer.location.id),
        "name": name,
        "order_key": order_key(page.text),
    }
    return await customer.post_form("/servers/new", form)


async def servers_of(db: AsyncSession, customer: Person) -> int:
    """How many servers the customer has, deleted ones included."""
    count = await db.scalar(
        select(func.count()).select_from(Server).where(Server.user_id == customer.user.id)
    )
    return int(count or 0)


async def test_an_order_reserves_the_plan_resources_and_an_address(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()

    response = await place_order(customer, offer, "api-1")

    assert response.status_code == 303
    server = (await db.execute(select(Server).where(Server.user_id == customer.user.id))).scalar_one()
    assert (server.vcpus, server.memory_mib, server.disk_gib, server.status) == (
        2,
        2048,
        40,
        "awaiting_setup",
    )
    held = await db.scalar(
        select(func.count()).select_from(IpAddress).where(IpAddress.server_id == server.id)
    )
    assert held == 1


async def test_a_double_submitted_order_reserves_once(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    key = order_key((await customer.client.get("/servers/new")).text)
    form = {
        "plan_id": str(offer.plan.id),
        "location_id": str(offer.location.id),
        "name": "twice",
        "order_key": key,
    }

    first = await customer.post_form("/servers/new", form)
    second = await customer.post_form("/servers/new", form)

    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert await servers_of(db, customer) == 1
    # A new form (a new key) is a new order.
    fresh = order_key((await customer.client.get("/servers/new")).text)
    assert fresh != key
    third = await customer.post_form("/servers/new", {**form, "order_key": fresh})
    assert third.headers["location"] != first.headers["location"]


async def test_the_server_limit_is_enforced(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    db.add(PanelSetting(key="customer_server_limit", value=2))
    await db.flush()
    customer = await people.sign_in()
    await make_server(db, offer, customer.user)
    await make_server(db, offer, customer.user, status="deleted")  # deleted ones do not count
    # The order page was opened with room for one more; another tab then took it.
    page = await customer.client.get("/servers/new")
    await make_server(db, offer, customer.user, status="awaiting_setup")

    form = {"plan_id": str(offer.plan.id), "location_id": str(offer.location.id), "name": "third"}
    refused = await customer.post_form("/servers/new", {**form, "order_key": order_key(page.text)})

    assert refused.status_code == 409
    assert "You have reached your limit of 2 servers." in refused.text
    assert 'action="/servers/new"' not in refused.text  # no form that can only fail again
    assert await servers_of(db, customer) == 3


async def test_no_capacity_is_a_clear_refusal_and_leaves_nothing(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db, cpu_total=1)  # the plan wants 2 vCPU
    customer = await people.sign_in()

    refused = await place_order(customer, offer, "too-big")

    assert refused.status_code == 409
    assert "no room for a server of this size" in refused.text
    assert await servers_of(db, customer) == 0


async def test_an_order_while_the_only_node_is_down_says_unavailable_not_full(
    people: People, db: AsyncSession
) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    offer.node.status = "offline"
    await db.flush()

    refused = await place_order(customer, offer, "later")

    assert refused.status_code == 409
    assert "No server node is available in that location right now" in refused.text
    assert "no room" not in refused.text
    with pytest.raises(NoNodeAvailable) as raised:
        await choose_node(db, offer.location.id, Demand(vcpus=1, memory_mib=256, disk_gib=1))
    assert raised.value.code == "no_node_available"
    # Back online but full: that is "no room", a different code.
    offer.node.status = "online"
    offer.node.cpu_total = 1
    await db.flush()
    with pytest.raises(NoCapacity) as full:
        await choose_node(db, offer.location.id, Demand(vcpus=2, memory_mib=256, disk_gib=1))
    assert full.value.code == "no_capacity"
    assert await servers_of(db, customer) == 0


async def test_bad_order_fields_come_back_beside_the_fields(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    elsewhere = await make_offer(db, network="198.51.100.64/28")
    customer = await people.sign_in()

    bad_name = await customer.post_form(
        "/servers/new",
        {"plan_id": str(offer.plan.id), "location_id": str(offer.location.id), "name": "www.spam.example"},
    )
    assert bad_name.status_code == 422
    assert 'data-field-error="name"' in bad_name.text
    not_offered = await customer.post_form(
        "/servers/new",
        {"plan_id": str(offer.plan.id), "location_id": str(elsewhere.location.id), "name": "ok"},
    )
    assert not_offered.status_code == 422
    assert 'data-field-error="plan_id"' in not_offered.text
    assert await servers_of(db, customer) == 0
