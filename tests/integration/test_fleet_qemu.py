"""End to end through the panel: a real libvirtd with QEMU (TCG), a real job worker, real PostgreSQL.

A tiny guest built from Debian packages (tests/support/guest_image.py) is registered as an OS
template on a node; a server is ordered and set up through the panel's services; the provisioning
job builds it; the guest boots and prints the hostname from its cloud-init seed on the serial
console. Then it is stopped and started, reinstalled, and destroyed, and nothing is left: no
domain, no volume, no IP address.

Skipped only when no libvirt daemon can be started here (the reason is printed).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from corral.config import Settings
from corral.db.session import create_session_factory, transaction
from corral.drivers.libvirt.xml import VolumeConfig
from corral.ipam.schemas import IpPoolCreate
from corral.ipam.service import ipam
from corral.jobs.runtime import JobRuntime
from corral.kit.actors import Actor
from corral.models.ipam import IpAddress
from corral.models.locations import Location
from corral.models.nodes import Node, NodeTemplate, OsTemplate
from corral.models.servers import Server
from corral.servers.service import ServerOrder, ServerSetup, servers
from corral.servers.tasks import instance_name
from tests.factories.users import create_user
from tests.support.guest_image import GuestImage, ensure_guest_image
from tests.support.jobs import run_job
from tests.support.libvirt_env import (
    LibvirtUnavailable,
    StoragePoolDir,
    dir_pool,
    ensure_libvirtd,
    qemu_readable_dir,
)

TEMPLATE_VOLUME = "panel-tiny.qcow2"
BOOT_DEADLINE_S = 120.0
ACTOR = Actor.cli("e2e")


@pytest.fixture(scope="module")
def libvirt_uri() -> str:
    try:
        return ensure_libvirtd()
    except LibvirtUnavailable as error:
        pytest.skip(f"NO LIBVIRT DAEMON - real-QEMU panel test not run: {error}")


@pytest.fixture
def guest_files() -> Iterator[Path]:
    image: GuestImage = ensure_guest_image()
    directory = qemu_readable_dir("corral-panel-")
    shutil.copyfile(image.kernel, directory / "vmlinuz")
    shutil.copyfile(image.initrd, directory / "initrd.gz")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pool(libvirt_uri: str) -> Iterator[StoragePoolDir]:
    with dir_pool(libvirt_uri) as test_pool:
        yield test_pool


@dataclass
class Panel:
    factory: async_sessionmaker[AsyncSession]
    conn: Any
    pool: StoragePoolDir
    logs: Path
    user_id: int
    location_id: int
    template_id: int


@pytest.fixture
async def panel(
    libvirt_uri: str,
    pool: StoragePoolDir,
    guest_files: Path,
    fresh_database: Callable[[], URL],
    settings: Settings,
) -> AsyncIterator[Panel]:
    conn: Any = libvirt.open(libvirt_uri)
    conn.storagePoolLookupByName(pool.name).createXML(
        VolumeConfig(name=TEMPLATE_VOLUME, capacity_bytes=64 * 1024**2, format="qcow2").to_xml(), 0
    )
    url = fresh_database()
    engine = create_async_engine(url)
    factory = create_session_factory(engine, settings)
    async with transaction(factory) as session:
        user = await create_user(session)
        location = Location(slug="lab1", name="Lab One", country_code="AU")
        session.add(location)
        await session.flush()
        node = Node(
            name="qemu-node",
            location_id=location.id,
            driver="libvirt",
            transport="local",  # qemu:///system, what libvirt_uri names
            storage_pool=pool.name,
            network="default",
            domain_type="qemu",
            # The guest kernel has virtio-scsi but no AHCI; user networking needs no host bridge.
            driver_options={"cdrom_bus": "scsi", "network_type": "user", "serial_log_dir": str(guest_files)},
            cpu_total=2,
            memory_total_mib=2048,
            disk_total_gib=20,
            status="online",
        )
        os_template = OsTemplate(
            slug="tiny", name="Tiny Linux", os_family="linux", os_version="1", min_disk_gib=1
        )
        session.add_all([node, os_template])
        await session.flush()
        session.add(
            NodeTemplate(
                node_id=node.id,
                template_id=os_template.id,
                image_ref=TEMPLATE_VOLUME,
                boot_kernel=str(guest_files / "vmlinuz"),
                boot_initrd=str(guest_files / "initrd.gz"),
                boot_cmdline="console=tty0 console=ttyS0,115200 loglevel=4",
            )
        )
        await ipam.create_pool(
            session,
            ACTOR,
            IpPoolCreate(
                name="lab-v4",
                network="10.0.2.0/28",
                gateway="10.0.2.2",
                dns_servers=["10.0.2.3"],
                location_id=location.id,
            ),
        )
        ids = (user.id, location.id, os_template.id)
    runtime = JobRuntime(url, settings, poll_interval=0.2)
    await runtime.open()
    await runtime.start_worker()
    try:
        yield Panel(factory, conn, pool, guest_files, *ids)
    finally:
        await runtime.close()
        await engine.dispose()
        for domain in conn.listAllDomains():
            if domain.name().startswith("corral-"):
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
        conn.close()


def _read(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


async def serial_markers(log: Path, *, hostname: str, not_instance: str | None = None) -> dict[str, str]:
    """Poll the guest's serial log until it reports ``hostname`` (and a new instance id, if asked)."""
    deadline = time.monotonic() + BOOT_DEADLINE_S
    text = ""
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(_read, log)
        markers = dict(re.findall(r"^(CORRAL-[A-Z-]+)=(\S+)\r?$", text, re.MULTILINE))
        booted = "CORRAL-READY" in text and markers.get("CORRAL-HOSTNAME") == hostname
        if booted and (not_instance is None or markers.get("CORRAL-INSTANCE-ID") != not_instance):
            return markers
        await asyncio.sleep(0.2)
    raise AssertionError(f"no boot with hostname {hostname} within {BOOT_DEADLINE_S:.0f}s:\n{text[-2000:]}")


async def row(panel: Panel, server_id: int) -> Server:
    async with panel.factory() as session:
        server = await session.get(Server, server_id)
    assert server is not None
    return server


async def test_a_real_guest_through_the_panel(panel: Panel) -> None:
    volumes_before = {path.name for path in panel.pool.path.iterdir()}
    async with transaction(panel.factory) as session:
        order = ServerOrder(
            user_id=panel.user_id,
            location_id=panel.location_id,
            name="lab",
            vcpus=1,
            memory_mib=256,
            disk_gib=1,
        )
        server_id = (await servers.reserve(session, ACTOR, order)).id
    hostname = "lab-one.example.net"
    setup = ServerSetup(
        template_id=panel.template_id, hostname=hostname, ssh_keys=["ssh-ed25519 AAAAC3Nz e2e"]
    )
    log = panel.logs / f"{instance_name(server_id)}-serial0.log"

    await run_job(
        panel.factory, lambda session: servers.setup(session, ACTOR, server_id, setup), deadline_s=180
    )
    server = await row(panel, server_id)
    assert server.status == "active"
    assert server.external_id is not None
    first_boot = await serial_markers(log, hostname=hostname)

    await run_job(
        panel.factory, lambda session: servers.power(session, ACTOR, server_id, "stop"), deadline_s=180
    )
    assert (await row(panel, server_id)).power_state == "stopped"
    log.unlink(missing_ok=True)
    await run_job(
        panel.factory, lambda session: servers.power(session, ACTOR, server_id, "start"), deadline_s=180
    )
    assert (await row(panel, server_id)).power_state == "running"
    await serial_markers(log, hostname=hostname)  # it booted again

    await run_job(
        panel.factory, lambda session: servers.reinstall(session, ACTOR, server_id, setup), deadline_s=180
    )
    await serial_markers(log, hostname=hostname, not_instance=first_boot["CORRAL-INSTANCE-ID"])

    await run_job(
        panel.factory,
        lambda session: servers.destroy(session, ACTOR, server_id, reason="e2e done"),
        deadline_s=180,
    )
    assert (await row(panel, server_id)).status == "deleted"
    assert [d.name() for d in panel.conn.listAllDomains() if d.name() == instance_name(server_id)] == []
    panel.conn.storagePoolLookupByName(panel.pool.name).refresh(0)
    assert {path.name for path in panel.pool.path.iterdir()} == volumes_before
    async with panel.factory() as session:
        held = await session.scalar(
            select(func.count()).select_from(IpAddress).where(IpAddress.server_id == server_id)
        )
    assert held == 0
