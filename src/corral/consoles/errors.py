"""Expected refusals of the console, each with a stable ``code``.

The page refusals are ordinary HTTP errors. A WebSocket cannot answer with a status page, so a
refused console connection is closed with an application close code (4000-4999) and a reason the
browser script shows; :class:`ConsoleRefused` carries both.
"""

from __future__ import annotations

from corral.kit.errors import Conflict

# Close codes of a refused console WebSocket, modelled on the HTTP status each one mirrors.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_CONFLICT = 4409
CLOSE_UNREACHABLE = 4502


class ConsoleUnavailable(Conflict):
    code = "console_unavailable"
    default_message = "The console is not available for this server right now."


class ConsoleRefused(Exception):
    """A console connection that must be closed: ``reason`` is a stable key for the audit log,
    ``message`` is what the browser shows (at most 123 bytes, the WebSocket close limit)."""

    def __init__(self, close_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.reason = reason
        self.message = message[:120]


class VncHandshakeFailed(Exception):
    """The VNC server refused or spoke something we do not understand."""
