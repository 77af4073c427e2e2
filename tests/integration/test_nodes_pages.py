"""The node pages: the list, the add/edit form with its htmx "Test connection", refused saves shown
inline, and the buttons on a node's page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.locations import Location
from corral.models.nodes import Node
from corral.models.users import UserRole
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import TEST_POOL, create_node, create_node_key, unreachable_connection
from tests.integration.test_nodes_support import audit_events
from tests.support.admin import People, Person, people_for

SECRET = "page-form-Passw0rd"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


@pytest.fixture
async def location(db: AsyncSession) -> Location:
    return await create_location(db, name="Sydney 1")


@pytest.fixture
async def unreachable(db: AsyncSession) -> dict[str, str]:
    """The form fields of an ssh connection nothing answers (as typed: all strings)."""
    fields = unreachable_connection((await create_node_key(db)).id)
    return {name: str(value) for name, value in fields.items()}


def form(location: Location, **overrides: str) -> dict[str, str]:
    values = {
        "name": "syd1-hv01",
        "location_id": str(location.id),
        "driver": "libvirt",
        "transport": "test",
        "host": "",
        "port": "",
        "ssh_user": "",
        "ssh_key_id": "",
        "storage_pool": TEST_POOL,
        "network": "default",
        "domain_type": "qemu",
        "cpu_total": "",
        "memory_total_mib": "",
        "disk_total_gib": "",
        "cpu_oversell": "2",
        "memory_oversell": "1.0",
        "disk_oversell": "1.0",
    }
    values.update(overrides)
    return values


async def test_the_list_shows_capacity_usage_and_status_badges(
    people: People, db: AsyncSession, location: Location
) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    busy = await create_node(db, location=location, name="hv-busy", cpu_total=16, cpu_oversell=2.0)
    await create_server(db, location=location, node_id=busy.id, vcpus=4, memory_mib=2048, disk_gib=40)
    await create_node(
        db, location=location, name="hv-down", status="unhealthy", last_error="authentication failed"
    )
    await create_node(db, location=location, name="hv-service", status="maintenance")

    page = await support.client.get("/admin/nodes")

    assert page.status_code == 200
    rows = re.findall(r'data-node="([^"]+)"', page.text)
    assert rows == ["hv-busy", "hv-down", "hv-service"]
    assert "4 / 32" in page.text  # vCPU used / sellable (16 x 2.0)
    assert 'class="badge badge--running"' in page.text
    assert 'class="badge badge--error"' in page.text
    assert 'class="badge badge--suspended"' in page.text
    assert "authentication failed" in page.text


async def test_a_node_is_added_through_the_form_after_a_connection_test(
    people: People, db: AsyncSession, location: Location
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    new = await operator.client.get("/admin/nodes/new")
    assert new.status_code == 200
    assert 'hx-post="/admin/nodes/test-connection"' in new.text
    assert "Sydney 1" in new.text

    tested = await operator.post_htmx("/admin/nodes/test-connection", form(location))
    assert tested.status_code == 200
    assert 'data-ok="true"' in tested.text
    assert "16 \u00d7" in tested.text  # "16 x <model>" CPUs
    assert "3072 MiB" in tested.text
    assert "100 GiB" in tested.text
    # Empty capacity fields come back filled with what the node reported (out-of-band swaps).
    assert re.search(r'id="node-cpu-field" hx-swap-oob="true"', tested.text)
    assert 'value="3072"' in tested.text

    saved = await operator.post_form("/admin/nodes", form(location, username="corral", password=SECRET))
    assert saved.status_code == 303, saved.text
    node = (await db.scalars(select(Node).where(Node.name == "syd1-hv01"))).one()
    assert saved.headers["location"] == f"/admin/nodes/{node.id}?done=created"
    assert (node.status, node.cpu_total, node.cpu_oversell) == ("online", 16, 2.0)
    assert node.credentials_encrypted is not None

    detail = await operator.client.get(saved.headers["location"])
    assert "Node added." in detail.text
    assert 'data-testid="credentials-state">set<' in detail.text
    edit = await operator.client.get(f"/admin/nodes/{node.id}/edit")
    assert SECRET not in edit.text
    assert 'name="password" type="password" autocomplete="new-password"' in edit.text


async def test_the_connection_test_shows_the_drivers_message_not_a_traceback(
    people: People, location: Location, unreachable: dict[str, str]
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    refused = await operator.post_htmx("/admin/nodes/test-connection", form(location, **unreachable))
    invalid = await operator.post_htmx("/admin/nodes/test-connection", form(location, transport="ftp"))

    assert refused.status_code == 200
    assert 'data-ok="false"' in refused.text
    assert "Connection refused" in refused.text
    assert "Fix these before testing" in invalid.text
    for response in (refused, invalid):
        assert "Traceback" not in response.text
        assert "<html" not in response.text


async def test_a_refused_save_keeps_what_was_typed_except_the_credentials(
    people: People, db: AsyncSession, location: Location, unreachable: dict[str, str]
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    refused = await operator.post_form(
        "/admin/nodes", form(location, **unreachable, username="corral", password=SECRET)
    )
    assert refused.status_code == 422
    assert 'data-testid="unreachable"' in refused.text
    assert "Connection refused" in refused.text
    assert 'value="127.0.0.1"' in refused.text
    assert f'<option value="{unreachable["ssh_key_id"]}" selected>' in refused.text
    # Credentials are never written into a page, not even the ones just typed: retype them.
    assert 'value="corral"' not in refused.text
    assert SECRET not in refused.text

    invalid = await operator.post_form("/admin/nodes", form(location, cpu_oversell="11", name="bad name"))
    assert invalid.status_code == 422
    assert 'data-field-error="cpu_oversell"' in invalid.text
    assert 'data-field-error="name"' in invalid.text

    forced = await operator.post_form(
        "/admin/nodes",
        form(
            location,
            **unreachable,
            allow_unreachable="on",
            cpu_total="8",
            memory_total_mib="16384",
            disk_total_gib="500",
        ),
    )
    assert forced.status_code == 303
    assert forced.headers["location"].endswith("?done=created_offline")
    page = await operator.client.get(forced.headers["location"])
    assert 'class="badge badge--stopped"' in page.text
    assert "Connection refused" in page.text


async def test_editing_keeps_stored_credentials_unless_replaced(
    people: People, db: AsyncSession, location: Location
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    created = await operator.post_form("/admin/nodes", form(location, username="corral", password=SECRET))
    node = (await db.scalars(select(Node).where(Node.name == "syd1-hv01"))).one()
    sealed = node.credentials_encrypted
    assert created.status_code == 303

    # The connection test of an edit form uses the stored credentials when none are typed.
    tested = await operator.post_htmx(
        "/admin/nodes/test-connection", {**form(location), "node_id": str(node.id)}
    )
    assert 'data-ok="true"' in tested.text

    saved = await operator.post_form(f"/admin/nodes/{node.id}", form(location, name="syd1-hv01-renamed"))
    assert saved.status_code == 303
    await db.refresh(node)
    assert (node.name, node.credentials_encrypted) == ("syd1-hv01-renamed", sealed)

    cleared = await operator.post_form(f"/admin/nodes/{node.id}", form(location, clear_credentials="on"))
    assert cleared.status_code == 303
    await db.refresh(node)
    assert node.credentials_encrypted is None


async def _buttons(person: Person, node: Node) -> str:
    page = await person.client.get(f"/admin/nodes/{node.id}")
    assert page.status_code == 200
    return page.text


async def test_maintenance_check_and_delete_buttons(
    people: People, db: AsyncSession, location: Location
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    node = await create_node(db, location=location, status="offline")

    assert "Start maintenance" in await _buttons(operator, node)
    checked = await operator.post_form(f"/admin/nodes/{node.id}/check")
    assert checked.headers["location"] == f"/admin/nodes/{node.id}?done=checked"
    await db.refresh(node)
    assert node.status == "online"

    entered = await operator.post_form(f"/admin/nodes/{node.id}/maintenance", {"enabled": "on"})
    assert entered.headers["location"].endswith("done=maintenance_on")
    page = await _buttons(operator, node)
    assert "End maintenance" in page
    assert 'class="badge badge--suspended"' in page
    left = await operator.post_form(f"/admin/nodes/{node.id}/maintenance")
    assert left.headers["location"].endswith("done=maintenance_off")
    await db.refresh(node)
    assert node.status == "online"

    deleted = await operator.post_htmx(f"/admin/nodes/{node.id}/delete")
    assert deleted.headers["HX-Redirect"] == "/admin/nodes?done=deleted"
    assert [event.action for event in await audit_events(db, "node.")] == [
        "node.status.change",
        "node.maintenance.enter",
        "node.maintenance.leave",
        "node.delete",
    ]


async def test_an_edit_with_a_transport_the_driver_does_not_take_is_shown_inline(
    people: People, db: AsyncSession, location: Location
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    node = await create_node(db, location=location)

    unknown = await operator.post_form(f"/admin/nodes/{node.id}", form(location, transport="https"))
    incomplete = await operator.post_form(f"/admin/nodes/{node.id}", form(location, transport="ssh"))

    assert unknown.status_code == 422
    assert 'data-field-error="transport"' in unknown.text
    assert incomplete.status_code == 422
    assert "the ssh transport needs the node&#39;s host name or IP address" in incomplete.text
    await db.refresh(node)
    assert (node.transport, node.host) == ("test", None)
