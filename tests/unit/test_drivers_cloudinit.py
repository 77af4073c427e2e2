"""The NoCloud seed ISO, read back with pycdlib: label, file names, contents."""

from __future__ import annotations

import io
import json

import pycdlib
import pytest

from corral.drivers import ImageRef, InstanceSpec, NetworkInterface
from corral.drivers.libvirt import cloudinit

SPEC = InstanceSpec(
    server_id="srv-1",
    name="corral-1",
    hostname="web1.example.com",
    vcpus=1,
    memory_mib=512,
    disk_gib=10,
    image=ImageRef(volume="debian.qcow2"),
    interfaces=(
        NetworkInterface(
            mac="52:54:00:aa:bb:01",
            addresses=("203.0.113.10/24", "2001:db8::10/64"),
            gateway4="203.0.113.1",
            gateway6="2001:db8::1",
            nameservers=("1.1.1.1", "2606:4700:4700::1111"),
        ),
        NetworkInterface(mac="52:54:00:aa:bb:02"),
    ),
    root_password_hash="$6$rounds=4096$salt$hash",
    ssh_authorized_keys=("ssh-ed25519 AAAAkey1 alice@laptop", "ssh-rsa AAAAkey2 bob"),
)


@pytest.fixture(scope="module")
def iso_bytes() -> bytes:
    return cloudinit.build_seed_iso(cloudinit.seed_files(SPEC, "corral-1-0001"))


def _read(iso_bytes: bytes, **path: str) -> str:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(iso_bytes))
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    iso.close()
    return out.getvalue().decode()


def test_volume_label_is_cidata(iso_bytes: bytes) -> None:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(iso_bytes))
    assert iso.pvd.volume_identifier.decode().strip() == "cidata"
    names = {child.rock_ridge.name().decode() for child in iso.list_children(rr_path="/") if child.rock_ridge}
    iso.close()
    assert {"meta-data", "user-data", "network-config"} <= names
    assert cloudinit.volume_label(iso_bytes) == "cidata"


def test_files_by_rock_ridge_and_joliet_names(iso_bytes: bytes) -> None:
    for name in ("meta-data", "user-data", "network-config"):
        assert _read(iso_bytes, rr_path=f"/{name}") == _read(iso_bytes, joliet_path=f"/{name}")


def test_meta_data(iso_bytes: bytes) -> None:
    assert (
        _read(iso_bytes, rr_path="/meta-data")
        == "instance-id: corral-1-0001\nlocal-hostname: web1.example.com\n"
    )


def test_user_data_sets_root_password_hash_and_keys(iso_bytes: bytes) -> None:
    text = _read(iso_bytes, rr_path="/user-data")
    header, _, body = text.partition("\n")
    assert header == "#cloud-config"
    config = json.loads(body)
    assert config["hostname"] == "web1"
    assert config["fqdn"] == "web1.example.com"
    assert config["disable_root"] is False
    assert config["ssh_pwauth"] is True
    (root,) = config["users"]
    assert root["name"] == "root"
    assert root["hashed_passwd"] == "$6$rounds=4096$salt$hash"
    assert root["lock_passwd"] is False
    assert root["ssh_authorized_keys"] == ["ssh-ed25519 AAAAkey1 alice@laptop", "ssh-rsa AAAAkey2 bob"]


def test_user_data_without_password_keeps_password_login_off() -> None:
    text = cloudinit.user_data("h", None, ("ssh-ed25519 AAAA k",))
    config = json.loads(text.partition("\n")[2])
    assert "ssh_pwauth" not in config
    assert "hashed_passwd" not in config["users"][0]


def test_user_data_is_also_valid_yaml() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is only a transitive dependency")
    text = cloudinit.user_data("h", "$6$x$y", ("ssh-ed25519 AAAA k",))
    assert yaml.safe_load(text)["users"][0]["hashed_passwd"] == "$6$x$y"


def test_network_config_v2_static_and_dhcp(iso_bytes: bytes) -> None:
    config = json.loads(_read(iso_bytes, rr_path="/network-config"))
    assert config["version"] == 2
    eth0 = config["ethernets"]["eth0"]
    assert eth0["match"] == {"macaddress": "52:54:00:aa:bb:01"}
    assert eth0["set-name"] == "eth0"
    assert eth0["addresses"] == ["203.0.113.10/24", "2001:db8::10/64"]
    assert eth0["dhcp4"] is False
    assert {"to": "0.0.0.0/0", "via": "203.0.113.1"} in eth0["routes"]
    assert {"to": "::/0", "via": "2001:db8::1"} in eth0["routes"]
    assert eth0["nameservers"] == {"addresses": ["1.1.1.1", "2606:4700:4700::1111"]}
    eth1 = config["ethernets"]["eth1"]
    assert eth1["match"] == {"macaddress": "52:54:00:aa:bb:02"}
    assert eth1["dhcp4"] is True


def test_read_seed_iso_helper(iso_bytes: bytes) -> None:
    files = cloudinit.read_seed_iso(iso_bytes)
    assert files["meta-data"].startswith("instance-id: corral-1-0001")


def test_meta_data_refuses_unsafe_values() -> None:
    with pytest.raises(ValueError, match="unsafe"):
        cloudinit.meta_data("id\nlocal-hostname: evil", "host")
