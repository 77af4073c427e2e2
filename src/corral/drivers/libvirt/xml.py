"""Typed builders (and parsers) for the libvirt XML we write: domains, storage volumes, dir pools.

Each config is a frozen dataclass with ``to_element`` and ``from_element``, so what we define is
also what we read back from the live XML (Nova's ``nova/virt/libvirt/config.py`` idea). Parsing
keeps only the parts we model; libvirt's additions (PCI addresses, aliases, ...) are ignored.
Text is never pasted into XML: ElementTree escapes every value.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal

# Our namespace for <metadata>: the reconciler recognises the panel's domains by it.
CORRAL_NS = "https://corral.invalid/xmlns/libvirt/domain/1"
CORRAL_PREFIX = "corral"
ET.register_namespace(CORRAL_PREFIX, CORRAL_NS)

DiskDevice = Literal["disk", "cdrom"]
DiskBus = Literal["virtio", "sata", "ide", "scsi"]
InterfaceType = Literal["network", "bridge", "user"]


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _text(parent: ET.Element, path: str) -> str | None:
    found = parent.find(path)
    return found.text if found is not None and found.text is not None else None


def _required(parent: ET.Element, path: str) -> ET.Element:
    found = parent.find(path)
    if found is None:
        raise ValueError(f"<{parent.tag}> has no {path}")
    return found


def parse_xml(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - trusted: libvirtd's own output


def to_xml(element: ET.Element) -> str:
    return ET.tostring(element, encoding="unicode")


# --- domain parts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorralMetadata:
    """Our element inside <metadata>: the panel's server id and the current cloud-init instance id
    (which changes on every reinstall so that cloud-init runs again)."""

    server_id: str
    instance_id: str

    def to_element(self) -> ET.Element:
        root = ET.Element(f"{{{CORRAL_NS}}}instance")
        _sub(root, f"{{{CORRAL_NS}}}server-id", self.server_id)
        _sub(root, f"{{{CORRAL_NS}}}instance-id", self.instance_id)
        return root

    @classmethod
    def from_element(cls, element: ET.Element) -> CorralMetadata:
        # Inside the domain XML the children are namespaced; virDomainGetMetadata returns the same
        # element with the namespace stripped. Match on local names to read both.
        values = {child.tag.rpartition("}")[2]: child.text or "" for child in element}
        return cls(server_id=values.get("server-id", ""), instance_id=values.get("instance-id", ""))


@dataclass(frozen=True)
class OsConfig:
    arch: str = "x86_64"
    machine: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    boot_devices: tuple[str, ...] = ("hd",)

    def to_element(self) -> ET.Element:
        os_el = ET.Element("os")
        type_attrs = {"arch": self.arch}
        if self.machine:
            type_attrs["machine"] = self.machine
        _sub(os_el, "type", "hvm", **type_attrs)
        if self.kernel:
            _sub(os_el, "kernel", self.kernel)
            if self.initrd:
                _sub(os_el, "initrd", self.initrd)
            if self.cmdline:
                _sub(os_el, "cmdline", self.cmdline)
        for device in self.boot_devices:
            _sub(os_el, "boot", dev=device)
        return os_el

    @classmethod
    def from_element(cls, element: ET.Element) -> OsConfig:
        type_el = _required(element, "type")
        return cls(
            arch=type_el.get("arch", "x86_64"),
            machine=type_el.get("machine"),
            kernel=_text(element, "kernel"),
            initrd=_text(element, "initrd"),
            cmdline=_text(element, "cmdline"),
            boot_devices=tuple(boot.get("dev", "") for boot in element.findall("boot")),
        )


@dataclass(frozen=True)
class DiskConfig:
    """A disk or CD-ROM backed by a storage-pool volume (``pool``/``volume``) or a host file."""

    device: DiskDevice
    target_dev: str
    bus: DiskBus
    format: Literal["qcow2", "raw"]
    pool: str | None = None
    volume: str | None = None
    path: str | None = None
    readonly: bool = False

    def __post_init__(self) -> None:
        if (self.volume is None) == (self.path is None):
            raise ValueError("a disk has either pool/volume or path")

    def to_element(self) -> ET.Element:
        disk = ET.Element("disk", type="volume" if self.volume else "file", device=self.device)
        driver_attrs = {"name": "qemu", "type": self.format}
        if self.device == "disk":
            driver_attrs["discard"] = "unmap"  # guests' TRIM frees space in the qcow2 overlay
        _sub(disk, "driver", **driver_attrs)
        if self.volume:
            _sub(disk, "source", pool=self.pool or "", volume=self.volume)
        else:
            _sub(disk, "source", file=self.path or "")
        _sub(disk, "target", dev=self.target_dev, bus=self.bus)
        if self.readonly:
            _sub(disk, "readonly")
        return disk

    @classmethod
    def from_element(cls, element: ET.Element) -> DiskConfig:
        source = element.find("source")
        target = _required(element, "target")
        driver = element.find("driver")
        src = source.attrib if source is not None else {}
        fmt = driver.get("type", "raw") if driver is not None else "raw"
        return cls(
            device="cdrom" if element.get("device") == "cdrom" else "disk",
            target_dev=target.get("dev", ""),
            bus=_disk_bus(target.get("bus", "virtio")),
            format="qcow2" if fmt == "qcow2" else "raw",
            pool=src.get("pool"),
            volume=src.get("volume"),
            path=None if src.get("volume") else src.get("file", ""),
            readonly=element.find("readonly") is not None,
        )


def _disk_bus(value: str) -> DiskBus:
    if value in ("virtio", "sata", "ide", "scsi"):
        return value  # type: ignore[return-value]  # narrowed by the membership test
    raise ValueError(f"unsupported disk bus {value!r}")


@dataclass(frozen=True)
class ControllerConfig:
    type: str
    model: str | None = None

    def to_element(self) -> ET.Element:
        attrs = {"type": self.type}
        if self.model:
            attrs["model"] = self.model
        return ET.Element("controller", attrs)

    @classmethod
    def from_element(cls, element: ET.Element) -> ControllerConfig:
        return cls(type=element.get("type", ""), model=element.get("model"))


@dataclass(frozen=True)
class InterfaceConfig:
    """``network`` (a libvirt network), ``bridge`` (a host bridge: the usual VPS set-up) or ``user``
    (QEMU user-mode networking: no host set-up, used by tests). ``target_dev`` is output-only."""

    type: InterfaceType
    mac: str
    source: str | None = None
    model: str = "virtio"
    target_dev: str | None = None
    # No iPXE option ROM: instances boot from their disk (or a kernel), and SeaBIOS initialising the
    # ROM costs boot time.
    boot_rom: bool = False

    def to_element(self) -> ET.Element:
        nic = ET.Element("interface", type=self.type)
        _sub(nic, "mac", address=self.mac)
        if self.type == "network":
            _sub(nic, "source", network=self.source or "default")
        elif self.type == "bridge":
            _sub(nic, "source", bridge=self.source or "br0")
        if self.target_dev:
            _sub(nic, "target", dev=self.target_dev)
        _sub(nic, "model", type=self.model)
        if not self.boot_rom:
            _sub(nic, "rom", enabled="no")
        return nic

    @classmethod
    def from_element(cls, element: ET.Element) -> InterfaceConfig:
        kind = element.get("type", "")
        if kind not in ("network", "bridge", "user"):
            raise ValueError(f"unsupported interface type {kind!r}")
        source = element.find("source")
        target = element.find("target")
        model = element.find("model")
        rom = element.find("rom")
        return cls(
            type=kind,  # type: ignore[arg-type]  # checked just above
            mac=_required(element, "mac").get("address", ""),
            source=None if source is None else (source.get("network") or source.get("bridge")),
            model=model.get("type", "virtio") if model is not None else "virtio",
            target_dev=target.get("dev") if target is not None else None,
            boot_rom=rom is None or rom.get("enabled", "yes") != "no",
        )


@dataclass(frozen=True)
class SerialConfig:
    """A pty serial port (``virsh console`` works) whose output virtlogd also writes to a file:
    boot logs for people, and what the end-to-end test reads."""

    port: int = 0
    log_file: str | None = None

    def to_element(self) -> ET.Element:
        serial = ET.Element("serial", type="pty")
        if self.log_file:
            _sub(serial, "log", file=self.log_file, append="off")
        _sub(serial, "target", port=str(self.port))
        return serial

    @classmethod
    def from_element(cls, element: ET.Element) -> SerialConfig:
        target = element.find("target")
        log = element.find("log")
        return cls(
            port=int(target.get("port", "0")) if target is not None else 0,
            log_file=log.get("file") if log is not None else None,
        )


@dataclass(frozen=True)
class GraphicsConfig:
    """VNC on the node's loopback only; the panel's console proxy reaches it (never the browser
    directly). ``port`` -1 means libvirt picks one; the live XML shows the real port."""

    listen: str = "127.0.0.1"
    password: str | None = field(default=None, repr=False)
    port: int = -1

    def to_element(self) -> ET.Element:
        attrs = {"type": "vnc", "port": str(self.port), "listen": self.listen}
        attrs["autoport"] = "yes" if self.port == -1 else "no"
        if self.password:
            attrs["passwd"] = self.password
        graphics = ET.Element("graphics", attrs)
        _sub(graphics, "listen", type="address", address=self.listen)
        return graphics

    @classmethod
    def from_element(cls, element: ET.Element) -> GraphicsConfig:
        listen = element.get("listen")
        listen_el = element.find("listen")
        if listen is None and listen_el is not None:
            listen = listen_el.get("address")
        return cls(
            listen=listen or "127.0.0.1",
            password=element.get("passwd"),
            port=int(element.get("port", "-1")),
        )


@dataclass(frozen=True)
class DomainConfig:
    name: str
    domain_type: str
    memory_kib: int
    vcpus: int
    os: OsConfig
    metadata: CorralMetadata | None = None
    uuid: str | None = None
    title: str | None = None
    cpu_mode: str | None = None
    disks: tuple[DiskConfig, ...] = ()
    controllers: tuple[ControllerConfig, ...] = ()
    interfaces: tuple[InterfaceConfig, ...] = ()
    serials: tuple[SerialConfig, ...] = ()
    graphics: tuple[GraphicsConfig, ...] = ()
    video_model: str | None = "vga"
    memballoon_stats_period_s: int | None = 10
    rng: bool = True

    def to_element(self) -> ET.Element:
        domain = ET.Element("domain", type=self.domain_type)
        _sub(domain, "name", self.name)
        if self.uuid:
            _sub(domain, "uuid", self.uuid)
        if self.title:
            _sub(domain, "title", self.title)
        if self.metadata:
            _sub(domain, "metadata").append(self.metadata.to_element())
        _sub(domain, "memory", str(self.memory_kib), unit="KiB")
        _sub(domain, "currentMemory", str(self.memory_kib), unit="KiB")
        _sub(domain, "vcpu", str(self.vcpus), placement="static")
        domain.append(self.os.to_element())
        features = _sub(domain, "features")
        _sub(features, "acpi")  # needed for graceful shutdown (ACPI power button)
        _sub(features, "apic")
        if self.cpu_mode:
            _sub(domain, "cpu", mode=self.cpu_mode)
        _sub(domain, "clock", offset="utc")
        _sub(domain, "on_poweroff", "destroy")
        _sub(domain, "on_reboot", "restart")
        _sub(domain, "on_crash", "destroy")  # keep a crashed guest off: the reconciler reports it
        devices = _sub(domain, "devices")
        devices.extend(disk.to_element() for disk in self.disks)
        devices.extend(controller.to_element() for controller in self.controllers)
        devices.extend(nic.to_element() for nic in self.interfaces)
        devices.extend(serial.to_element() for serial in self.serials)
        if self.serials:
            console = _sub(devices, "console", type="pty")
            _sub(console, "target", type="serial", port=str(self.serials[0].port))
        for graphics in self.graphics:
            devices.append(graphics.to_element())
        if self.video_model:
            _sub(_sub(devices, "video"), "model", type=self.video_model)
        if self.memballoon_stats_period_s is not None:
            balloon = _sub(devices, "memballoon", model="virtio")
            _sub(balloon, "stats", period=str(self.memballoon_stats_period_s))
        if self.rng:
            _sub(_sub(devices, "rng", model="virtio"), "backend", "/dev/urandom", model="random")
        return domain

    def to_xml(self) -> str:
        return to_xml(self.to_element())

    @classmethod
    def from_element(cls, element: ET.Element) -> DomainConfig:
        metadata_el = element.find(f"metadata/{{{CORRAL_NS}}}instance")
        memory_el = _required(element, "memory")
        cpu = element.find("cpu")
        devices = element.find("devices")
        dev: ET.Element = devices if devices is not None else ET.Element("devices")
        video_model = dev.find("video/model")
        balloon_stats = dev.find("memballoon/stats")
        return cls(
            name=_text(element, "name") or "",
            domain_type=element.get("type", ""),
            memory_kib=_bytes(memory_el, "KiB") // 1024,
            vcpus=int(_text(element, "vcpu") or "1"),
            os=OsConfig.from_element(_required(element, "os")),
            metadata=CorralMetadata.from_element(metadata_el) if metadata_el is not None else None,
            uuid=_text(element, "uuid"),
            title=_text(element, "title"),
            cpu_mode=cpu.get("mode") if cpu is not None else None,
            disks=tuple(DiskConfig.from_element(d) for d in dev.findall("disk")),
            controllers=tuple(
                ControllerConfig.from_element(c)
                for c in dev.findall("controller")
                if c.get("type") == "scsi"  # libvirt adds pci/usb/ide controllers by itself
            ),
            interfaces=tuple(InterfaceConfig.from_element(i) for i in dev.findall("interface")),
            serials=tuple(SerialConfig.from_element(s) for s in dev.findall("serial")),
            graphics=tuple(
                GraphicsConfig.from_element(g) for g in dev.findall("graphics") if g.get("type") == "vnc"
            ),
            video_model=video_model.get("type") if video_model is not None else None,
            memballoon_stats_period_s=(
                int(balloon_stats.get("period", "0")) if balloon_stats is not None else None
            ),
            rng=dev.find("rng") is not None,
        )

    @classmethod
    def from_xml(cls, text: str) -> DomainConfig:
        return cls.from_element(parse_xml(text))


_UNITS = {
    "b": 1,
    "bytes": 1,
    "k": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gib": 1024**3,
}


def _bytes(element: ET.Element, default_unit: str) -> int:
    unit = element.get("unit", default_unit).lower()
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {unit!r}")
    return int(element.text or "0") * _UNITS[unit]


# --- storage --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeConfig:
    """A storage volume. With ``backing_path`` it is a copy-on-write overlay of that file."""

    name: str
    capacity_bytes: int
    format: Literal["qcow2", "raw"]
    allocation_bytes: int = 0
    backing_path: str | None = None
    backing_format: Literal["qcow2", "raw"] | None = None

    def to_element(self) -> ET.Element:
        volume = ET.Element("volume")
        _sub(volume, "name", self.name)
        _sub(volume, "capacity", str(self.capacity_bytes), unit="bytes")
        _sub(volume, "allocation", str(self.allocation_bytes), unit="bytes")
        _sub(_sub(volume, "target"), "format", type=self.format)
        if self.backing_path:
            backing = _sub(volume, "backingStore")
            _sub(backing, "path", self.backing_path)
            _sub(backing, "format", type=self.backing_format or "qcow2")
        return volume

    def to_xml(self) -> str:
        return to_xml(self.to_element())

    @classmethod
    def from_element(cls, element: ET.Element) -> VolumeConfig:
        capacity = _required(element, "capacity")
        allocation = element.find("allocation")
        fmt = _required(element, "target/format").get("type", "raw")
        backing_fmt = element.find("backingStore/format")
        return cls(
            name=_text(element, "name") or "",
            capacity_bytes=_bytes(capacity, "bytes"),
            format="qcow2" if fmt == "qcow2" else "raw",
            allocation_bytes=_bytes(allocation, "bytes") if allocation is not None else 0,
            backing_path=_text(element, "backingStore/path"),
            backing_format=(
                None if backing_fmt is None else ("qcow2" if backing_fmt.get("type") == "qcow2" else "raw")
            ),
        )

    @classmethod
    def from_xml(cls, text: str) -> VolumeConfig:
        return cls.from_element(parse_xml(text))


@dataclass(frozen=True)
class DirPoolConfig:
    """A directory storage pool (what a single-box install and the tests use)."""

    name: str
    path: str

    def to_xml(self) -> str:
        pool = ET.Element("pool", type="dir")
        _sub(pool, "name", self.name)
        _sub(_sub(pool, "target"), "path", self.path)
        return to_xml(pool)
