"""Storage-pool work for one instance: its disk (an overlay of, or a copy of, the template volume)
and its cloud-init seed volume. Runs in worker threads (blocking libvirt calls)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import libvirt

from corral.drivers.base import ImageRef, PermanentDriverError
from corral.drivers.libvirt.connection import error_code
from corral.drivers.libvirt.xml import VolumeConfig

GIB = 1024**3
# libvirt's test driver keeps volumes as records only: it has no virStorageVolUpload nor
# virStorageVolResize, and there is no content to write or grow.
_TEST_DRIVER = "TEST"


def _records_only(conn: Any) -> bool:
    return bool(conn.getType() == _TEST_DRIVER)


def disk_volume_name(instance_name: str, generation: str | None = None) -> str:
    """The instance's disk; a reinstall makes the next one under a new ``generation`` (hex) before
    the old one is removed, so both exist for a while."""
    return f"{instance_name}-disk-{generation}.qcow2" if generation else f"{instance_name}-disk.qcow2"


def seed_volume_name(instance_name: str, generation: str | None = None) -> str:
    return f"{instance_name}-seed-{generation}.iso" if generation else f"{instance_name}-seed.iso"


def _generation_pattern(instance_name: str) -> re.Pattern[str]:
    generations = r"(?:disk(?:-[0-9a-f]+)?\.qcow2|seed(?:-[0-9a-f]+)?\.iso)"
    return re.compile(rf"^{re.escape(instance_name)}-{generations}$")


def owned_by(instance_name: str, volume_name: str) -> bool:
    """Only volumes we named after the instance are ever deleted with it (never a template)."""
    return bool(_generation_pattern(instance_name).match(volume_name))


def owned_volumes(storage_pool: Any, instance_name: str) -> list[str]:
    """Every volume of the pool named after the instance (any generation)."""
    return sorted(name for name in storage_pool.listVolumes() if owned_by(instance_name, str(name)))


def pool(conn: Any, name: str) -> Any:
    try:
        found = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as error:
        if error_code(error) == libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise PermanentDriverError(f"storage pool {name!r} does not exist on the node") from error
        raise
    if not found.isActive():
        raise PermanentDriverError(f"storage pool {name!r} is not running on the node")
    return found


def lookup_volume(storage_pool: Any, name: str) -> Any | None:
    try:
        return storage_pool.storageVolLookupByName(name)
    except libvirt.libvirtError as error:
        if error_code(error) == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def delete_volume(storage_pool: Any, name: str) -> bool:
    """Delete if present; False when it was already gone (re-runs after a crash)."""
    volume = lookup_volume(storage_pool, name)
    if volume is None:
        return False
    try:
        volume.delete(0)
    except libvirt.libvirtError as error:
        if error_code(error) == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return False
        raise
    return True


def create_disk(conn: Any, storage_pool: Any, image: ImageRef, *, name: str, disk_gib: int, mode: str) -> Any:
    """The instance's root disk in ``storage_pool``, ``disk_gib`` large, from the template."""
    template_pool = storage_pool if image.pool is None else pool(conn, image.pool)
    template = lookup_volume(template_pool, image.volume)
    if template is None:
        raise PermanentDriverError(f"template volume {image.volume!r} is not on the node")
    capacity = disk_gib * GIB
    template_capacity = int(template.info()[1])
    if capacity < template_capacity:
        raise PermanentDriverError(
            f"the plan's disk ({disk_gib} GiB) is smaller than the template ({template_capacity} bytes)"
        )
    if mode == "overlay":
        # qcow2 copy-on-write on top of the template: instant, and only the guest's writes use space.
        config = VolumeConfig(
            name=name,
            capacity_bytes=capacity,
            format="qcow2",
            backing_path=str(template.path()),
            backing_format=image.format,
        )
        return storage_pool.createXML(config.to_xml(), 0)
    copy = VolumeConfig(name=name, capacity_bytes=template_capacity, format="qcow2")
    volume = storage_pool.createXMLFrom(copy.to_xml(), template, 0)
    if capacity > template_capacity and not _records_only(conn):
        volume.resize(capacity, 0)
    return volume


def create_seed(conn: Any, storage_pool: Any, *, name: str, image: bytes) -> Any:
    """Upload the seed ISO as a raw volume through libvirt's stream API (works for remote nodes:
    the panel never needs file access on the node)."""
    volume = storage_pool.createXML(
        VolumeConfig(name=name, capacity_bytes=len(image), format="raw").to_xml(), 0
    )
    if _records_only(conn):
        return volume
    stream = conn.newStream(0)
    try:
        volume.upload(stream, 0, len(image), 0)
        view = memoryview(image)
        offset = 0
        while offset < len(view):
            sent = int(stream.send(bytes(view[offset : offset + 256 * 1024])))
            if sent <= 0:
                raise PermanentDriverError("the node stopped accepting the seed upload")
            offset += sent
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise
    return volume


def resize_disk(conn: Any, storage_pool: Any, name: str, disk_gib: int) -> None:
    volume = lookup_volume(storage_pool, name)
    if volume is None:
        raise PermanentDriverError(f"disk volume {name!r} is missing")
    current = int(volume.info()[1])
    wanted = disk_gib * GIB
    if wanted < current:
        raise PermanentDriverError("disks can only grow")
    if wanted > current and not _records_only(conn):
        volume.resize(wanted, 0)
