"""Nodes, OS templates and their presence on nodes, for tests. Rows are built directly (no driver
call); use the service when a test is about creating a node.

    node = await create_node(db)                         # online, on test:///default, new location
    template = await create_template(db)
    link = await put_template_on(db, node, template, present=True)
"""

from __future__ import annotations

from typing import Any

import factory
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.locations import Location
from corral.models.nodes import Node, NodeStatus, NodeTemplate, OsTemplate
from corral.nodes.credentials import store
from corral.nodes.schemas import NodeCredentials
from tests.factories.fleet import create_location

TEST_URI = "test:///default"
TEST_POOL = "default-pool"  # the storage pool libvirt's test driver starts with
# Answers nothing: the ssh connection is refused at once.
UNREACHABLE_URI = "qemu+ssh://nobody@127.0.0.1:1/system"


class NodeFactory(factory.Factory):  # type: ignore[misc]
    class Meta:
        model = Node

    name = factory.Sequence(lambda n: f"hv{n:03d}")
    driver = "libvirt"
    connection_uri = TEST_URI
    storage_pool = TEST_POOL
    network = "default"
    domain_type = "qemu"
    cpu_total = 16
    memory_total_mib = 65_536
    disk_total_gib = 1_000
    cpu_oversell = 1.0
    memory_oversell = 1.0
    disk_oversell = 1.0
    status = NodeStatus.ONLINE.value


async def create_node(
    session: AsyncSession,
    *,
    location: Location | None = None,
    credentials: NodeCredentials | None = None,
    **overrides: Any,
) -> Node:
    location = location or await create_location(session)
    node: Node = NodeFactory.build(location_id=location.id, **overrides)
    session.add(node)
    await session.flush()
    if credentials is not None:
        store(session, node, credentials)
        await session.flush()
    return node


class OsTemplateFactory(factory.Factory):  # type: ignore[misc]
    class Meta:
        model = OsTemplate

    slug = factory.Sequence(lambda n: f"os-{n}")
    name = factory.Sequence(lambda n: f"Linux {n}")
    os_family = "debian"
    os_version = "12"
    min_disk_gib = 5
    cloud_init = True
    default_user = "debian"
    active = True


async def create_template(session: AsyncSession, **overrides: Any) -> OsTemplate:
    template: OsTemplate = OsTemplateFactory.build(**overrides)
    session.add(template)
    await session.flush()
    return template


async def put_template_on(
    session: AsyncSession,
    node: Node,
    template: OsTemplate,
    *,
    present: bool = True,
    image_ref: str | None = None,
) -> NodeTemplate:
    link = NodeTemplate(
        node_id=node.id,
        template_id=template.id,
        image_ref=image_ref or f"{template.slug}.qcow2",
        present=present,
    )
    session.add(link)
    await session.flush()
    return link
