"""libvirt's states and errors as ours; stats records; value-object validation; the registry."""

from __future__ import annotations

from datetime import UTC, datetime

import libvirt
import pytest

from corral.drivers import (
    Capability,
    DriverAuthError,
    DriverConnection,
    Endpoint,
    ImageRef,
    InstanceNotFound,
    InstanceSpec,
    InstanceState,
    NetworkInterface,
    PermanentDriverError,
    TransientDriverError,
    Transport,
    UnknownDriverKind,
    UnsupportedOperation,
    driver_kinds,
    get_driver,
    register_driver,
    require,
)
from corral.drivers.libvirt.connection import LibvirtOptions, translate
from corral.drivers.libvirt.domain import map_state, parse_stats
from corral.drivers.libvirt.driver import LibvirtDriver


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        (libvirt.VIR_DOMAIN_NOSTATE, 0, InstanceState.UNKNOWN),
        (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED, InstanceState.RUNNING),
        (libvirt.VIR_DOMAIN_BLOCKED, 0, InstanceState.RUNNING),
        (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER, InstanceState.PAUSED),
        (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_STARTING_UP, InstanceState.STARTING),
        (libvirt.VIR_DOMAIN_SHUTDOWN, 0, InstanceState.STOPPING),
        (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN, InstanceState.STOPPED),
        (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED, InstanceState.CRASHED),
        (libvirt.VIR_DOMAIN_CRASHED, 0, InstanceState.CRASHED),
        (libvirt.VIR_DOMAIN_PMSUSPENDED, 0, InstanceState.SUSPENDED),
        (99, 0, InstanceState.UNKNOWN),
    ],
)
def test_state_map(state: int, reason: int, expected: InstanceState) -> None:
    assert map_state(state, reason) is expected


def _error(code: int, domain: int = libvirt.VIR_FROM_QEMU) -> libvirt.libvirtError:
    error = libvirt.libvirtError("boom")
    error.err = (code, domain, "boom message", 2, None, None, None, 0, 0)
    return error


@pytest.mark.parametrize(
    ("code", "domain", "expected"),
    [
        (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_FROM_QEMU, InstanceNotFound),
        (libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_FROM_REMOTE, DriverAuthError),
        (libvirt.VIR_ERR_ACCESS_DENIED, libvirt.VIR_FROM_ACCESS, DriverAuthError),
        (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC, TransientDriverError),
        (libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_FROM_QEMU, TransientDriverError),
        (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_RPC, TransientDriverError),
        (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_FROM_QEMU, UnsupportedOperation),
        (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_FROM_QEMU, PermanentDriverError),
        (libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_FROM_STORAGE, PermanentDriverError),
    ],
)
def test_error_translation(code: int, domain: int, expected: type[Exception]) -> None:
    translated = translate(_error(code, domain))
    assert type(translated) is expected
    assert translated.message == "boom message"


def test_parse_stats_sums_devices_and_derives_memory() -> None:
    record = {
        "state.state": 1,
        "cpu.time": 123_000_000,
        "vcpu.current": 2,
        "balloon.current": 1048576,
        "balloon.available": 1000000,
        "balloon.unused": 400000,
        "balloon.usable": 600000,
        "block.count": 2,
        "block.0.rd.bytes": 10,
        "block.0.wr.bytes": 20,
        "block.1.rd.bytes": 1,
        "block.1.wr.bytes": 2,
        "net.count": 1,
        "net.0.rx.bytes": 300,
        "net.0.tx.bytes": 400,
    }
    now = datetime.now(UTC)
    stats = parse_stats(record, sampled_at=now)
    assert stats.sampled_at == now
    assert stats.cpu_time_ns == 123_000_000
    assert stats.vcpus == 2
    assert stats.memory_bytes == 1048576 * 1024
    assert stats.memory_used_bytes == 600000 * 1024
    assert stats.memory_available_bytes == 600000 * 1024
    assert (stats.disk_read_bytes, stats.disk_write_bytes) == (11, 22)
    assert (stats.net_rx_bytes, stats.net_tx_bytes) == (300, 400)


def test_parse_stats_of_a_stopped_domain() -> None:
    stats = parse_stats({"state.state": 5}, sampled_at=datetime.now(UTC))
    assert stats.cpu_time_ns == 0
    assert stats.memory_used_bytes is None
    assert stats.net_rx_bytes == 0


def _spec(**overrides: object) -> InstanceSpec:
    values: dict[str, object] = {
        "server_id": "1",
        "name": "corral-1",
        "hostname": "web1",
        "vcpus": 1,
        "memory_mib": 512,
        "disk_gib": 10,
        "image": ImageRef(volume="t"),
    }
    values.update(overrides)
    return InstanceSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "../etc"}, "name"),
        ({"name": ""}, "name"),
        ({"hostname": "Web_1"}, "host name"),
        ({"hostname": "-web"}, "host name"),
        ({"vcpus": 0}, "vcpus"),
        ({"memory_mib": 8}, "memory"),
        ({"disk_gib": 0}, "disk"),
        ({"vnc_password": "123456789"}, "vnc_password"),
        ({"ssh_authorized_keys": ("ssh-ed25519 AAAA\nssh-rsa BBBB",)}, "ssh"),
        (
            {
                "interfaces": (
                    NetworkInterface(mac="52:54:00:00:00:01"),
                    NetworkInterface(mac="52:54:00:00:00:01"),
                )
            },
            "duplicate",
        ),
    ],
)
def test_instance_spec_validation(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(**overrides)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mac": "52:54:00:00:00:0G"}, "MAC"),
        (
            {"mac": "52:54:00:00:00:01", "addresses": ("10.0.0.300/24",)},
            "does not appear to be an IPv4 or IPv6",
        ),
    ],
)
def test_network_interface_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetworkInterface(**kwargs)  # type: ignore[arg-type]


def test_secrets_stay_out_of_repr() -> None:
    spec = _spec(root_password_hash="$6$secret", vnc_password="vncpass")
    assert "secret" not in repr(spec)
    assert "vncpass" not in repr(spec)
    assert "hunter2" not in repr(DriverConnection(endpoint=Endpoint(Transport.LOCAL), password="hunter2"))


def test_registry_builds_the_libvirt_driver_and_rejects_unknown_kinds() -> None:
    assert "libvirt" in driver_kinds()
    driver = get_driver("libvirt", DriverConnection(endpoint=Endpoint(Transport.TEST)))
    assert isinstance(driver, LibvirtDriver)
    assert driver.kind == "libvirt"
    assert driver.options.domain_type == "test"
    with pytest.raises(UnknownDriverKind, match="proxmox"):
        get_driver("proxmox", DriverConnection(endpoint=Endpoint(Transport.TLS, host="pve")))


def test_register_driver_and_require_capability() -> None:
    class FakeDriver(LibvirtDriver):
        kind = "fake-for-test"
        capabilities = frozenset({Capability.SNAPSHOTS})

    register_driver("fake-for-test", FakeDriver)
    driver = get_driver("fake-for-test", DriverConnection(endpoint=Endpoint(Transport.TEST)))
    require(driver, Capability.SNAPSHOTS)
    with pytest.raises(UnsupportedOperation, match="rdns"):
        require(driver, Capability.RDNS)
    libvirt_driver = get_driver("libvirt", DriverConnection(endpoint=Endpoint(Transport.TEST)))
    require(libvirt_driver, Capability.VNC_CONSOLE)
    with pytest.raises(UnsupportedOperation):
        require(libvirt_driver, Capability.SNAPSHOTS)


def test_options_are_validated() -> None:
    assert LibvirtOptions.parse({}, transport=Transport.LOCAL).domain_type == "kvm"
    assert LibvirtOptions.parse({"domain_type": "qemu"}, transport=Transport.SSH).domain_type == "qemu"
    with pytest.raises(PermanentDriverError, match="unknown"):
        LibvirtOptions.parse({"colour": "red"}, transport=Transport.LOCAL)
    with pytest.raises(PermanentDriverError, match="disk_mode"):
        LibvirtOptions.parse({"disk_mode": "thin"}, transport=Transport.LOCAL)
