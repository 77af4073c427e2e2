"""The libvirt driver against libvirt's in-memory ``test:///default`` driver (per process, no
daemon): the full call surface, idempotency on retries, and error mapping. The same code paths on
real QEMU are covered by test_libvirt_qemu.py."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator
from typing import Any

import libvirt
import pytest

from corral.drivers import (
    DriverConnection,
    Endpoint,
    ImageRef,
    InstanceNotFound,
    InstanceSpec,
    InstanceState,
    NetworkInterface,
    PermanentDriverError,
    ResizeSpec,
    TransientDriverError,
    Transport,
    get_driver,
)
from corral.drivers.libvirt.driver import LibvirtDriver
from corral.drivers.libvirt.xml import CorralMetadata, DomainConfig, VolumeConfig
from corral.node_keys.service import make_key_pair
from tests.factories.nodes import host_key

URI = "test:///default"
TEST = Endpoint(Transport.TEST)  # what the driver builds URI from
POOL = "default-pool"  # the test driver's built-in dir pool
TEMPLATE = "corral-template.qcow2"


@pytest.fixture
def conn() -> Any:
    handle = libvirt.open(URI)
    yield handle
    handle.close()


@pytest.fixture
async def driver(conn: Any) -> AsyncIterator[LibvirtDriver]:
    pool = conn.storagePoolLookupByName(POOL)
    if TEMPLATE not in pool.listVolumes():
        pool.createXML(VolumeConfig(name=TEMPLATE, capacity_bytes=2 * 1024**3, format="qcow2").to_xml(), 0)
    driver = get_driver("libvirt", DriverConnection(endpoint=TEST, storage_pool=POOL))
    assert isinstance(driver, LibvirtDriver)
    yield driver
    await driver.aclose()


def _spec(name: str, **overrides: Any) -> InstanceSpec:
    values: dict[str, Any] = {
        "server_id": f"srv-{name}",
        "name": name,
        "hostname": "web1",
        "vcpus": 1,
        "memory_mib": 512,
        "disk_gib": 10,
        "image": ImageRef(volume=TEMPLATE),
        "interfaces": (NetworkInterface(mac="52:54:00:10:20:30", addresses=("192.0.2.5/24",)),),
        "vnc_password": "pw",
    }
    values.update(overrides)
    return InstanceSpec(**values)


def _name() -> str:
    return f"corral-t-{secrets.token_hex(3)}"


def _volumes(conn: Any) -> set[str]:
    return set(conn.storagePoolLookupByName(POOL).listVolumes())


async def test_host_info(driver: LibvirtDriver) -> None:
    host = await driver.host_info()
    assert host.hypervisor == "TEST"
    assert host.cpus == 16
    assert host.memory_bytes > 0
    assert host.storage_total_bytes == 100 * 1024**3
    assert host.driver_version.count(".") == 2


async def test_list_instances_marks_foreign_domains(driver: LibvirtDriver) -> None:
    refs = {ref.name: ref for ref in await driver.list_instances()}
    assert refs["test"].server_id is None  # the test driver's own domain: not ours
    assert refs["test"].state == InstanceState.RUNNING


async def test_create_defines_volumes_metadata_and_starts(driver: LibvirtDriver, conn: Any) -> None:
    name = _name()
    ref = await driver.create(_spec(name))
    assert ref.name == name
    assert ref.server_id == f"srv-{name}"
    assert ref.state == InstanceState.RUNNING
    assert {f"{name}-disk.qcow2", f"{name}-seed.iso"} <= _volumes(conn)
    disk = VolumeConfig.from_xml(
        conn.storagePoolLookupByName(POOL).storageVolLookupByName(f"{name}-disk.qcow2").XMLDesc(0)
    )
    assert disk.capacity_bytes == 10 * 1024**3
    assert disk.backing_path == f"/default-pool/{TEMPLATE}"
    config = DomainConfig.from_xml(conn.lookupByUUIDString(ref.external_id).XMLDesc(0))
    assert config.metadata is not None
    assert config.metadata.server_id == f"srv-{name}"
    assert config.interfaces[0].mac == "52:54:00:10:20:30"
    assert ref in await driver.list_instances()
    await driver.destroy(ref.external_id)


async def test_create_stopped_then_power_cycle(driver: LibvirtDriver) -> None:
    ref = await driver.create(_spec(_name()), start=False)
    assert ref.state == InstanceState.STOPPED
    await driver.start(ref.external_id)
    await driver.start(ref.external_id)  # idempotent
    assert await driver.state(ref.external_id) == InstanceState.RUNNING
    await driver.reboot(ref.external_id)
    await driver.reboot(ref.external_id, force=True)
    await driver.stop(ref.external_id, force=False, timeout_s=10)
    assert await driver.state(ref.external_id) == InstanceState.STOPPED
    await driver.stop(ref.external_id, force=True)  # already off: no error
    await driver.shutdown(ref.external_id)
    await driver.reboot(ref.external_id)  # a reboot of a stopped instance starts it
    assert await driver.state(ref.external_id) == InstanceState.RUNNING
    await driver.stop(ref.external_id, force=True)
    assert await driver.state(ref.external_id) == InstanceState.STOPPED
    await driver.destroy(ref.external_id)


async def test_create_is_idempotent_for_the_same_server_only(driver: LibvirtDriver) -> None:
    name = _name()
    first = await driver.create(_spec(name), start=False)
    again = await driver.create(_spec(name))  # a retried job: returns it (and starts it)
    assert again.external_id == first.external_id
    assert again.state == InstanceState.RUNNING
    with pytest.raises(PermanentDriverError, match="already exists"):
        await driver.create(_spec(name, server_id="someone-else"))
    await driver.destroy(first.external_id)


async def test_destroy_removes_domain_and_volumes_and_is_idempotent(driver: LibvirtDriver, conn: Any) -> None:
    before = _volumes(conn)
    ref = await driver.create(_spec(_name()))
    await driver.destroy(ref.external_id)
    assert _volumes(conn) == before
    assert TEMPLATE in _volumes(conn)  # never the template
    assert all(r.external_id != ref.external_id for r in await driver.list_instances())
    await driver.destroy(ref.external_id)
    with pytest.raises(InstanceNotFound):
        await driver.state(ref.external_id)


async def test_missing_template_leaves_nothing_behind(driver: LibvirtDriver, conn: Any) -> None:
    before = _volumes(conn)
    with pytest.raises(PermanentDriverError, match="template"):
        await driver.create(_spec(_name(), image=ImageRef(volume="no-such.qcow2")))
    assert _volumes(conn) == before


async def test_disk_smaller_than_template_is_refused(driver: LibvirtDriver) -> None:
    with pytest.raises(PermanentDriverError, match="smaller"):
        await driver.create(_spec(_name(), disk_gib=1))


async def test_reinstall_keeps_identity_and_mac_with_a_new_instance_id(
    driver: LibvirtDriver, conn: Any
) -> None:
    name = _name()
    ref = await driver.create(_spec(name))
    old = DomainConfig.from_xml(conn.lookupByUUIDString(ref.external_id).XMLDesc(0))
    again = await driver.reinstall(ref.external_id, _spec(name, hostname="web2"))
    assert again.external_id == ref.external_id
    assert again.state == InstanceState.RUNNING
    new = DomainConfig.from_xml(conn.lookupByUUIDString(ref.external_id).XMLDesc(0))
    assert new.interfaces == old.interfaces
    assert new.title == "web2"
    assert isinstance(new.metadata, CorralMetadata)
    assert isinstance(old.metadata, CorralMetadata)
    assert new.metadata.instance_id != old.metadata.instance_id
    with pytest.raises(PermanentDriverError, match="rename"):
        await driver.reinstall(ref.external_id, _spec("corral-other"))
    await driver.destroy(ref.external_id)


async def test_resize_requires_stopped_and_changes_cpu_and_memory(driver: LibvirtDriver, conn: Any) -> None:
    ref = await driver.create(_spec(_name()))
    with pytest.raises(PermanentDriverError, match="stop"):
        await driver.resize(ref.external_id, ResizeSpec(vcpus=2, memory_mib=1024, disk_gib=20))
    await driver.stop(ref.external_id, force=True)
    with pytest.raises(PermanentDriverError, match="grow"):
        await driver.resize(ref.external_id, ResizeSpec(vcpus=2, memory_mib=1024, disk_gib=5))
    await driver.resize(ref.external_id, ResizeSpec(vcpus=2, memory_mib=1024, disk_gib=20))
    config = DomainConfig.from_xml(
        conn.lookupByUUIDString(ref.external_id).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    )
    assert config.vcpus == 2
    assert config.memory_kib == 1024 * 1024
    assert config.graphics[0].password == "pw"  # the redefinition kept the secret
    await driver.destroy(ref.external_id)


async def test_unknown_instance_raises_instance_not_found(driver: LibvirtDriver) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for call in (driver.state, driver.start, driver.shutdown, driver.stats, driver.console):
        with pytest.raises(InstanceNotFound):
            await call(missing)


async def test_stats_of_a_test_domain(driver: LibvirtDriver) -> None:
    ref = await driver.create(_spec(_name()))
    stats = await driver.stats(ref.external_id)
    assert stats.cpu_time_ns >= 0
    assert stats.sampled_at.tzinfo is not None
    await driver.destroy(ref.external_id)


async def test_missing_pool_is_permanent(conn: Any) -> None:
    driver = get_driver("libvirt", DriverConnection(endpoint=TEST, storage_pool="nope"))
    with pytest.raises(PermanentDriverError, match="nope"):
        await driver.host_info()


async def test_unreachable_node_is_transient() -> None:
    # Nothing listens on port 1: connection refused, which a retry may fix. (ssh with a panel key:
    # the key is written to a private file for ssh and removed when the driver closes.)
    key = make_key_pair("test").private_key
    endpoint = Endpoint(
        Transport.SSH, host="127.0.0.1", port=1, user="nobody", private_key=key, host_key=host_key()
    )
    driver = get_driver("libvirt", DriverConnection(endpoint=endpoint))
    with pytest.raises(TransientDriverError, match="Connection refused"):
        await driver.host_info()


async def test_blocking_calls_run_off_the_event_loop(
    driver: LibvirtDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = driver._conn.get

    def spy() -> Any:
        seen.append(threading.get_ident())
        return original()

    monkeypatch.setattr(driver._conn, "get", spy)
    await asyncio.gather(driver.host_info(), driver.list_instances())
    assert seen
    assert loop_thread not in seen


async def test_reinstall_refuses_a_domain_the_panel_did_not_create(driver: LibvirtDriver) -> None:
    foreign = next(ref for ref in await driver.list_instances() if ref.name == "test")
    with pytest.raises(PermanentDriverError, match="does not belong"):
        await driver.reinstall(foreign.external_id, _spec("test"))
    assert await driver.state(foreign.external_id) == InstanceState.RUNNING


async def test_image_exists_tells_present_from_missing_template_volumes(driver: LibvirtDriver) -> None:
    assert await driver.image_exists(ImageRef(volume=TEMPLATE))
    assert not await driver.image_exists(ImageRef(volume="no-such-template.qcow2"))
