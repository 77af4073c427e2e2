"""Jobs that carry server changes to the hypervisor.

Each reloads the server, checks it is still in the state the job expects (so a retried or stale
job does nothing harmful), talks to the node's driver, and records the result. They hold the
server's lock, so two of them never act on one server at once.
"""

from __future__ import annotations

import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from corral.drivers.base import (
    DirectKernelBoot,
    DriverError,
    ImageRef,
    InstanceNotFound,
    InstanceSpec,
    NetworkInterface,
)
from corral.ipam.service import ipam
from corral.jobs.app import Backoff, GiveUp, TaskContext, task
from corral.jobs.errors import JobAlreadyQueued, PermanentJobError
from corral.jobs.service import job_service
from corral.kit.clock import utcnow
from corral.models.servers import PowerState, Server, ServerStatus
from corral.servers import repository
from corral.servers.hypervisor import open_driver
from corral.servers.lifecycle import move
from corral.servers.reconciler import POWER_STATES, reconcile

# Hypervisor calls can fail for a while (a node rebooting); give them a few minutes.
LIFECYCLE_RETRY = Backoff(attempts=6, base_seconds=5, cap_seconds=120)


def instance_name(server_id: int) -> str:
    return f"corral-{server_id}"


def mac_address(server_id: int) -> str:
    """A stable MAC per server (QEMU's 52:54:00 prefix), so a reinstall keeps the same one."""
    low = server_id & 0xFFFFFF
    return f"52:54:00:{low >> 16:02x}:{(low >> 8) & 0xFF:02x}:{low & 0xFF:02x}"


VNC_PASSWORD_LENGTH = 8


async def build_spec(
    session: AsyncSession, server: Server, *, ssh_keys: list[str], root_password_hash: str | None
) -> InstanceSpec:
    if server.node_id is None or server.template_id is None or server.hostname is None:
        raise PermanentJobError(f"server {server.id} is not set up (node, template or hostname missing)")
    image = await repository.template_on_node(session, server.template_id, server.node_id)
    if image is None:
        raise PermanentJobError("the chosen operating system is no longer available on this node")
    network = await ipam.network_config(session, server.id)
    kernel_boot = (
        DirectKernelBoot(kernel=image.boot_kernel, initrd=image.boot_initrd, cmdline=image.boot_cmdline or "")
        if image.boot_kernel
        else None
    )
    return InstanceSpec(
        server_id=str(server.id),
        name=instance_name(server.id),
        hostname=server.hostname,
        vcpus=server.vcpus,
        memory_mib=server.memory_mib,
        disk_gib=server.disk_gib,
        image=ImageRef(volume=image.image_ref, kernel_boot=kernel_boot),
        interfaces=(
            NetworkInterface(
                mac=mac_address(server.id),
                addresses=network.cidrs,
                gateway4=network.gateway4,
                gateway6=network.gateway6,
                nameservers=tuple(network.nameservers),
            ),
        ),
        root_password_hash=root_password_hash,
        ssh_authorized_keys=tuple(ssh_keys),
        # VNC listens on the node's loopback, but anything there could otherwise watch the screen;
        # the console proxy reads the password back from the hypervisor, so it is never stored.
        vnc_password=new_vnc_password(),
    )


def new_vnc_password() -> str:
    """Eight random characters: the most VNC's DES-based authentication uses."""
    return secrets.token_urlsafe(6)[:VNC_PASSWORD_LENGTH]


async def _load(ctx: TaskContext, server_id: int) -> Server:
    """The server, read without a row lock. The job lock ``server:<id>`` keeps other jobs off it;
    a row lock would be held across the hypervisor call, and a request on the server (power, say)
    would then wait for as long as a node that never answers keeps the job waiting."""
    server = await ctx.session.get(Server, server_id, populate_existing=True)
    if server is None:
        raise PermanentJobError(f"server {server_id} no longer exists")
    return server


async def _relock(ctx: TaskContext, server: Server) -> None:
    """After the hypervisor call, before writing: lock the row and read it again, since a request
    may have changed it meanwhile (a deletion asked for during a build, say)."""
    await ctx.session.refresh(server, with_for_update=True)


async def _build_gave_up(give: GiveUp) -> None:
    """A build that failed for good (the node refused, or retries ran out): "Build failed" with
    why, and the setup offered again (the server keeps its room and addresses)."""
    server = await repository.server_for_update(give.session, int(give.arguments["server_id"]))
    if server is None or server.status != ServerStatus.PROVISIONING:
        return
    move(server, ServerStatus.FAILED, detail=f"The build did not succeed: {give.reason}")
    await give.log("Gave up: the server is marked failed and can be set up again")


async def _reinstall_gave_up(give: GiveUp) -> None:
    """A reinstall that failed for good. The driver leaves the instance on its previous disk
    whenever its reinstall raises, so after a driver error (or a refusal before the driver was
    called) the server is handed back as it was; after anything else (a lost worker) nobody knows
    which disk it has: "Reinstall failed", with the reinstall offered again."""
    server = await repository.server_for_update(give.session, int(give.arguments["server_id"]))
    if server is None or server.status != ServerStatus.REINSTALLING:
        return
    # A PermanentJobError comes from before the driver was called (the template was withdrawn).
    if isinstance(give.error, DriverError | PermanentJobError):
        detail = f"The reinstall did not succeed: {give.reason}. The server kept its previous disk."
        move(server, ServerStatus.ACTIVE, detail=detail)
        await give.log("Gave up: the server is back on its previous disk")
    else:
        move(server, ServerStatus.FAILED, detail=f"The reinstall did not finish: {give.reason}")
        await give.log("Gave up: the server is marked failed and can be reinstalled again")


@task("server.provision", lock="server:{server_id}", retry=LIFECYCLE_RETRY, on_give_up=_build_gave_up)
async def provision(
    ctx: TaskContext, *, server_id: int, ssh_keys: list[str], root_password_hash: str | None = None
) -> None:
    server = await _load(ctx, server_id)
    if server.status != ServerStatus.PROVISIONING:
        await ctx.log(f"Nothing to do: the server is {server.status}")
        return
    spec = await build_spec(ctx.session, server, ssh_keys=ssh_keys, root_password_hash=root_password_hash)
    await ctx.log(
        f"Creating the server on its node ({spec.vcpus} vCPU, {spec.memory_mib} MiB, {spec.disk_gib} GiB)"
    )
    async with open_driver(ctx.session, server.node_id) as driver:
        # Safe to repeat: the driver adopts an instance this server already made on a failed try.
        # A refusal (PermanentDriverError) is not retried; _build_gave_up marks the server failed.
        instance = await driver.create(spec, start=True)
    await _relock(ctx, server)
    server.external_id = instance.external_id  # recorded whatever happened: the instance exists
    if server.status != ServerStatus.PROVISIONING:
        await ctx.log(f"Built, but the server became {server.status} meanwhile; left as it is")
        return
    move(server, ServerStatus.ACTIVE)
    server.power_state = POWER_STATES.get(instance.state, PowerState.UNKNOWN).value
    server.state_checked_at = utcnow()
    await ctx.log("The server is built and starting")


@task("server.power", lock="server:{server_id}", retry=LIFECYCLE_RETRY)
async def power(ctx: TaskContext, *, server_id: int, action: str) -> None:
    server = await _load(ctx, server_id)
    if server.status != ServerStatus.ACTIVE or server.external_id is None:
        await ctx.log(f"Skipped: the server is {server.status}")
        return
    await ctx.log(
        {"start": "Starting", "shutdown": "Shutting down", "restart": "Restarting"}.get(action, "Stopping")
    )
    async with open_driver(ctx.session, server.node_id) as driver:
        if action == "start":
            await driver.start(server.external_id)
        elif action == "shutdown":
            await driver.stop(server.external_id, force=False)
        elif action == "restart":
            await driver.reboot(server.external_id)
        elif action == "stop":
            await driver.stop(server.external_id, force=True)
        else:
            raise PermanentJobError(f"unknown power action {action!r}")
        state = await driver.state(server.external_id)
    await _relock(ctx, server)
    server.power_state = POWER_STATES.get(state, PowerState.UNKNOWN).value
    server.state_checked_at = utcnow()
    await ctx.log(f"Done: the server is {server.power_state}")


@task("server.reinstall", lock="server:{server_id}", retry=LIFECYCLE_RETRY, on_give_up=_reinstall_gave_up)
async def reinstall(
    ctx: TaskContext, *, server_id: int, ssh_keys: list[str], root_password_hash: str | None = None
) -> None:
    server = await _load(ctx, server_id)
    if server.status != ServerStatus.REINSTALLING or server.external_id is None:
        await ctx.log(f"Nothing to do: the server is {server.status}")
        return
    spec = await build_spec(ctx.session, server, ssh_keys=ssh_keys, root_password_hash=root_password_hash)
    await ctx.log("Making a new disk with the operating system, then replacing the old one with it")
    async with open_driver(ctx.session, server.node_id) as driver:
        # One driver call, so any error from it means the old disk is still in place (the
        # driver's contract), which is what _reinstall_gave_up relies on.
        instance = await driver.reinstall(server.external_id, spec)
    await _relock(ctx, server)
    server.external_id = instance.external_id
    if server.status != ServerStatus.REINSTALLING:
        await ctx.log(f"Reinstalled, but the server became {server.status} meanwhile; left as it is")
        return
    move(server, ServerStatus.ACTIVE)
    server.power_state = POWER_STATES.get(instance.state, PowerState.UNKNOWN).value
    server.state_checked_at = utcnow()
    await ctx.log("Reinstalled")


@task("server.destroy", lock="server:{server_id}", retry=LIFECYCLE_RETRY)
async def destroy(ctx: TaskContext, *, server_id: int) -> None:
    server = await _load(ctx, server_id)
    if server.status != ServerStatus.DELETING:
        await ctx.log(f"Nothing to do: the server is {server.status}")
        return
    if server.external_id is not None and server.node_id is not None:
        await ctx.log("Removing the server and its disks from the node")
        async with open_driver(ctx.session, server.node_id) as driver:
            try:
                await driver.destroy(server.external_id)
            except InstanceNotFound:
                await ctx.log("The instance was already gone from the node")
    await _relock(ctx, server)
    released = len(await ipam.release_for_server(ctx.session, server.id))
    move(server, ServerStatus.DELETED)
    server.power_state = PowerState.STOPPED.value
    server.deleted_at = utcnow()
    await ctx.log(f"Deleted; {released} address(es) released")


@task("servers.reconcile_node", queueing_lock="reconcile:{node_id}", retry=None)
async def reconcile_node(ctx: TaskContext, *, node_id: int) -> None:
    """List one node's instances and apply them to the panel's records (never fixes anything)."""
    async with open_driver(ctx.session, node_id) as driver:
        instances = await driver.list_instances()
    report = await reconcile(ctx.session, node_id, instances)
    if report.new_drift:
        await ctx.log(f"{len(report.new_drift)} new drift report(s)", level="warning")


@task("servers.reconcile", queueing_lock="servers.reconcile", retry=None)
async def reconcile_all(ctx: TaskContext, *, timestamp: int) -> None:
    """Every minute: one reconcile job per reachable node, each its own job so one slow or broken
    node neither delays nor fails the others."""
    for node_id in await repository.node_ids_to_reconcile(ctx.session):
        try:
            await job_service.defer(ctx.session, "servers.reconcile_node", node_id=node_id)
        except JobAlreadyQueued:
            continue  # the previous minute's check of this node has not run yet
