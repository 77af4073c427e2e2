"""procrastinate's psycopg connector, with a LISTEN connection that survives a database restart.

procrastinate's listener reconnects once when its connection breaks; if the server is still down
at that instant (a restart takes a moment), the reconnect fails, the listener task ends and the
worker stops ("Side task listener failed … stopping worker"). Here the listener keeps reconnecting
with backoff instead. Jobs deferred while it was away are still found by the worker's polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import psycopg
from procrastinate import PsycopgConnector, exceptions
from procrastinate.connector import Notify

from corral.kit.logging import get_logger

log = get_logger("corral.jobs")

FIRST_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 10.0
# A listener that stayed connected this long was healthy: its next failure starts the backoff over.
_HEALTHY_SECONDS = 30.0


def next_delay(delay: float, *, cap: float = MAX_RETRY_SECONDS) -> float:
    """The wait after ``delay``: doubled, at most ``cap``."""
    return min(cap, delay * 2)


class ReconnectingConnector(PsycopgConnector):
    async def listen_notify(self, on_notification: Notify, channels: Iterable[str]) -> None:
        channels = list(channels)
        loop = asyncio.get_running_loop()
        delay = FIRST_RETRY_SECONDS
        while True:
            started = loop.time()
            try:
                # Returns only by raising: it loops over its connection until cancelled.
                await super().listen_notify(on_notification=on_notification, channels=channels)
            except (exceptions.ConnectorException, psycopg.Error, OSError) as error:
                if loop.time() - started >= _HEALTHY_SECONDS:
                    delay = FIRST_RETRY_SECONDS
                log.warning("job_listener_reconnecting", error=type(error).__name__, in_seconds=delay)
                await asyncio.sleep(delay)
                delay = next_delay(delay)
