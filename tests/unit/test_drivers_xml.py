"""The typed libvirt XML builders: what they produce (parsed back and inspected) and round trips."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from corral.drivers import DirectKernelBoot, ImageRef, InstanceSpec, NetworkInterface, Transport
from corral.drivers.libvirt.connection import LibvirtOptions
from corral.drivers.libvirt.domain import build_domain
from corral.drivers.libvirt.xml import (
    CORRAL_NS,
    CorralMetadata,
    DirPoolConfig,
    DiskConfig,
    DomainConfig,
    GraphicsConfig,
    InterfaceConfig,
    OsConfig,
    SerialConfig,
    VolumeConfig,
    parse_xml,
)


def _spec(**overrides: object) -> InstanceSpec:
    values: dict[str, object] = {
        "server_id": "srv_42",
        "name": "corral-42",
        "hostname": "web1.example.com",
        "vcpus": 2,
        "memory_mib": 1024,
        "disk_gib": 20,
        "image": ImageRef(volume="debian-12.qcow2"),
        "interfaces": (
            NetworkInterface(mac="52:54:00:12:34:56", addresses=("203.0.113.7/24",), gateway4="203.0.113.1"),
            NetworkInterface(mac="52:54:00:12:34:57", network="private"),
        ),
        "vnc_password": "s3cret",
    }
    values.update(overrides)
    return InstanceSpec(**values)  # type: ignore[arg-type]


def _domain(spec: InstanceSpec | None = None, **options: str) -> ET.Element:
    config = build_domain(
        spec or _spec(),
        LibvirtOptions.parse(options, transport=Transport.LOCAL),
        pool="fast",
        network="public",
        instance_id="corral-42-abcd",
    )
    return parse_xml(config.to_xml())


def test_domain_basics_and_metadata() -> None:
    root = _domain()
    assert root.tag == "domain"
    assert root.get("type") == "kvm"
    assert root.findtext("name") == "corral-42"
    assert root.findtext("title") == "web1.example.com"
    assert root.find("memory").get("unit") == "KiB"
    assert root.findtext("memory") == str(1024 * 1024)
    assert root.findtext("currentMemory") == str(1024 * 1024)
    assert root.findtext("vcpu") == "2"
    assert root.find("cpu").get("mode") == "host-passthrough"
    assert root.find("features/acpi") is not None
    assert root.findtext("on_crash") == "destroy"
    instance = root.find(f"metadata/{{{CORRAL_NS}}}instance")
    assert instance is not None
    assert instance.findtext(f"{{{CORRAL_NS}}}server-id") == "srv_42"
    assert instance.findtext(f"{{{CORRAL_NS}}}instance-id") == "corral-42-abcd"


def test_tcg_domain_has_no_host_cpu() -> None:
    root = _domain(domain_type="qemu")
    assert root.get("type") == "qemu"
    assert root.find("cpu") is None


def test_disks_are_pool_volumes_with_virtio_root_and_readonly_seed() -> None:
    disks = _domain().findall("devices/disk")
    assert len(disks) == 2
    root_disk, seed = disks
    assert root_disk.get("type") == "volume"
    assert root_disk.get("device") == "disk"
    assert root_disk.find("source").attrib == {"pool": "fast", "volume": "corral-42-disk.qcow2"}
    assert root_disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert root_disk.find("driver").attrib == {"name": "qemu", "type": "qcow2", "discard": "unmap"}
    assert seed.get("device") == "cdrom"
    assert seed.find("source").get("volume") == "corral-42-seed.iso"
    assert seed.find("target").attrib == {"dev": "sda", "bus": "sata"}
    assert seed.find("readonly") is not None


def test_scsi_cdrom_adds_a_virtio_scsi_controller_and_ide_uses_hdc() -> None:
    root = _domain(cdrom_bus="scsi")
    assert root.find("devices/controller").attrib == {"type": "scsi", "model": "virtio-scsi"}
    assert root.find("devices/disk[@device='cdrom']/target").get("bus") == "scsi"
    ide = _domain(cdrom_bus="ide")
    assert ide.find("devices/controller") is None
    assert ide.find("devices/disk[@device='cdrom']/target").attrib == {"dev": "hdc", "bus": "ide"}


def test_interfaces_keep_macs_and_use_node_or_own_network() -> None:
    nics = _domain().findall("devices/interface")
    assert [nic.find("mac").get("address") for nic in nics] == ["52:54:00:12:34:56", "52:54:00:12:34:57"]
    assert [nic.find("source").get("network") for nic in nics] == ["public", "private"]
    assert all(nic.find("model").get("type") == "virtio" for nic in nics)
    assert all(nic.find("rom").get("enabled") == "no" for nic in nics)
    bridged = _domain(network_type="bridge").find("devices/interface")
    assert bridged.get("type") == "bridge"
    assert bridged.find("source").get("bridge") == "public"
    user = _domain(network_type="user").find("devices/interface")
    assert user.get("type") == "user"
    assert user.find("source") is None


def test_serial_console_is_logged_and_vnc_listens_on_loopback_with_password() -> None:
    root = _domain(serial_log_dir="/srv/logs")
    serial = root.find("devices/serial")
    assert serial.get("type") == "pty"
    assert serial.find("log").attrib == {"file": "/srv/logs/corral-42-serial0.log", "append": "off"}
    assert root.find("devices/console/target").attrib == {"type": "serial", "port": "0"}
    graphics = root.find("devices/graphics")
    assert graphics.get("type") == "vnc"
    assert graphics.get("autoport") == "yes"
    assert graphics.get("listen") == "127.0.0.1"
    assert graphics.get("passwd") == "s3cret"
    assert graphics.find("listen").attrib == {"type": "address", "address": "127.0.0.1"}


def test_direct_kernel_boot() -> None:
    boot = DirectKernelBoot(kernel="/boot/vmlinuz", initrd="/boot/initrd.gz", cmdline="console=ttyS0")
    root = _domain(_spec(image=ImageRef(volume="t.qcow2", kernel_boot=boot)))
    assert root.findtext("os/kernel") == "/boot/vmlinuz"
    assert root.findtext("os/initrd") == "/boot/initrd.gz"
    assert root.findtext("os/cmdline") == "console=ttyS0"
    assert root.find("os/type").attrib == {"arch": "x86_64"}
    assert _domain().find("os/kernel") is None


def test_values_are_escaped_not_pasted() -> None:
    tricky = "a'<b>&\""
    config = DomainConfig(
        name="x",
        domain_type="kvm",
        memory_kib=1024,
        vcpus=1,
        os=OsConfig(kernel="/k", cmdline=f"x={tricky}"),
        graphics=(GraphicsConfig(password="<&'>"),),
    )
    root = parse_xml(config.to_xml())
    assert root.findtext("os/cmdline") == f"x={tricky}"
    assert root.find("devices/graphics").get("passwd") == "<&'>"
    assert len(root.findall("devices/graphics")) == 1


def test_domain_round_trip() -> None:
    config = build_domain(
        _spec(image=ImageRef(volume="t", kernel_boot=DirectKernelBoot("/k", "/i", "quiet"))),
        LibvirtOptions.parse({"cdrom_bus": "scsi", "machine": "q35"}, transport=Transport.LOCAL),
        pool="p",
        network="n",
        instance_id="iid",
        uuid="0f0e0d0c-0b0a-4908-8706-050403020100",
    )
    assert DomainConfig.from_xml(config.to_xml()) == config


def test_handwritten_domain_round_trip() -> None:
    config = DomainConfig(
        name="plain",
        domain_type="qemu",
        memory_kib=65536,
        vcpus=1,
        os=OsConfig(boot_devices=("cdrom", "hd")),
        metadata=CorralMetadata("s", "i"),
        disks=(DiskConfig(device="disk", target_dev="vda", bus="virtio", format="raw", path="/img/x.raw"),),
        interfaces=(
            InterfaceConfig(type="network", mac="52:54:00:00:00:01", source="default", boot_rom=True),
        ),
        serials=(SerialConfig(),),
        graphics=(),
        video_model=None,
        memballoon_stats_period_s=None,
        rng=False,
    )
    assert DomainConfig.from_xml(config.to_xml()) == config


def test_live_xml_extras_are_ignored() -> None:
    live = """<domain type='kvm' id='3'><name>n</name><uuid>u</uuid>
      <memory unit='GiB'>2</memory><vcpu>1</vcpu>
      <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
      <devices><controller type='usb' index='0'/><graphics type='vnc' port='5901' autoport='yes'>
      <listen type='address' address='127.0.0.1'/></graphics>
      <interface type='network'><mac address='52:54:00:00:00:09'/><source network='default'/>
      <target dev='vnet3'/><model type='virtio'/><alias name='net0'/></interface></devices></domain>"""
    config = DomainConfig.from_xml(live)
    assert config.memory_kib == 2 * 1024 * 1024
    assert config.controllers == ()
    assert config.graphics == (GraphicsConfig(listen="127.0.0.1", password=None, port=5901),)
    assert config.interfaces[0].target_dev == "vnet3"
    assert config.interfaces[0].boot_rom is True
    assert config.metadata is None


def test_metadata_reads_libvirts_namespace_stripped_form() -> None:
    element = parse_xml("<instance><server-id>7</server-id><instance-id>x</instance-id></instance>")
    assert CorralMetadata.from_element(element) == CorralMetadata("7", "x")


def test_overlay_volume_xml_and_round_trip() -> None:
    volume = VolumeConfig(
        name="vm-disk.qcow2",
        capacity_bytes=20 * 1024**3,
        format="qcow2",
        backing_path="/pool/debian.qcow2",
        backing_format="qcow2",
    )
    root = parse_xml(volume.to_xml())
    assert root.findtext("name") == "vm-disk.qcow2"
    assert root.find("capacity").attrib == {"unit": "bytes"}
    assert root.findtext("capacity") == str(20 * 1024**3)
    assert root.find("target/format").get("type") == "qcow2"
    assert root.findtext("backingStore/path") == "/pool/debian.qcow2"
    assert root.find("backingStore/format").get("type") == "qcow2"
    assert VolumeConfig.from_xml(volume.to_xml()) == volume
    plain = VolumeConfig(name="seed.iso", capacity_bytes=374784, format="raw")
    assert VolumeConfig.from_xml(plain.to_xml()) == plain
    assert parse_xml(plain.to_xml()).find("backingStore") is None


def test_dir_pool_xml() -> None:
    root = parse_xml(DirPoolConfig(name="images", path="/var/lib/corral").to_xml())
    assert root.get("type") == "dir"
    assert root.findtext("name") == "images"
    assert root.findtext("target/path") == "/var/lib/corral"


def test_a_disk_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="either"):
        DiskConfig(device="disk", target_dev="vda", bus="virtio", format="raw")
