"""OS templates: the catalogue through the API and pages, their presence on nodes (checked against
libvirt's ``test:///default`` storage pool), and the offering rule."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import libvirt
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.drivers.base import DriverConnection, Endpoint, Transport
from corral.drivers.libvirt.xml import VolumeConfig
from corral.drivers.registry import get_driver
from corral.kit.actors import Actor
from corral.models.nodes import NodeStatus
from corral.models.users import UserRole
from corral.nodes import health
from corral.nodes.probe import ImageInventory
from corral.templates.service import templates
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import TEST_POOL, create_node, create_template, put_template_on
from tests.integration.test_nodes_support import audit_events, error_code
from tests.support.admin import People, people_for

API = "/api/v1/admin/os-templates"
DEBIAN = {
    "slug": "Debian-12",
    "name": "Debian 12 (Bookworm)",
    "os_family": "Debian",
    "os_version": "12",
    "min_disk_gib": 3,
    "cloud_init": True,
    "default_user": "debian",
}


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


class PoolVolumes:
    """Volumes in the test driver's pool, which every connection in this process shares."""

    def __init__(self) -> None:
        self.conn: Any = libvirt.open("test:///default")
        self.pool: Any = self.conn.storagePoolLookupByName(TEST_POOL)
        self.made: list[str] = []

    def add(self, prefix: str) -> str:
        name = f"{prefix}-{secrets.token_hex(4)}.qcow2"
        self.pool.createXML(VolumeConfig(name=name, capacity_bytes=1024**3, format="qcow2").to_xml(), 0)
        self.made.append(name)
        return name

    def remove(self, name: str) -> None:
        self.pool.storageVolLookupByName(name).delete(0)
        self.made.remove(name)

    def close(self) -> None:
        for name in list(self.made):
            self.remove(name)
        self.conn.close()


@pytest.fixture
def volumes() -> Iterator[PoolVolumes]:
    pool = PoolVolumes()
    yield pool
    pool.close()


async def test_an_operator_manages_the_catalogue(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    created = await operator.post_json(API, DEBIAN)
    assert created.status_code == 201, created.text
    template = created.json()
    assert (template["slug"], template["os_family"], template["active"]) == ("debian-12", "debian", True)
    taken = await operator.post_json(API, {**DEBIAN, "name": "Again"})
    assert (taken.status_code, error_code(taken.json())) == (409, "template_slug_taken")

    url = f"{API}/{template['id']}"
    changed = await operator.client.patch(
        url, json={"active": False, "min_disk_gib": 4}, headers=operator.headers()
    )
    assert (changed.json()["active"], changed.json()["min_disk_gib"]) == (False, 4)
    detail = await operator.client.get(url)
    assert detail.json()["nodes"] == []
    assert (await operator.client.delete(url, headers=operator.headers())).status_code == 204
    assert (await operator.client.get(url)).status_code == 404

    assert [event.action for event in await audit_events(db, "os_template.")] == [
        "os_template.create",
        "os_template.update",
        "os_template.delete",
    ]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"slug": "a"}, "slug"),
        ({"slug": "with/slash"}, "slug"),
        ({"os_family": "Debian Linux"}, "os_family"),
        ({"os_version": ""}, "os_version"),
        ({"min_disk_gib": 0}, "min_disk_gib"),
        ({"default_user": "Root User"}, "default_user"),
        ({"name": ""}, "name"),
    ],
)
async def test_invalid_templates_are_refused(people: People, overrides: dict[str, Any], field: str) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    response = await operator.post_json(API, {**DEBIAN, **overrides})
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == [field]


async def test_a_template_servers_were_installed_from_is_deactivated_not_deleted(
    people: People, db: AsyncSession
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    template = await create_template(db)
    await create_server(db, template_id=template.id)

    refused = await operator.client.delete(f"{API}/{template.id}", headers=operator.headers())

    assert (refused.status_code, error_code(refused.json())) == (409, "template_in_use")


async def test_who_may_read_and_change_templates(people: People, db: AsyncSession) -> None:
    template = await create_template(db)
    node = await create_node(db)
    customer = await people.sign_in(UserRole.CUSTOMER)
    support = await people.sign_in(UserRole.SUPPORT)

    for path in (API, f"{API}/{template.id}", "/admin/os-templates", f"/admin/os-templates/{template.id}"):
        assert (await customer.client.get(path)).status_code == 403, path
        assert (await support.client.get(path)).status_code == 200, path
    assert "Add a template" not in (await support.client.get("/admin/os-templates")).text
    for person in (customer, support):
        assert (await person.post_json(API, DEBIAN)).status_code == 403
        assert (await person.post_json(f"{API}/{template.id}/nodes", {"node_id": node.id})).status_code == 403
        patch = await person.client.patch(
            f"{API}/{template.id}", json={"active": False}, headers=person.headers()
        )
        assert patch.status_code == 403
        assert (
            await person.client.delete(f"{API}/{template.id}", headers=person.headers())
        ).status_code == 403
    assert await audit_events(db, "os_template.") == []


async def test_listing_on_a_node_checks_the_node_for_the_image(
    people: People, db: AsyncSession, volumes: PoolVolumes
) -> None:
    connection = DriverConnection(endpoint=Endpoint(Transport.TEST), storage_pool=TEST_POOL)
    driver = get_driver("libvirt", connection)
    assert isinstance(driver, ImageInventory), (
        "the libvirt driver needs `async def image_exists(self, image: ImageRef) -> bool` "
        "(corral.nodes.probe.ImageInventory) before template images can be checked on nodes"
    )
    await driver.aclose()
    operator = await people.sign_in(UserRole.OPERATOR)
    node = await create_node(db)
    here = await create_template(db)
    absent = await create_template(db)
    volume = volumes.add("debian")

    found = await operator.post_json(f"{API}/{here.id}/nodes", {"node_id": node.id, "image_ref": volume})
    missing = await operator.post_json(f"{API}/{absent.id}/nodes", {"node_id": node.id})
    twice = await operator.post_json(f"{API}/{here.id}/nodes", {"node_id": node.id, "image_ref": volume})
    bad_ref = await operator.post_json(f"{API}/{absent.id}/nodes", {"node_id": node.id, "image_ref": "../x"})

    assert found.status_code == 201, found.text
    assert (found.json()["image_ref"], found.json()["present"]) == (volume, True)
    assert found.json()["checked_at"] is not None
    assert (missing.json()["image_ref"], missing.json()["present"]) == (f"{absent.slug}.qcow2", False)
    assert (twice.status_code, error_code(twice.json())) == (409, "template_already_on_node")
    assert bad_ref.status_code == 422
    assert [template.id for template in await templates.offered_on(db, node.id)] == [here.id]

    # The image goes away: the next health check notices, and the template is no longer offered.
    volumes.remove(volume)
    await health.check(db, node.id, Actor.system("nodes.health_check"))
    assert await templates.offered_on(db, node.id) == []
    node_page = await operator.client.get(f"/api/v1/admin/nodes/{node.id}")
    presence = {item["slug"]: item["present"] for item in node_page.json()["templates"]}
    assert presence == {here.slug: False, absent.slug: False}

    removed = await operator.client.delete(f"{API}/{here.id}/nodes/{node.id}", headers=operator.headers())
    assert removed.status_code == 204
    actions = [event.action for event in await audit_events(db, "os_template.node")]
    assert actions == ["os_template.node.add", "os_template.node.add", "os_template.node.remove"]


async def test_a_template_missing_on_a_node_is_not_offered_there(db: AsyncSession) -> None:
    location = await create_location(db)
    online = await create_node(db, location=location)
    other = await create_node(db, location=location)
    debian = await create_template(db, slug="debian-12")
    ubuntu = await create_template(db, slug="ubuntu-24.04", os_family="ubuntu", os_version="24.04")
    retired = await create_template(db, slug="centos-7", active=False)
    await put_template_on(db, online, debian, present=True)
    await put_template_on(db, online, ubuntu, present=False)  # listed, but the image is missing
    await put_template_on(db, online, retired, present=True)
    await put_template_on(db, other, ubuntu, present=True)

    def slugs(items: Any) -> list[str]:
        return [item.slug for item in items]

    assert slugs(await templates.offered_on(db, online.id)) == ["debian-12"]
    assert slugs(await templates.offered_on(db, other.id)) == ["ubuntu-24.04"]
    # In the location, a template counts if any online node holds it.
    assert slugs(await templates.offered_in_location(db, location.id)) == ["debian-12", "ubuntu-24.04"]

    other.status = NodeStatus.MAINTENANCE.value
    await db.flush()
    assert await templates.offered_on(db, other.id) == []
    assert slugs(await templates.offered_in_location(db, location.id)) == ["debian-12"]

    for status in (NodeStatus.OFFLINE, NodeStatus.UNHEALTHY):
        online.status = status.value
        await db.flush()
        assert await templates.offered_on(db, online.id) == []
        assert await templates.offered_in_location(db, location.id) == []

    online.status = NodeStatus.ONLINE.value
    location.active = False
    await db.flush()
    assert slugs(await templates.offered_on(db, online.id)) == ["debian-12"]
    assert await templates.offered_in_location(db, location.id) == []


async def test_the_pages_list_add_and_link_templates(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    node = await create_node(db, name="syd1-hv09")

    bad = await operator.post_form(
        "/admin/os-templates",
        {**{key: str(value) for key, value in DEBIAN.items()}, "slug": "x", "active": "on"},
    )
    assert bad.status_code == 422
    assert 'data-field-error="slug"' in bad.text
    assert 'value="Debian 12 (Bookworm)"' in bad.text

    form = {key: str(value) for key, value in DEBIAN.items()}
    added = await operator.post_form("/admin/os-templates", {**form, "cloud_init": "on", "active": "on"})
    assert added.status_code == 303
    listing = await operator.client.get(added.headers["location"])
    assert "Debian 12 (Bookworm)" in listing.text
    assert "OS template added." in listing.text
    template_id = (await operator.client.get(API)).json()[0]["id"]

    detail = await operator.client.get(f"/admin/os-templates/{template_id}")
    assert "syd1-hv09" in detail.text  # offered in "List on a node"
    linked = await operator.post_form(f"/admin/os-templates/{template_id}/nodes", {"node_id": str(node.id)})
    assert linked.status_code == 303
    detail = await operator.client.get(linked.headers["location"])
    assert 'data-testid="template-node-row"' in detail.text
    assert "debian-12.qcow2" in detail.text
    assert "Missing" in detail.text
    node_page = await operator.client.get(f"/admin/nodes/{node.id}")
    assert 'data-testid="node-template-row"' in node_page.text
