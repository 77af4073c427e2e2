"""The libvirt driver: QEMU/KVM nodes over ``qemu:///system``, ``qemu+ssh://``, ``qemu+tls://``, and
libvirt's in-memory ``test:///default`` for demos and fast tests.

Each public method runs one synchronous ``_op_*`` function on its node's own small thread pool
(``corral.drivers.executor``) so no blocking libvirt call ever runs on the event loop, and waits for
it with a deadline from ``DriverConnection.timeouts``: first for the connection to open
(``connect_s``), then for the operation (``operation_s``, or ``build_s`` for the ones that copy
disks). A call past its deadline raises ``DriverTimeout``, a transient error the jobs retry with
backoff; libvirt errors leave as ``DriverError``s.
The instance's ``external_id`` is the domain UUID.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import libvirt

from corral.drivers import executor
from corral.drivers.base import (
    Capability,
    ConsoleEndpoint,
    DriverConnection,
    HostInfo,
    ImageRef,
    InstanceRef,
    InstanceSpec,
    InstanceState,
    InstanceStats,
    PermanentDriverError,
    ResizeSpec,
    TransientDriverError,
)
from corral.drivers.libvirt import cloudinit, storage
from corral.drivers.libvirt.connection import (
    Connection,
    LibvirtOptions,
    error_code,
    raise_translated,
)
from corral.drivers.libvirt.domain import build_domain, map_state, parse_stats
from corral.drivers.libvirt.xml import CORRAL_NS, CorralMetadata, DomainConfig, parse_xml

P = ParamSpec("P")
T = TypeVar("T")

_UNDEFINE_BASIC_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
)
_UNDEFINE_FLAGS = (
    _UNDEFINE_BASIC_FLAGS
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
)
_STATS_FLAGS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)
_POLL_S = 0.25


def _version(packed: int) -> str:
    """libvirt packs versions as major * 1_000_000 + minor * 1_000 + release."""
    return f"{packed // 1_000_000}.{packed // 1_000 % 1_000}.{packed % 1_000}"


def _what(operation: Callable[..., object]) -> str:
    """``_op_host_info`` -> "host info", for a timeout's message."""
    return getattr(operation, "__name__", "call").removeprefix("_op_").replace("_", " ")


def _new_instance_id(name: str) -> str:
    # cloud-init runs its per-instance modules again whenever this changes (every reinstall).
    return f"{name}-{secrets.token_hex(4)}"


def _volume_names(instance_name: str, generation: str) -> tuple[str, str]:
    disk = storage.disk_volume_name(instance_name, generation)
    return disk, storage.seed_volume_name(instance_name, generation)


class LibvirtDriver:
    kind = "libvirt"
    capabilities: frozenset[Capability] = frozenset({Capability.VNC_CONSOLE, Capability.SERIAL_CONSOLE})

    def __init__(self, connection: DriverConnection) -> None:
        self.connection = connection
        self.options = LibvirtOptions.parse(connection.options, transport=connection.endpoint.transport)
        self._conn = Connection(connection)

    # --- plumbing -------------------------------------------------------------------------------

    def _call(self, operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return operation(*args, **kwargs)
        except libvirt.libvirtError as error:
            self._conn.forget_if_broken(error)
            raise_translated(error)
        except ValueError as error:  # XML we could not read, bad values from the node
            raise PermanentDriverError(str(error)) from error

    async def _within(self, timeout_s: float, operation: Callable[[], T], what: str) -> T:
        timeouts = self.connection.timeouts
        node = self.connection.endpoint.describe()
        if not self._conn.connected:
            # Opening gets its own (shorter) deadline: a node that never answers is told apart
            # quickly, even for an operation that may take a long time once connected.
            await executor.call(
                node, self._connect, threads=timeouts.threads, timeout_s=timeouts.connect_s, what="connecting"
            )
        return await executor.call(node, operation, threads=timeouts.threads, timeout_s=timeout_s, what=what)

    def _connect(self) -> None:
        self._call(self._conn.get)

    async def _run(self, operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(self._call, operation, *args, **kwargs)
        return await self._within(self.connection.timeouts.operation_s, call, _what(operation))

    async def _run_long(self, operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """As ``_run``, with the deadline of operations that copy or delete disks."""
        call = functools.partial(self._call, operation, *args, **kwargs)
        return await self._within(self.connection.timeouts.build_s, call, _what(operation))

    def _domain(self, external_id: str) -> Any:
        return self._conn.get().lookupByUUIDString(external_id)

    def _find_by_name(self, name: str) -> Any | None:
        try:
            return self._conn.get().lookupByName(name)
        except libvirt.libvirtError as error:
            if error_code(error) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _pool(self) -> Any:
        return storage.pool(self._conn.get(), self.connection.storage_pool)

    @staticmethod
    def _metadata(dom: Any) -> CorralMetadata | None:
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, CORRAL_NS, 0)
        except libvirt.libvirtError as error:
            if error_code(error) == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                return None
            raise
        return CorralMetadata.from_element(parse_xml(str(text)))

    @staticmethod
    def _state(dom: Any) -> InstanceState:
        state, reason = dom.state(0)
        return map_state(int(state), int(reason))

    def _ref(self, dom: Any) -> InstanceRef:
        metadata = self._metadata(dom)
        return InstanceRef(
            external_id=str(dom.UUIDString()),
            name=str(dom.name()),
            server_id=metadata.server_id if metadata else None,
            state=self._state(dom),
        )

    # --- host -----------------------------------------------------------------------------------

    def _op_host_info(self) -> HostInfo:
        conn = self._conn.get()
        model, memory_mib, cpus, mhz = conn.getInfo()[:4]
        _state, capacity, _allocation, available = self._pool().info()
        return HostInfo(
            hostname=str(conn.getHostname()),
            cpus=int(cpus),
            cpu_model=str(model),
            cpu_mhz=int(mhz),
            memory_bytes=int(memory_mib) * 1024 * 1024,
            free_memory_bytes=int(conn.getFreeMemory()),
            storage_total_bytes=int(capacity),
            storage_free_bytes=int(available),
            hypervisor=str(conn.getType()),
            hypervisor_version=_version(int(conn.getVersion())),
            driver_version=_version(int(conn.getLibVersion())),
        )

    async def host_info(self) -> HostInfo:
        return await self._run(self._op_host_info)

    def _op_image_exists(self, image: ImageRef) -> bool:
        pool_name = image.pool or self.connection.storage_pool
        storage_pool = storage.pool(self._conn.get(), pool_name)
        # Images copied into the pool's folder by hand are only seen after a refresh.
        if storage_pool.isActive():
            storage_pool.refresh(0)
        return storage.lookup_volume(storage_pool, image.volume) is not None

    async def image_exists(self, image: ImageRef) -> bool:
        """Whether the template's volume is in the node's storage pool (the template check uses it)."""
        return await self._run(self._op_image_exists, image)

    def _op_list(self) -> list[InstanceRef]:
        refs = []
        for dom in self._conn.get().listAllDomains(0):
            try:
                refs.append(self._ref(dom))
            except libvirt.libvirtError as error:
                if error_code(error) != libvirt.VIR_ERR_NO_DOMAIN:  # undefined while we listed
                    raise
        return sorted(refs, key=lambda ref: ref.name)

    async def list_instances(self) -> list[InstanceRef]:
        return await self._run(self._op_list)

    # --- create / reinstall / destroy -----------------------------------------------------------

    def _build_storage(self, spec: InstanceSpec) -> str:
        """Fresh disk and seed volumes for ``spec`` (replacing any we own); the new instance id."""
        conn = self._conn.get()
        pool = self._pool()
        disk_name = storage.disk_volume_name(spec.name)
        seed_name = storage.seed_volume_name(spec.name)
        for name in (disk_name, seed_name):
            storage.delete_volume(pool, name)
        instance_id = _new_instance_id(spec.name)
        try:
            storage.create_disk(
                conn, pool, spec.image, name=disk_name, disk_gib=spec.disk_gib, mode=self.options.disk_mode
            )
            iso = cloudinit.build_seed_iso(cloudinit.seed_files(spec, instance_id))
            storage.create_seed(conn, pool, name=seed_name, image=iso)
        except BaseException:
            for name in (disk_name, seed_name):
                storage.delete_volume(pool, name)
            raise
        return instance_id

    def _define(
        self, spec: InstanceSpec, instance_id: str, uuid: str | None, generation: str | None = None
    ) -> Any:
        config = build_domain(
            spec,
            self.options,
            pool=self.connection.storage_pool,
            network=self.connection.network,
            instance_id=instance_id,
            uuid=uuid,
            generation=generation,
        )
        return self._conn.get().defineXML(config.to_xml())

    def _op_create(self, spec: InstanceSpec, start: bool) -> InstanceRef:
        existing = self._find_by_name(spec.name)
        if existing is not None:
            metadata = self._metadata(existing)
            if metadata is not None and metadata.server_id == spec.server_id:
                # A retried job whose first run got this far: finish instead of failing.
                if start and not existing.isActive():
                    existing.create()
                return self._ref(existing)
            raise PermanentDriverError(f"a domain named {spec.name!r} already exists on the node")
        instance_id = self._build_storage(spec)
        try:
            dom = self._define(spec, instance_id, uuid=None)
        except BaseException:
            pool = self._pool()
            for name in (storage.disk_volume_name(spec.name), storage.seed_volume_name(spec.name)):
                storage.delete_volume(pool, name)
            raise
        if start:
            dom.create()
        return self._ref(dom)

    async def create(self, spec: InstanceSpec, *, start: bool = True) -> InstanceRef:
        return await self._run_long(self._op_create, spec, start)

    def _op_reinstall(self, external_id: str, spec: InstanceSpec) -> InstanceRef:
        """New volumes first, then the swap, then the old volumes go: until the swap the instance
        is untouched, and a failed swap puts its old definition back, so a reinstall that raises
        leaves the instance on its previous disk (running if it was)."""
        dom = self._domain(external_id)
        if str(dom.name()) != spec.name:
            raise PermanentDriverError("reinstall cannot rename an instance")
        metadata = self._metadata(dom)
        if metadata is None or metadata.server_id != spec.server_id:
            # Never wipe the disk of a domain the panel did not create for this server.
            raise PermanentDriverError("that domain does not belong to this server")
        secure_inactive = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        old_xml = str(dom.XMLDesc(secure_inactive))
        in_use = {disk.volume for disk in DomainConfig.from_xml(old_xml).disks if disk.volume}
        pool = self._pool()
        # What an earlier try left behind (a crash between making the volumes and the swap).
        for name in storage.owned_volumes(pool, spec.name):
            if name not in in_use:
                storage.delete_volume(pool, name)
        generation = secrets.token_hex(4)
        instance_id = self._make_volumes(spec, pool, generation)
        self._swap(dom, spec, instance_id, generation, old_xml)
        for name in in_use:
            if storage.owned_by(spec.name, name):
                # A leftover on failure: the next reinstall or the deletion removes it.
                with contextlib.suppress(libvirt.libvirtError):
                    storage.delete_volume(pool, name)
        return self._ref(self._domain(external_id))

    def _make_volumes(self, spec: InstanceSpec, pool: Any, generation: str) -> str:
        """The new disk and seed for a reinstall, beside the old ones; none of them on failure."""
        names = _volume_names(spec.name, generation)
        instance_id = _new_instance_id(spec.name)
        try:
            storage.create_disk(
                self._conn.get(),
                pool,
                spec.image,
                name=names[0],
                disk_gib=spec.disk_gib,
                mode=self.options.disk_mode,
            )
            iso = cloudinit.build_seed_iso(cloudinit.seed_files(spec, instance_id))
            storage.create_seed(self._conn.get(), pool, name=names[1], image=iso)
        except BaseException:
            for name in names:
                storage.delete_volume(pool, name)
            raise
        return instance_id

    def _swap(self, dom: Any, spec: InstanceSpec, instance_id: str, generation: str, old_xml: str) -> None:
        """Point the instance at its new volumes and start it; on failure, back to the old ones."""
        was_active = bool(dom.isActive())
        if was_active:
            dom.destroy()
        try:
            new = self._define(spec, instance_id, uuid=str(dom.UUIDString()), generation=generation)
            new.create()
        except BaseException:
            # Best effort: the error that brought us here is the one to report.
            with contextlib.suppress(libvirt.libvirtError):
                restored = self._conn.get().defineXML(old_xml)
                if was_active and not restored.isActive():
                    restored.create()
            pool = self._pool()
            for name in _volume_names(spec.name, generation):
                with contextlib.suppress(libvirt.libvirtError):
                    storage.delete_volume(pool, name)
            raise

    async def reinstall(self, external_id: str, spec: InstanceSpec) -> InstanceRef:
        return await self._run_long(self._op_reinstall, external_id, spec)

    def _op_destroy(self, external_id: str) -> None:
        try:
            dom = self._domain(external_id)
        except libvirt.libvirtError as error:
            if error_code(error) == libvirt.VIR_ERR_NO_DOMAIN:
                return  # already gone: a destroy job may be retried after it succeeded
            raise
        name = str(dom.name())
        if dom.isActive():
            dom.destroy()
        config = DomainConfig.from_xml(str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
        # Volumes first, then the definition: if we die in between, a re-run still finds the
        # domain and finishes; the other order would leave volumes nobody knows about.
        for disk in config.disks:
            if disk.volume and disk.pool and storage.owned_by(name, disk.volume):
                storage.delete_volume(storage.pool(self._conn.get(), disk.pool), disk.volume)
        # And what a reinstall could not remove (an old disk, or a crashed try's new one).
        pool = self._pool()
        for volume in storage.owned_volumes(pool, name):
            storage.delete_volume(pool, volume)
        try:
            try:
                dom.undefineFlags(_UNDEFINE_FLAGS)
            except libvirt.libvirtError as error:
                # Drivers without NVRAM/checkpoint support (the test driver) refuse those flags.
                if error_code(error) != libvirt.VIR_ERR_INVALID_ARG:
                    raise
                dom.undefineFlags(_UNDEFINE_BASIC_FLAGS)
        except libvirt.libvirtError as error:
            if error_code(error) != libvirt.VIR_ERR_NO_DOMAIN:
                raise

    async def destroy(self, external_id: str) -> None:
        await self._run_long(self._op_destroy, external_id)

    # --- power ----------------------------------------------------------------------------------

    def _op_start(self, external_id: str) -> None:
        dom = self._domain(external_id)
        if not dom.isActive():
            dom.create()

    async def start(self, external_id: str) -> None:
        await self._run(self._op_start, external_id)

    def _op_shutdown(self, external_id: str) -> bool:
        dom = self._domain(external_id)
        if not dom.isActive():
            return False
        # Flags 0: QEMU then uses the ACPI power button, since our domains have no guest-agent
        # channel (and the test driver accepts no explicit flag).
        dom.shutdownFlags(0)
        return True

    async def shutdown(self, external_id: str) -> None:
        await self._run(self._op_shutdown, external_id)

    def _op_force_off(self, external_id: str) -> None:
        dom = self._domain(external_id)
        if dom.isActive():
            try:
                dom.destroy()
            except libvirt.libvirtError as error:
                # It may have powered off by itself between the two calls.
                if error_code(error) != libvirt.VIR_ERR_OPERATION_INVALID or dom.isActive():
                    raise

    def _op_is_active(self, external_id: str) -> bool:
        return bool(self._domain(external_id).isActive())

    async def stop(self, external_id: str, *, force: bool, timeout_s: float = 60.0) -> None:
        if force:
            await self._run(self._op_force_off, external_id)
            return
        if not await self._run(self._op_shutdown, external_id):
            return
        deadline = time.monotonic() + timeout_s
        while await self._run(self._op_is_active, external_id):
            if time.monotonic() >= deadline:
                raise TransientDriverError(f"the guest did not power off within {timeout_s:.0f}s")
            await asyncio.sleep(_POLL_S)

    def _op_reboot(self, external_id: str, force: bool) -> None:
        dom = self._domain(external_id)
        if not dom.isActive():
            dom.create()  # a reboot of a powered-off server brings it up
        elif force:
            dom.reset(0)
        else:
            dom.reboot(0)  # ACPI, as for shutdown

    async def reboot(self, external_id: str, *, force: bool = False) -> None:
        await self._run(self._op_reboot, external_id, force)

    def _op_state(self, external_id: str) -> InstanceState:
        return self._state(self._domain(external_id))

    async def state(self, external_id: str) -> InstanceState:
        return await self._run(self._op_state, external_id)

    # --- resize, console, stats -----------------------------------------------------------------

    def _op_resize(self, external_id: str, resize: ResizeSpec) -> None:
        dom = self._domain(external_id)
        if dom.isActive():
            raise PermanentDriverError("stop the server before resizing it")
        secure_inactive = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        config = DomainConfig.from_xml(str(dom.XMLDesc(secure_inactive)))
        name = str(dom.name())
        for disk in config.disks:
            if disk.device == "disk" and disk.volume and disk.pool and storage.owned_by(name, disk.volume):
                conn = self._conn.get()
                storage.resize_disk(conn, storage.pool(conn, disk.pool), disk.volume, resize.disk_gib)
        replacement = dataclasses.replace(config, vcpus=resize.vcpus, memory_kib=resize.memory_mib * 1024)
        self._conn.get().defineXML(replacement.to_xml())

    async def resize(self, external_id: str, resize: ResizeSpec) -> None:
        await self._run_long(self._op_resize, external_id, resize)

    def _op_console(self, external_id: str) -> ConsoleEndpoint:
        dom = self._domain(external_id)
        if not dom.isActive():
            raise PermanentDriverError("the server is not running")
        config = DomainConfig.from_xml(str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)))
        if not config.graphics or config.graphics[0].port <= 0:
            raise PermanentDriverError("the server has no VNC console")
        graphics = config.graphics[0]
        return ConsoleEndpoint(
            protocol="vnc",
            host=graphics.listen,
            port=graphics.port,
            password=graphics.password,
            tunnel_host=self._conn.remote_host,
        )

    async def console(self, external_id: str) -> ConsoleEndpoint:
        return await self._run(self._op_console, external_id)

    def _op_stats(self, external_id: str) -> InstanceStats:
        dom = self._domain(external_id)
        records = self._conn.get().domainListGetStats([dom], _STATS_FLAGS, 0)
        record = records[0][1] if records else {}
        return parse_stats(record, sampled_at=datetime.now(UTC))

    async def stats(self, external_id: str) -> InstanceStats:
        return await self._run(self._op_stats, external_id)

    async def aclose(self) -> None:
        # Closing an open connection is one more call to the node (which may not answer); closing
        # one that is not open (or still being opened) never waits (see Connection.close).
        if not self._conn.connected:
            self._conn.close()
            return
        timeouts = self.connection.timeouts
        await executor.call(
            self.connection.endpoint.describe(),
            self._conn.close,
            threads=timeouts.threads,
            timeout_s=timeouts.connect_s,
            what="closing",
        )


__all__ = ["LibvirtDriver"]
