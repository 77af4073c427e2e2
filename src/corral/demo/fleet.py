"""The demo fleet: one location, one node on libvirt's in-memory ``test:///default`` hypervisor,
two OS templates and IP pools, so ordering and running servers works on any machine.

The test hypervisor lives inside the serving process and forgets everything when it exits. The
panel's records survive, so on every start :func:`restore_demo_node` rebuilds the node's world from
them: the template volumes, and an instance for every server the panel says exists there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from corral.db.session import transaction
from corral.demo import repository
from corral.drivers.base import Transport
from corral.ipam.schemas import IpPoolCreate
from corral.ipam.service import ipam
from corral.kit.actors import Actor
from corral.kit.errors import PanelError
from corral.kit.logging import get_logger
from corral.models.locations import Location
from corral.models.nodes import Node, NodeStatus, NodeTemplate, OsTemplate
from corral.models.servers import PowerState
from corral.plans.demo import seed_demo_plans
from corral.servers.hypervisor import open_driver
from corral.servers.reconciler import POWER_STATES
from corral.servers.tasks import build_spec

DEMO_URI = "test:///default"  # what the test transport connects to (opened here too, to keep its state)
DEMO_POOL = "default-pool"
DEMO_NODE = "demo-node"
ACTOR = Actor.system("demo")
log = get_logger("corral.demo")


@dataclass(frozen=True)
class DemoTemplate:
    slug: str
    name: str
    family: str
    version: str
    volume: str


DEMO_TEMPLATES = (
    DemoTemplate("debian-12", "Debian 12 (Bookworm)", "debian", "12", "debian-12.qcow2"),
    DemoTemplate("ubuntu-24.04", "Ubuntu 24.04 LTS", "ubuntu", "24.04", "ubuntu-24.04.qcow2"),
)


async def seed_demo_fleet(session: AsyncSession) -> None:
    """Create the demo location, node, templates, plans and pools that are missing (idempotent)."""
    location = await repository.location_by_slug(session, "demo-1")
    if location is None:
        location = Location(slug="demo-1", name="Demo Region", country_code="AU")
        session.add(location)
        await session.flush()
    node = await repository.node_by_name(session, DEMO_NODE)
    if node is None:
        node = Node(
            name=DEMO_NODE,
            location_id=location.id,
            driver="libvirt",
            transport=Transport.TEST.value,
            storage_pool=DEMO_POOL,
            network="default",
            domain_type="qemu",
            cpu_total=16,
            memory_total_mib=65536,
            disk_total_gib=2000,
            status=NodeStatus.ONLINE.value,
        )
        session.add(node)
        await session.flush()
    for spec in DEMO_TEMPLATES:
        template = await repository.template_by_slug(session, spec.slug)
        if template is None:
            template = OsTemplate(
                slug=spec.slug, name=spec.name, os_family=spec.family, os_version=spec.version, min_disk_gib=5
            )
            session.add(template)
            await session.flush()
        present = await repository.node_template(session, node.id, template.id)
        if present is None:
            session.add(NodeTemplate(node_id=node.id, template_id=template.id, image_ref=spec.volume))
    await seed_demo_plans(session, location.id)
    for name, network, gateway, dns in (
        ("demo-ipv4", "192.0.2.0/24", "192.0.2.1", ["192.0.2.53"]),
        ("demo-ipv6", "2001:db8:c0::/64", "2001:db8:c0::1", ["2001:db8:c0::53"]),
    ):
        if await repository.pool_by_name(session, name) is None:
            try:
                await ipam.create_pool(
                    session,
                    ACTOR,
                    IpPoolCreate(
                        name=name, network=network, gateway=gateway, dns_servers=dns, location_id=location.id
                    ),
                )
            except PanelError as error:  # a pool the operator made by hand may overlap; keep theirs
                log.warning("demo_pool_skipped", pool=name, reason=str(error))
    await session.flush()


def _ensure_template_volumes(conn: Any) -> None:
    from corral.drivers.libvirt.xml import VolumeConfig  # libvirt is only needed for the demo node

    pool = conn.storagePoolLookupByName(DEMO_POOL)
    existing = set(pool.listVolumes())
    for spec in DEMO_TEMPLATES:
        if spec.volume not in existing:
            pool.createXML(
                VolumeConfig(name=spec.volume, capacity_bytes=5 * 1024**3, format="qcow2").to_xml(), 0
            )


def _remove_sample_domain(conn: Any) -> None:
    """The test hypervisor starts with a sample domain named "test". The demo node belongs to the
    panel alone, so the sample would only show up as drift."""
    import libvirt

    try:
        sample = conn.lookupByName("test")
    except libvirt.libvirtError:
        return
    if sample.isActive():
        sample.destroy()
    sample.undefine()


async def restore_demo_node(factory: async_sessionmaker[AsyncSession]) -> Any:
    """Rebuild the test hypervisor's state from the panel's records. Returns the libvirt connection,
    which the caller keeps open for as long as the process serves: the test driver keeps its state
    only while some connection to it is open."""
    import libvirt

    conn = libvirt.open(DEMO_URI)
    _ensure_template_volumes(conn)
    _remove_sample_domain(conn)
    async with transaction(factory) as session:
        node = await repository.node_by_name(session, DEMO_NODE, transport=Transport.TEST.value)
        if node is None:
            return conn
        placed = await repository.running_servers_on(session, node.id)
        restored = 0
        async with open_driver(session, node.id) as driver:
            for server in placed:
                spec = await build_spec(session, server, ssh_keys=[], root_password_hash=None)
                instance = await driver.create(spec, start=server.power_state != "stopped")
                server.external_id = instance.external_id
                server.power_state = POWER_STATES.get(instance.state, PowerState.UNKNOWN).value
                restored += 1
        log.info("demo_node_restored", servers=restored)
    return conn
