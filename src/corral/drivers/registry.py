"""Drivers by kind ("libvirt"; later "proxmox", "virtfusion"), Libcloud-style.

Built-in drivers are imported on first use so that a panel that never talks to libvirt does not
load libvirt-python (memory, and the C library's own start-up).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from corral.drivers.base import DriverConnection, HypervisorDriver, UnknownDriverKind

DriverFactory = Callable[[DriverConnection], HypervisorDriver]

# kind -> "module:attribute" of a factory, resolved lazily.
_BUILTIN: dict[str, str] = {
    "libvirt": "corral.drivers.libvirt.driver:LibvirtDriver",
}
_registered: dict[str, DriverFactory] = {}


def register_driver(kind: str, factory: DriverFactory) -> None:
    """Add (or, in tests, replace) the factory for ``kind``."""
    _registered[kind] = factory


def driver_kinds() -> list[str]:
    return sorted(set(_BUILTIN) | set(_registered))


def get_driver(kind: str, connection: DriverConnection) -> HypervisorDriver:
    """A driver for one node. Opening the connection is lazy: the first call does it."""
    factory = _registered.get(kind)
    if factory is None:
        target = _BUILTIN.get(kind)
        if target is None:
            raise UnknownDriverKind(f"no hypervisor driver named {kind!r}; known: {driver_kinds()}")
        module_name, _, attribute = target.partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
        _registered[kind] = factory
    return factory(connection)
