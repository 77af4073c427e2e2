"""Nodes through the JSON API: create with the connection test, validation, credentials at rest,
edits, maintenance, delete, permissions. libvirt's in-memory ``test:///default`` is the node; the
unreachable one is ssh to port 1 on loopback with a panel key (refused at once)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from corral.config import Settings
from corral.kit.crypto import Keyring
from corral.models.locations import Location
from corral.models.nodes import Node
from corral.models.users import UserRole
from corral.nodes.credentials import context_for
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import (
    TEST_CONNECTION,
    TEST_POOL,
    create_node,
    create_node_key,
    unreachable_connection,
)
from tests.integration.test_nodes_support import audit_events, error_code
from tests.support.admin import People, Person, people_for

API = "/api/v1/admin/nodes"
SECRET = "s3cret-Node-Passw0rd"  # must never show up anywhere but the ciphertext


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


@pytest.fixture
async def location(db: AsyncSession) -> Location:
    return await create_location(db, slug="syd1", name="Sydney 1")


@pytest.fixture
async def unreachable(db: AsyncSession) -> dict[str, Any]:
    return unreachable_connection((await create_node_key(db)).id)


def node_body(location: Location, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "syd1-hv01",
        "location_id": location.id,
        "driver": "libvirt",
        **TEST_CONNECTION,
        "storage_pool": TEST_POOL,
        "domain_type": "qemu",
    }
    body.update(overrides)
    return body


async def create(person: Person, body: dict[str, Any]) -> Any:
    response = await person.post_json(API, body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_reachable_node_is_saved_online_with_the_capacity_it_reports(
    people: People, db: AsyncSession, location: Location
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    node = await create(operator, node_body(location, cpu_oversell=4, memory_oversell=1.5))

    # test:///default reports 16 CPUs, 3 GiB of memory and a 100 GiB pool.
    assert (node["cpu_total"], node["memory_total_mib"], node["disk_total_gib"]) == (16, 3072, 100)
    assert (node["cpu_oversell"], node["memory_oversell"], node["disk_oversell"]) == (4.0, 1.5, 1.0)
    assert node["status"] == "online"
    assert node["last_error"] is None
    assert node["last_checked_at"] is not None
    assert node["credentials_set"] is False
    [event] = await audit_events(db, "node.")
    assert event.action == "node.create"
    assert event.payload["status"] == "online"
    assert event.target_id == str(node["id"])


async def test_capacity_given_wins_over_what_the_node_reports(people: People, location: Location) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    node = await create(operator, node_body(location, cpu_total=8, disk_total_gib=40, maintenance=True))
    assert (node["cpu_total"], node["memory_total_mib"], node["disk_total_gib"]) == (8, 3072, 40)
    assert node["status"] == "maintenance"


async def test_credentials_are_encrypted_per_row_and_never_come_back(
    people: People, db: AsyncSession, location: Location, settings: Settings
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    body = node_body(location, credentials={"username": "corral", "password": SECRET})

    node = await create(operator, body)

    assert node["credentials_set"] is True
    assert SECRET not in str(node)
    assert "password" not in node
    assert "credentials" not in node
    stored = await db.get(Node, node["id"])
    assert stored is not None
    assert stored.credentials_encrypted is not None
    raw = (
        await db.execute(text("SELECT nodes::text FROM nodes WHERE id = :id"), {"id": node["id"]})
    ).scalar_one()
    assert SECRET not in raw
    assert "corral" not in raw.replace("corral.", "")
    keyring = Keyring.parse(settings.security.encryption_keys.get_secret_value())
    plain = keyring.decrypt(stored.credentials_encrypted, context=context_for(node["id"]))
    assert SECRET in plain
    # Bound to its row: the same ciphertext does not open as another node's.
    with pytest.raises(ValueError, match="wrong key or context"):
        keyring.decrypt(stored.credentials_encrypted, context=context_for(node["id"] + 1))

    listed = await operator.client.get(API)
    detail = await operator.client.get(f"{API}/{node['id']}")
    page = await operator.client.get(f"/admin/nodes/{node['id']}")
    form = await operator.client.get(f"/admin/nodes/{node['id']}/edit")
    nodes_page = await operator.client.get("/admin/nodes")
    for response in (listed, detail, page, form, nodes_page):
        assert response.status_code == 200
        assert SECRET not in response.text
        assert stored.credentials_encrypted not in response.text
    assert "<strong>set</strong>" in form.text
    audit_text = " ".join(str(event.payload) for event in await audit_events(db, ""))
    assert SECRET not in audit_text
    assert stored.credentials_encrypted not in audit_text


async def test_replacing_and_clearing_credentials(
    people: People, db: AsyncSession, location: Location
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    node = await create(operator, node_body(location, credentials={"username": "a", "password": "first"}))
    first = await db.get(Node, node["id"])
    assert first is not None
    before = first.credentials_encrypted

    replaced = await operator.client.patch(
        f"{API}/{node['id']}", json={"credentials": {"password": SECRET}}, headers=operator.headers()
    )
    assert replaced.status_code == 200, replaced.text
    await db.refresh(first)
    assert first.credentials_encrypted not in (None, before)
    cleared = await operator.client.patch(
        f"{API}/{node['id']}", json={"clear_credentials": True}, headers=operator.headers()
    )
    assert cleared.json()["credentials_set"] is False

    updates = [event for event in await audit_events(db, "node.") if event.action == "node.update"]
    assert [event.payload.get("login") for event in updates] == ["replaced", "cleared"]
    assert [event.payload["after"].get("login_set") for event in updates] == [None, False]
    assert all(SECRET not in str(event.payload) for event in updates)


async def test_an_unreachable_node_is_refused_with_the_drivers_message(
    people: People, db: AsyncSession, location: Location, unreachable: dict[str, Any]
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    message = "Connection refused"

    refused = await operator.post_json(API, node_body(location, **unreachable))

    assert refused.status_code == 422
    body = refused.json()
    assert error_code(body) == "node_unreachable"
    assert message in body["message"]
    assert message in body["details"]["error"]
    assert "Traceback" not in refused.text
    assert (await operator.client.get(API)).json() == []


async def test_an_unreachable_node_can_be_saved_offline_with_the_error(
    people: People, location: Location, unreachable: dict[str, Any]
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    body = node_body(
        location,
        **unreachable,
        allow_unreachable=True,
        maintenance=True,  # asked for, but an unreachable node is stored offline
        cpu_total=32,
        memory_total_mib=131072,
        disk_total_gib=2000,
    )

    node = await create(operator, body)

    assert node["status"] == "offline"
    assert "Connection refused" in node["last_error"]

    without_capacity = await operator.post_json(
        API, node_body(location, name="hv-nocap", **unreachable, allow_unreachable=True)
    )
    assert without_capacity.status_code == 422
    assert error_code(without_capacity.json()) == "capacity_unknown"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"driver": "vmware"}, "driver"),
        ({"transport": "https"}, "transport"),
        ({"transport": "tcp"}, "transport"),
        ({"transport": "tls", "host": "root:hunter2@hv.example.net"}, "host"),
        ({"transport": "tls", "host": "hv.example.net:16514"}, "host"),
        ({"transport": "tls", "port": 70000, "host": "hv.example.net"}, "port"),
        ({"cpu_total": 0}, "cpu_total"),
        ({"memory_total_mib": -1}, "memory_total_mib"),
        ({"cpu_oversell": 0.5}, "cpu_oversell"),
        ({"disk_oversell": 10.5}, "disk_oversell"),
        ({"domain_type": "xen"}, "domain_type"),
        ({"name": "bad name!"}, "name"),
        ({"storage_pool": "../etc"}, "storage_pool"),
    ],
)
async def test_invalid_nodes_are_refused_before_any_connection(
    people: People, location: Location, overrides: dict[str, Any], field: str
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    response = await operator.post_json(API, node_body(location, **overrides))

    assert response.status_code == 422, response.text
    assert error_code(response.json()) == "validation_failed"
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert "hunter2" not in response.text


async def test_names_are_unique_and_the_location_must_exist(
    people: People, db: AsyncSession, location: Location
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    await create_node(db, location=location, name="taken")

    taken = await operator.post_json(API, node_body(location, name="taken"))
    nowhere = await operator.post_json(API, node_body(location, location_id=999_999))

    assert (taken.status_code, error_code(taken.json())) == (409, "node_name_taken")
    assert (nowhere.status_code, error_code(nowhere.json())) == (422, "unknown_location")


async def test_the_connection_test_reports_the_host_or_the_error(
    people: People, db: AsyncSession, location: Location
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    good = await operator.post_json(f"{API}/test-connection", {**TEST_CONNECTION, "storage_pool": TEST_POOL})
    unreachable = unreachable_connection((await create_node_key(db)).id)
    bad = await operator.post_json(f"{API}/test-connection", unreachable)
    no_pool = await operator.post_json(
        f"{API}/test-connection", {**TEST_CONNECTION, "storage_pool": "no-such-pool"}
    )

    assert good.status_code == 200
    assert good.json()["ok"] is True
    assert good.json()["host"]["cpus"] == 16
    assert good.json()["host"]["storage_total_gib"] == 100
    assert good.json()["host"]["hypervisor"] == "TEST"
    assert (bad.status_code, bad.json()["ok"], bad.json()["status"]) == (200, False, "offline")
    assert "Connection refused" in bad.json()["error"]
    assert (no_pool.json()["ok"], no_pool.json()["status"]) == (False, "unhealthy")
    assert "storage pool 'no-such-pool' does not exist" in no_pool.json()["error"]
    assert await audit_events(db, "node.") == []  # a test changes nothing


async def test_changing_the_connection_tests_it_again(
    people: People, db: AsyncSession, location: Location, unreachable: dict[str, Any]
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    node = await create(operator, node_body(location))
    url = f"{API}/{node['id']}"

    refused = await operator.client.patch(url, json=unreachable, headers=operator.headers())
    assert (refused.status_code, error_code(refused.json())) == (422, "node_unreachable")
    assert (await operator.client.get(url)).json()["transport"] == "test"

    forced = await operator.client.patch(
        url, json={**unreachable, "allow_unreachable": True}, headers=operator.headers()
    )
    assert forced.json()["status"] == "offline"
    assert forced.json()["connection"] == "ssh nobody@127.0.0.1:1"
    back = await operator.client.patch(url, json=TEST_CONNECTION, headers=operator.headers())
    # Giving the transport replaces the whole connection: the ssh fields are gone.
    gone = ("host", "ssh_user", "ssh_key_id", "ssh_host_key")
    assert [back.json()[name] for name in gone] == [None, None, None, None]
    assert (back.json()["status"], back.json()["last_error"]) == ("online", None)
    capacity_only = await operator.client.patch(url, json={"cpu_oversell": 3}, headers=operator.headers())
    assert capacity_only.json()["cpu_oversell"] == 3.0

    wrong_transport = await operator.client.patch(
        url, json={"driver": "libvirt", "transport": "https"}, headers=operator.headers()
    )
    assert wrong_transport.status_code == 422
    # A host alone on a test node: the merged connection is checked, not just the fields sent.
    host_on_test = await operator.client.patch(
        url, json={"host": "hv.example.net"}, headers=operator.headers()
    )
    assert (host_on_test.status_code, error_code(host_on_test.json())) == (422, "validation_failed")
    updates = [event.payload for event in await audit_events(db, "node.update")]
    assert updates[0]["after"] == {
        "transport": "ssh",
        "host": "127.0.0.1",
        "port": 1,
        "ssh_user": "nobody",
        "ssh_key_id": unreachable["ssh_key_id"],
        "ssh_host_key": unreachable["ssh_host_key"],
        "status": "offline",
    }
    assert updates[-1] == {"before": {"cpu_oversell": 1.0}, "after": {"cpu_oversell": 3.0}}


async def test_maintenance_in_and_out(
    people: People, db: AsyncSession, location: Location, unreachable: dict[str, Any]
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    node = await create(operator, node_body(location))
    url = f"{API}/{node['id']}/maintenance"

    entered = await operator.post_json(url, {"enabled": True})
    again = await operator.post_json(url, {"enabled": True})
    left = await operator.post_json(url, {"enabled": False})

    assert entered.json()["status"] == "maintenance"
    assert again.json()["status"] == "maintenance"
    assert left.json()["status"] == "online"
    actions = [event.action for event in await audit_events(db, "node.maintenance")]
    assert actions == ["node.maintenance.enter", "node.maintenance.leave"]

    # Leaving maintenance asks the node first: one that does not answer comes back offline.
    stored = await db.get(Node, node["id"])
    assert stored is not None
    await operator.post_json(url, {"enabled": True})
    for name, value in unreachable.items():
        setattr(stored, name, value)
    await db.flush()
    offline = await operator.post_json(url, {"enabled": False})
    assert offline.json()["status"] == "offline"
    assert "Connection refused" in offline.json()["last_error"]


async def test_a_node_with_servers_cannot_be_deleted(
    people: People, db: AsyncSession, location: Location
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    busy = await create_node(db, location=location)
    await create_server(db, location=location, node_id=busy.id)
    idle = await create_node(db, location=location)

    refused = await operator.client.delete(f"{API}/{busy.id}", headers=operator.headers())
    deleted = await operator.client.delete(f"{API}/{idle.id}", headers=operator.headers())

    assert (refused.status_code, error_code(refused.json())) == (409, "node_in_use")
    assert deleted.status_code == 204
    assert [event.action for event in await audit_events(db, "node.")] == ["node.delete"]


async def test_support_reads_customers_are_refused_operators_manage(
    people: People, db: AsyncSession, location: Location
) -> None:
    node = await create_node(db, location=location)
    customer = await people.sign_in(UserRole.CUSTOMER)
    support = await people.sign_in(UserRole.SUPPORT)
    billing = await people.sign_in(UserRole.BILLING)
    body = node_body(location, name="new-node")

    for path in (API, f"{API}/{node.id}", "/admin/nodes", f"/admin/nodes/{node.id}"):
        assert (await customer.client.get(path)).status_code == 403, path
        assert (await billing.client.get(path)).status_code == 403, path
        assert (await support.client.get(path)).status_code == 200, path
    page = await support.client.get(f"/admin/nodes/{node.id}")
    assert "Start maintenance" not in page.text
    assert "Edit" not in page.text
    assert "Add node" not in (await support.client.get("/admin/nodes")).text

    for person in (customer, support, billing):
        assert (await person.post_json(API, body)).status_code == 403
        assert (await person.post_json(f"{API}/test-connection", TEST_CONNECTION)).status_code == 403
        assert (await person.post_json(f"{API}/{node.id}/maintenance", {"enabled": True})).status_code == 403
        assert (await person.post_json(f"{API}/{node.id}/check")).status_code == 403
        patch = await person.client.patch(f"{API}/{node.id}", json={"name": "x"}, headers=person.headers())
        assert patch.status_code == 403
        assert (await person.client.delete(f"{API}/{node.id}", headers=person.headers())).status_code == 403
        assert (await person.client.get("/admin/nodes/new")).status_code == 403
        assert (await person.post_form(f"/admin/nodes/{node.id}/delete")).status_code == 403
    assert await audit_events(db, "node.") == []

    super_admin = await people.sign_in(UserRole.SUPER_ADMIN)
    assert (await super_admin.post_json(API, body)).status_code == 201


async def test_a_node_with_servers_stays_in_its_location(
    people: People, db: AsyncSession, location: Location
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    elsewhere = await create_location(db)
    busy = await create_node(db, location=location)
    await create_server(db, location=location, node_id=busy.id)
    idle = await create_node(db, location=location)

    refused = await operator.client.patch(
        f"{API}/{busy.id}", json={"location_id": elsewhere.id}, headers=operator.headers()
    )
    moved = await operator.client.patch(
        f"{API}/{idle.id}", json={"location_id": elsewhere.id}, headers=operator.headers()
    )

    assert (refused.status_code, error_code(refused.json())) == (409, "node_in_use")
    assert moved.json()["location_id"] == elsewhere.id
