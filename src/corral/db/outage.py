"""Which database errors mean "the database cannot be reached right now" (an outage, a restart,
a pool with no free connection) rather than a fault in the request or the code.

A request that meets one answers 503 with ``Retry-After`` (web.errors); the engine's pre-ping
replaces the dead connections once the server is back, so nothing needs restarting.
"""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as QueuePoolTimeout

# SQLSTATEs the server sends while it cannot serve: admin_shutdown, crash_shutdown,
# cannot_connect_now (starting up or shutting down), too_many_connections. Class 08 is the
# connection exceptions.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
_CHAIN_DEPTH = 8


def is_database_unavailable(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from (procrastinate and anyio wrap them), is
    the database being unreachable."""
    seen: list[BaseException] = [error]
    for _ in range(_CHAIN_DEPTH):
        if not seen:
            return False
        current = seen.pop()
        if _unavailable(current):
            return True
        if isinstance(current, BaseExceptionGroup):
            seen.extend(current.exceptions)
        cause = current.__cause__ or current.__context__
        if cause is not None:
            seen.append(cause)
    return False


def _unavailable(error: BaseException) -> bool:
    if isinstance(error, QueuePoolTimeout | PoolTimeout):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or (error.orig is not None and _unavailable(error.orig))
    if isinstance(error, psycopg.InterfaceError):
        return True  # "the connection is closed"
    if isinstance(error, psycopg.OperationalError):
        # No SQLSTATE: the client library failed (refused, reset, closed unexpectedly). A state of
        # this class's own, like a statement timeout (57014), is not an outage.
        state = error.sqlstate
        return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES
    return False
