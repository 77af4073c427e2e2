"""Nodes, OS templates and their presence on nodes, for tests. Rows are built directly (no driver
call); use the service when a test is about creating a node.

    node = await create_node(db)                         # online, on test:///default, new location
    key = await create_node_key(db)                      # a panel SSH key for ssh connections
    template = await create_template(db)
    link = await put_template_on(db, node, template, present=True)
"""

from __future__ import annotations

import secrets
from typing import Any

import factory
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.locations import Location
from corral.models.nodes import Node, NodeSshKey, NodeStatus, NodeTemplate, OsTemplate
from corral.node_keys.service import context_for, keyring_of, make_key_pair
from corral.nodes.credentials import store
from corral.nodes.schemas import NodeCredentials
from tests.factories.fleet import create_location

# libvirt's in-memory hypervisor (test:///default).
TEST_CONNECTION: dict[str, Any] = {"transport": "test"}
TEST_POOL = "default-pool"  # the storage pool libvirt's test driver starts with


def host_key() -> str:
    """A valid SSH host public key (``type base64``), as a node's would be."""
    key_type, data, _comment = make_key_pair("host").public_key.split(" ", 2)
    return f"{key_type} {data}"


def unreachable_connection(key_id: int) -> dict[str, Any]:
    """An ssh connection that answers nothing: port 1 on loopback refuses at once."""
    return {
        "transport": "ssh",
        "host": "127.0.0.1",
        "port": 1,
        "ssh_user": "nobody",
        "ssh_key_id": key_id,
        "ssh_host_key": host_key(),
    }


async def create_node_key(session: AsyncSession, name: str | None = None) -> NodeSshKey:
    """A real panel key pair, sealed as the service seals it."""
    pair = make_key_pair("corral-test")
    key = NodeSshKey(
        name=name or f"key-{secrets.token_hex(3)}",
        public_key=pair.public_key,
        fingerprint=pair.fingerprint,
        private_key_encrypted="-",
    )
    session.add(key)
    await session.flush()
    key.private_key_encrypted = keyring_of(session).encrypt(pair.private_key, context=context_for(key.id))
    await session.flush()
    return key


class NodeFactory(factory.Factory):  # type: ignore[misc]
    class Meta:
        model = Node

    name = factory.Sequence(lambda n: f"hv{n:03d}")
    driver = "libvirt"
    transport = "test"
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
