"""Asking a node how it is: the connection test, the health check and the template check all come
through here, so they judge a node the same way.

A probe never raises for the node's sake: whatever the driver says becomes a ``ProbeResult`` with
the status the node deserves and a message fit to show an operator (a driver's ``message``, never a
traceback). How errors map to statuses:

- answered                              -> online
- ``TransientDriverError``, timeout     -> offline (unreachable: the network, the daemon, the host)
- ``DriverAuthError``, unreadable creds -> unhealthy (it answered, but refused us)
- any other driver error                -> unhealthy
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from corral.config import Settings
from corral.drivers.base import (
    DriverAuthError,
    DriverConnection,
    DriverError,
    DriverTimeouts,
    Endpoint,
    HostInfo,
    HypervisorDriver,
    ImageRef,
    TransientDriverError,
)
from corral.drivers.registry import get_driver
from corral.kit.logging import get_logger
from corral.models.nodes import NodeStatus

# libvirt's own connect timeouts can be minutes (TCP, ssh); an operator waiting on "Test
# connection" and a health check that runs every minute both need an answer sooner. Each driver
# call also has its own deadlines (``DriverTimeouts``, from the ``drivers`` settings): this bounds a
# probe as a whole whatever those are set to.
PROBE_TIMEOUT_S = 20.0
CLOSE_TIMEOUT_S = 5.0
MESSAGE_LIMIT = 300
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

log = get_logger("corral.nodes.probe")


@runtime_checkable
class ImageInventory(Protocol):
    """What the template check needs from a driver: does this template volume exist on the node?"""

    async def image_exists(self, image: ImageRef) -> bool: ...


@dataclass(frozen=True)
class Target:
    """Everything needed to reach a node, credentials already decrypted."""

    driver: str
    connection: DriverConnection


def timeouts_for(settings: Settings, driver: str) -> DriverTimeouts:
    """The configured deadlines of ``driver``'s calls (``CORRAL_DRIVERS__…``)."""
    kind = settings.drivers.for_kind(driver)
    return DriverTimeouts(
        connect_s=kind.connect_timeout_s,
        operation_s=kind.operation_timeout_s,
        build_s=kind.build_timeout_s,
        threads=kind.threads_per_node,
    )


def connection_for(
    *,
    driver: str,
    endpoint: Endpoint,
    username: str | None,
    password: str | None,
    storage_pool: str,
    network: str,
    domain_type: str,
    options: Mapping[str, str] | None = None,
    timeouts: DriverTimeouts | None = None,
) -> Target:
    # domain_type is a libvirt setting; other drivers reject options they do not know. The node's
    # own driver options (validated by the driver) come on top.
    merged = {"domain_type": domain_type} if driver == "libvirt" else {}
    merged.update(options or {})
    options = merged
    return Target(
        driver=driver,
        connection=DriverConnection(
            endpoint=endpoint,
            username=username,
            password=password,
            storage_pool=storage_pool,
            network=network,
            options=options,
            timeouts=timeouts or DriverTimeouts(),
        ),
    )


@dataclass(frozen=True)
class ProbeResult:
    status: NodeStatus
    host: HostInfo | None = None
    error: str | None = None
    # Template volume name -> found on the node; None when the driver cannot tell.
    images: Mapping[str, bool] | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, error: BaseException) -> ProbeResult:
        return cls(status=status_for(error), error=message_for(error))


def status_for(error: BaseException | None) -> NodeStatus:
    if error is None:
        return NodeStatus.ONLINE
    if isinstance(error, TransientDriverError | TimeoutError):
        return NodeStatus.OFFLINE
    return NodeStatus.UNHEALTHY


def shown(message: str) -> str:
    """A driver's message as staff may see it: one line of printable text, at most
    ``MESSAGE_LIMIT`` characters. A hypervisor library may quote what it read (a file, a remote
    command's output); whatever it quotes, a page never gets more than this short line."""
    line = " ".join(_UNPRINTABLE.sub(" ", message).split())
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 1] + "…"


def message_for(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"the node did not answer within {PROBE_TIMEOUT_S:.0f} seconds"
    if isinstance(error, DriverAuthError):
        already = error.message.lower().startswith("authentication failed")
        return shown(error.message if already else f"authentication failed: {error.message}")
    if isinstance(error, DriverError):
        return shown(error.message)
    return shown(str(error) or type(error).__name__)


@asynccontextmanager
async def open_driver(target: Target) -> AsyncIterator[HypervisorDriver]:
    driver = get_driver(target.driver, target.connection)
    try:
        yield driver
    finally:
        try:
            await asyncio.wait_for(driver.aclose(), CLOSE_TIMEOUT_S)
        except (TimeoutError, DriverError) as error:
            # A connection stuck opening closes itself once the attempt ends; nothing to wait for.
            log.warning("node_driver_close_failed", driver=target.driver, error=message_for(error))


async def _images(driver: HypervisorDriver, images: Sequence[ImageRef]) -> Mapping[str, bool] | None:
    if not images:
        return {}
    if not isinstance(driver, ImageInventory):
        return None
    found: dict[str, bool] = {}
    for image in images:
        found[image.volume] = await asyncio.wait_for(driver.image_exists(image), PROBE_TIMEOUT_S)
    return found


async def probe(target: Target, *, images: Sequence[ImageRef] = ()) -> ProbeResult:
    """Ask the node for its host information and, if it answers, whether ``images`` exist there."""
    try:
        async with open_driver(target) as driver:
            host = await asyncio.wait_for(driver.host_info(), PROBE_TIMEOUT_S)
            try:
                found = await _images(driver, images)
            except (DriverError, TimeoutError) as error:
                # The node answered; only the template check failed. Presence stays as it was.
                log.warning("node_image_check_failed", error=message_for(error))
                found = None
    except (DriverError, TimeoutError) as error:
        return ProbeResult.failed(error)
    except Exception as error:
        # A bug, not the node's fault: keep the traceback in the log, show only what happened.
        log.exception("node_probe_crashed", driver=target.driver)
        return ProbeResult(
            status=NodeStatus.UNHEALTHY,
            error=f"unexpected {type(error).__name__} while talking to the node; see the panel's log",
        )
    return ProbeResult(status=NodeStatus.ONLINE, host=host, images=found)
