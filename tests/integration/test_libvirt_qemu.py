"""End to end on a real libvirtd + QEMU (TCG): create, boot with the cloud-init seed, power, resize,
reinstall, destroy. The guest is Debian's cloud kernel with a busybox initramfs that reads the seed
(see tests/support/guest_image.py) and reports on its serial port, which libvirt logs to a file.

Skipped only when no libvirt daemon can be started here (the reason is printed); any other problem
fails.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from corral.drivers import (
    Capability,
    DirectKernelBoot,
    DriverConnection,
    Endpoint,
    ImageRef,
    InstanceSpec,
    InstanceState,
    NetworkInterface,
    ResizeSpec,
    Transport,
    get_driver,
)
from corral.drivers.libvirt.driver import LibvirtDriver
from corral.drivers.libvirt.xml import VolumeConfig
from tests.support.guest_image import GuestImage, ensure_guest_image
from tests.support.libvirt_env import (
    LibvirtUnavailable,
    StoragePoolDir,
    dir_pool,
    ensure_libvirtd,
    qemu_readable_dir,
)

GIB = 1024**3
BOOT_DEADLINE_S = 120.0  # a TCG boot takes a few seconds; generous for a loaded CI machine
TEMPLATE = "tiny-template.qcow2"


@pytest.fixture(scope="module")
def libvirt_uri() -> str:
    try:
        return ensure_libvirtd()
    except LibvirtUnavailable as error:
        pytest.skip(f"NO LIBVIRT DAEMON - real-QEMU end-to-end test not run: {error}")


@pytest.fixture(scope="module")
def guest_image() -> GuestImage:
    return ensure_guest_image()


@pytest.fixture
def pool(libvirt_uri: str) -> Iterator[StoragePoolDir]:
    with dir_pool(libvirt_uri) as test_pool:
        yield test_pool


@pytest.fixture
def guest_files(guest_image: GuestImage) -> Iterator[Path]:
    """Kernel and initrd where QEMU (user libvirt-qemu) can read them; serial logs go here too."""
    directory = qemu_readable_dir("corral-guest-")
    shutil.copyfile(guest_image.kernel, directory / "vmlinuz")
    shutil.copyfile(guest_image.initrd, directory / "initrd.gz")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def driver(libvirt_uri: str, pool: StoragePoolDir, guest_files: Path) -> AsyncIterator[LibvirtDriver]:
    connection = DriverConnection(
        endpoint=Endpoint(Transport.LOCAL),  # qemu:///system
        storage_pool=pool.name,
        options={
            "domain_type": "qemu",  # TCG: KVM guests were seen to hang on these machines
            "cdrom_bus": "scsi",  # Debian's cloud kernel has virtio-scsi but no AHCI
            "network_type": "user",  # no bridge or dnsmasq needed on the host
            "serial_log_dir": str(guest_files),
        },
    )
    driver = get_driver("libvirt", connection)
    assert isinstance(driver, LibvirtDriver)
    # The "template": a small qcow2 base volume for the disk overlay to sit on.
    conn: Any = libvirt.open(libvirt_uri)
    pool_handle = conn.storagePoolLookupByName(pool.name)
    pool_handle.createXML(
        VolumeConfig(name=TEMPLATE, capacity_bytes=64 * 1024**2, format="qcow2").to_xml(), 0
    )
    try:
        yield driver
    finally:
        # Leave nothing behind even when the test failed half-way.
        for ref in await driver.list_instances():
            if ref.name.startswith("corral-e2e-"):
                await driver.destroy(ref.external_id)
        await driver.aclose()
        conn.close()


def _spec(name: str, hostname: str, files: Path, disk_gib: int = 1) -> InstanceSpec:
    return InstanceSpec(
        server_id=f"srv-{name}",
        name=name,
        hostname=hostname,
        vcpus=1,
        memory_mib=256,
        disk_gib=disk_gib,
        image=ImageRef(
            volume=TEMPLATE,
            kernel_boot=DirectKernelBoot(
                kernel=str(files / "vmlinuz"),
                initrd=str(files / "initrd.gz"),
                cmdline="console=tty0 console=ttyS0,115200 loglevel=4",
            ),
        ),
        interfaces=(
            NetworkInterface(mac="52:54:00:c0:ff:01", addresses=("10.0.2.15/24",), gateway4="10.0.2.2"),
        ),
        root_password_hash="$6$salt$hash",
        ssh_authorized_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITEST e2e@corral",),
        vnc_password="e2evnc",
    )


def _read_log(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


async def _wait_for_boot(log: Path, *, hostname: str, after: str | None = None) -> dict[str, str]:
    """Poll the serial log (no fixed sleeps) until the guest reported ready with ``hostname``;
    ``after`` is an instance id that must have been replaced. Returns the marker values."""
    deadline = time.monotonic() + BOOT_DEADLINE_S
    text = ""
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(_read_log, log)
        markers = dict(re.findall(r"^(CORRAL-[A-Z-]+)=(\S+)\r?$", text, re.MULTILINE))
        ready = "CORRAL-READY" in text and markers.get("CORRAL-HOSTNAME") == hostname
        if ready and (after is None or markers.get("CORRAL-INSTANCE-ID") != after):
            return markers
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"guest did not report {hostname} within {BOOT_DEADLINE_S:.0f}s; log:\n{text[-3000:]}"
    )


async def _wait_for_state(driver: LibvirtDriver, external_id: str, wanted: InstanceState) -> None:
    deadline = time.monotonic() + 60
    while (state := await driver.state(external_id)) != wanted:
        assert time.monotonic() < deadline, f"state stayed {state}, wanted {wanted}"
        await asyncio.sleep(0.1)


async def test_instance_lifecycle_on_real_qemu(
    driver: LibvirtDriver, pool: StoragePoolDir, guest_files: Path
) -> None:
    started = time.monotonic()
    name = f"corral-e2e-{secrets.token_hex(3)}"
    hostname = f"{name}-a"
    log = guest_files / f"{name}-serial0.log"
    volumes_before = {p.name for p in pool.path.iterdir()}

    host = await driver.host_info()
    assert host.hypervisor == "QEMU"
    assert host.cpus >= 1
    assert host.storage_total_bytes > 0
    assert Capability.VNC_CONSOLE in driver.capabilities

    # create: overlay disk + seed ISO volumes, domain defined and booted
    ref = await driver.create(_spec(name, hostname, guest_files))
    assert ref.state == InstanceState.RUNNING
    assert ref.server_id == f"srv-{name}"
    assert {f"{name}-disk.qcow2", f"{name}-seed.iso"} <= {p.name for p in pool.path.iterdir()}
    markers = await _wait_for_boot(log, hostname=hostname)
    boot_s = time.monotonic() - started
    assert markers["CORRAL-DISK-SECTORS"] == str(1 * GIB // 512)
    first_instance_id = markers["CORRAL-INSTANCE-ID"]
    assert first_instance_id.startswith(name)
    assert ref in await driver.list_instances()
    # A retried create for the same server returns the existing instance.
    assert (await driver.create(_spec(name, hostname, guest_files))).external_id == ref.external_id

    console = await driver.console(ref.external_id)
    assert console.protocol == "vnc"
    assert console.host == "127.0.0.1"
    assert console.port >= 5900
    assert console.password == "e2evnc"
    assert console.tunnel_host is None
    stats = await driver.stats(ref.external_id)
    assert stats.cpu_time_ns > 0
    assert stats.memory_bytes == 256 * 1024**2
    assert stats.disk_read_bytes > 0

    # graceful stop (ACPI power button -> busybox acpid -> poweroff), then resize the stopped guest
    await driver.stop(ref.external_id, force=False, timeout_s=60)
    assert await driver.state(ref.external_id) == InstanceState.STOPPED
    assert "CORRAL-POWER-BUTTON" in _read_log(log)
    await driver.resize(ref.external_id, ResizeSpec(vcpus=2, memory_mib=320, disk_gib=2))

    # start again: the grown disk is visible to the guest
    await driver.start(ref.external_id)
    markers = await _wait_for_boot(log, hostname=hostname)
    assert markers["CORRAL-DISK-SECTORS"] == str(2 * GIB // 512)
    assert (await driver.stats(ref.external_id)).vcpus == 2

    # reboot (hard reset) and force stop
    await driver.reboot(ref.external_id, force=True)
    await _wait_for_state(driver, ref.external_id, InstanceState.RUNNING)
    await driver.stop(ref.external_id, force=True)
    assert await driver.state(ref.external_id) == InstanceState.STOPPED

    # reinstall: new disk and seed (new host name, new instance id), same domain and MAC
    reinstalled = await driver.reinstall(ref.external_id, _spec(name, f"{name}-b", guest_files))
    assert reinstalled.external_id == ref.external_id
    markers = await _wait_for_boot(log, hostname=f"{name}-b", after=first_instance_id)
    assert markers["CORRAL-DISK-SECTORS"] == str(1 * GIB // 512)

    # destroy: domain and its volumes gone; a second destroy is a no-op
    await driver.destroy(ref.external_id)
    assert all(r.external_id != ref.external_id for r in await driver.list_instances())
    assert {p.name for p in pool.path.iterdir()} == volumes_before
    await driver.destroy(ref.external_id)
    print(f"\nreal-QEMU e2e: first boot {boot_s:.1f}s, whole lifecycle {time.monotonic() - started:.1f}s")
