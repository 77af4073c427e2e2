"""Keep an open console from outliving the right to use it.

The WebSocket is authorised once, when it opens; a console may then stay open for hours. While the
proxy runs, a watcher asks again every :data:`CONSOLE_RECHECK_SECONDS`, each time in a fresh short
transaction (a long-lived one would hold a connection and see a stale snapshot): is the sign-in
session still good, and is the server still the user's, active, not suspended and not locked for
deletion (``consoles.recheck``)? When not, the proxy is stopped, the VNC connection closed and the
browser told why with a 44xx close code, as a refusal at opening would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from corral.auth.principal import Principal
from corral.consoles.errors import ConsoleRefused
from corral.consoles.service import consoles
from corral.db.session import transaction
from corral.kit.logging import get_logger

# Read at every wait (not bound as a default), so tests can make it shorter with monkeypatch.
CONSOLE_RECHECK_SECONDS: float = 10.0

log = get_logger("corral.consoles")


async def watch(
    factory: async_sessionmaker[AsyncSession], principal: Principal, session_id: int, server_id: int
) -> ConsoleRefused:
    """Return once the console must close, with why (already audited and committed)."""
    while True:
        await asyncio.sleep(CONSOLE_RECHECK_SECONDS)
        try:
            async with transaction(factory) as session:
                closure = await consoles.recheck(session, principal, session_id, server_id)
        except Exception as error:
            # A database hiccup should not cut a working console; nothing can revoke the right to
            # it while the database is unreachable either, so the next check decides.
            log.warning("console_recheck_failed", server_id=server_id, error=str(error))
            continue
        if closure is not None:
            return closure


async def run_watched(
    proxy: Awaitable[None],
    factory: async_sessionmaker[AsyncSession],
    principal: Principal,
    session_id: int,
    server_id: int,
) -> ConsoleRefused | None:
    """Run ``proxy`` (greeting and pumping) until it ends, or until the watcher says the console
    must close; then cancel the other. Returns the watcher's reason, or None when the proxy ended
    first. Errors of the proxy propagate as they would unwatched."""
    proxy_task = asyncio.ensure_future(proxy)
    watch_task = asyncio.create_task(watch(factory, principal, session_id, server_id))
    try:
        await asyncio.wait({proxy_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (proxy_task, watch_task):
            if not task.done():
                task.cancel()
            # Wait for the cancelled task to finish: the proxy's own cleanup closes the VNC side.
            await asyncio.wait({task})
    if not watch_task.cancelled():
        if not proxy_task.cancelled():
            proxy_task.exception()  # both ended at once: the closure wins, the proxy's error is moot
        return watch_task.result()
    proxy_task.result()  # re-raise what ended the proxy, if anything did
    return None
