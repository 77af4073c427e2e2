"""cloud-init NoCloud seed: meta-data, user-data and network-config on an ISO 9660 volume labelled
``cidata``, built in memory with pycdlib (no genisoimage/xorriso on the node or the panel).

user-data and network-config are written as JSON after their headers: YAML is a superset of JSON,
so cloud-init reads them, and we never hand-format YAML (quoting bugs) nor depend on a YAML writer.
meta-data is two plain ``key: value`` lines; both values are validated to a safe character set.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

import pycdlib

from corral.drivers.base import InstanceSpec, NetworkInterface

VOLUME_LABEL = "cidata"
_SAFE_META = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SeedFiles:
    meta_data: str
    user_data: str
    network_config: str


def meta_data(instance_id: str, hostname: str) -> str:
    for value in (instance_id, hostname):
        if not _SAFE_META.match(value):
            raise ValueError(f"unsafe meta-data value {value!r}")
    return f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n"


def user_data(hostname: str, root_password_hash: str | None, ssh_authorized_keys: tuple[str, ...]) -> str:
    root: dict[str, Any] = {"name": "root"}
    config: dict[str, Any] = {
        "hostname": hostname.split(".")[0],
        "preserve_hostname": False,
        # Without this, cloud-init prefixes root's keys with a "log in as the default user" stub.
        "disable_root": False,
        "users": [root],
    }
    if "." in hostname:
        config["fqdn"] = hostname
    if root_password_hash:
        root["hashed_passwd"] = root_password_hash
        root["lock_passwd"] = False
        config["ssh_pwauth"] = True
    if ssh_authorized_keys:
        root["ssh_authorized_keys"] = list(ssh_authorized_keys)
    return "#cloud-config\n" + json.dumps(config, indent=2, sort_keys=True) + "\n"


def _ethernet(nic: NetworkInterface, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"match": {"macaddress": nic.mac}, "set-name": name}
    addresses = [ipaddress.ip_interface(a) for a in nic.addresses]
    if not addresses:
        entry["dhcp4"] = True
        return entry
    entry["dhcp4"] = False
    entry["dhcp6"] = False
    entry["addresses"] = [str(a) for a in addresses]
    routes = []
    if nic.gateway4:
        routes.append({"to": "0.0.0.0/0", "via": nic.gateway4})
    if nic.gateway6:
        routes.append({"to": "::/0", "via": nic.gateway6})
    if routes:
        entry["routes"] = routes
    if nic.nameservers:
        entry["nameservers"] = {"addresses": list(nic.nameservers)}
    return entry


def network_config(interfaces: tuple[NetworkInterface, ...]) -> str:
    """Network config version 2 (netplan-like), each NIC matched by its MAC."""
    ethernets = {f"eth{i}": _ethernet(nic, f"eth{i}") for i, nic in enumerate(interfaces)}
    return json.dumps({"version": 2, "ethernets": ethernets}, indent=2, sort_keys=True) + "\n"


def seed_files(spec: InstanceSpec, instance_id: str) -> SeedFiles:
    return SeedFiles(
        meta_data=meta_data(instance_id, spec.hostname),
        user_data=user_data(spec.hostname, spec.root_password_hash, spec.ssh_authorized_keys),
        network_config=network_config(spec.interfaces),
    )


# ISO 9660 level-1 names (8.3, upper case) plus Rock Ridge and Joliet long names: Linux mounts
# with Rock Ridge and sees "meta-data"; Windows (cloudbase-init) reads the Joliet names.
_ISO_NAMES = {
    "meta-data": "/METADATA.;1",
    "user-data": "/USERDATA.;1",
    "network-config": "/NETWORKC.;1",
}


def build_seed_iso(files: SeedFiles) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=VOLUME_LABEL, joliet=3, rock_ridge="1.09")
    contents = {
        "meta-data": files.meta_data,
        "user-data": files.user_data,
        "network-config": files.network_config,
    }
    for name, text in contents.items():
        data = text.encode()
        iso.add_fp(
            io.BytesIO(data), len(data), iso_path=_ISO_NAMES[name], rr_name=name, joliet_path=f"/{name}"
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_seed_iso(image: bytes) -> dict[str, str]:
    """The files on a seed ISO by their Rock Ridge names (for tests and for support tooling)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    try:
        found: dict[str, str] = {}
        for name in _ISO_NAMES:
            buffer = io.BytesIO()
            iso.get_file_from_iso_fp(buffer, rr_path=f"/{name}")
            found[name] = buffer.getvalue().decode()
        return found
    finally:
        iso.close()


def volume_label(image: bytes) -> str:
    """The primary volume descriptor's volume identifier (sector 16, bytes 40-72)."""
    descriptor = image[16 * 2048 : 17 * 2048]
    return descriptor[40:72].decode("ascii").rstrip()
