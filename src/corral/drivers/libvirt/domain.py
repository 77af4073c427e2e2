"""From panel values to a libvirt domain and back: the domain definition, the state table, stats."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import libvirt

from corral.drivers.base import InstanceSpec, InstanceState, InstanceStats
from corral.drivers.libvirt.connection import LibvirtOptions
from corral.drivers.libvirt.storage import disk_volume_name, seed_volume_name
from corral.drivers.libvirt.xml import (
    ControllerConfig,
    CorralMetadata,
    DiskConfig,
    DomainConfig,
    GraphicsConfig,
    InterfaceConfig,
    OsConfig,
    SerialConfig,
)

# libvirt's state (virDomainState) -> ours. Reasons refine a few states (see map_state).
STATE_MAP: dict[int, InstanceState] = {
    libvirt.VIR_DOMAIN_NOSTATE: InstanceState.UNKNOWN,
    libvirt.VIR_DOMAIN_RUNNING: InstanceState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: InstanceState.RUNNING,  # running, waiting on I/O: still "on"
    libvirt.VIR_DOMAIN_PAUSED: InstanceState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: InstanceState.STOPPING,  # shutting down
    libvirt.VIR_DOMAIN_SHUTOFF: InstanceState.STOPPED,
    libvirt.VIR_DOMAIN_CRASHED: InstanceState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: InstanceState.SUSPENDED,
}
# (state, reason) pairs that mean something more specific than the state alone.
REASON_MAP: dict[tuple[int, int], InstanceState] = {
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_STARTING_UP): InstanceState.STARTING,
    (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED): InstanceState.CRASHED,
}


def map_state(state: int, reason: int = 0) -> InstanceState:
    return REASON_MAP.get((state, reason)) or STATE_MAP.get(state, InstanceState.UNKNOWN)


def _cdrom_target(bus: str) -> str:
    return "hdc" if bus == "ide" else "sda"


def build_domain(
    spec: InstanceSpec,
    options: LibvirtOptions,
    *,
    pool: str,
    network: str,
    instance_id: str,
    uuid: str | None = None,
    generation: str | None = None,
) -> DomainConfig:
    """The full definition of an instance. ``uuid`` is given when redefining (reinstall), with the
    ``generation`` of the volumes made for it (see storage.disk_volume_name)."""
    boot = spec.image.kernel_boot
    os_config = OsConfig(
        machine=options.machine,
        kernel=boot.kernel if boot else None,
        initrd=boot.initrd if boot else None,
        cmdline=boot.cmdline if boot else None,
    )
    disks = (
        DiskConfig(
            device="disk",
            target_dev="vda",
            bus="virtio",
            format="qcow2",
            pool=pool,
            volume=disk_volume_name(spec.name, generation),
        ),
        DiskConfig(
            device="cdrom",
            target_dev=_cdrom_target(options.cdrom_bus),
            bus=options.cdrom_bus,
            format="raw",
            pool=pool,
            volume=seed_volume_name(spec.name, generation),
            readonly=True,
        ),
    )
    controllers = (ControllerConfig("scsi", "virtio-scsi"),) if options.cdrom_bus == "scsi" else ()
    interfaces = tuple(
        InterfaceConfig(
            type=options.network_type,
            mac=nic.mac,
            source=None if options.network_type == "user" else (nic.network or network),
        )
        for nic in spec.interfaces
    )
    serial_log = posixpath.join(options.serial_log_dir, f"{spec.name}-serial0.log")
    return DomainConfig(
        name=spec.name,
        domain_type=options.domain_type,
        uuid=uuid,
        title=spec.hostname,
        metadata=CorralMetadata(server_id=spec.server_id, instance_id=instance_id),
        memory_kib=spec.memory_mib * 1024,
        vcpus=spec.vcpus,
        os=os_config,
        # KVM: give the guest the host's CPU model (speed, instruction sets). TCG emulates a
        # generic CPU; host-passthrough is not available there.
        cpu_mode="host-passthrough" if options.domain_type == "kvm" else None,
        disks=disks,
        controllers=controllers,
        interfaces=interfaces,
        serials=(SerialConfig(port=0, log_file=serial_log),),
        graphics=(GraphicsConfig(listen=options.vnc_listen, password=spec.vnc_password),),
        video_model=options.video,
    )


def _int(record: Mapping[str, Any], key: str) -> int | None:
    value = record.get(key)
    return int(value) if value is not None else None


def _sum(record: Mapping[str, Any], prefix: str, suffix: str) -> int:
    count = _int(record, f"{prefix}.count") or 0
    return sum(_int(record, f"{prefix}.{i}.{suffix}") or 0 for i in range(count))


def parse_stats(record: Mapping[str, Any], *, sampled_at: datetime) -> InstanceStats:
    """One ``virConnectGetAllDomainStats`` record (a flat dict) as ``InstanceStats``. Balloon
    ``available``/``unused``/``usable`` exist only when the guest runs the balloon driver."""
    available = _int(record, "balloon.available")
    unused = _int(record, "balloon.unused")
    usable = _int(record, "balloon.usable")
    free_kib = usable if usable is not None else unused
    return InstanceStats(
        sampled_at=sampled_at,
        cpu_time_ns=_int(record, "cpu.time") or 0,
        vcpus=_int(record, "vcpu.current") or 0,
        memory_bytes=(_int(record, "balloon.current") or 0) * 1024,
        memory_used_bytes=(available - unused) * 1024
        if available is not None and unused is not None
        else None,
        memory_available_bytes=free_kib * 1024 if free_kib is not None else None,
        disk_read_bytes=_sum(record, "block", "rd.bytes"),
        disk_write_bytes=_sum(record, "block", "wr.bytes"),
        net_rx_bytes=_sum(record, "net", "rx.bytes"),
        net_tx_bytes=_sum(record, "net", "tx.bytes"),
    )
