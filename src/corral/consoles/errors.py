"""Expected refusals of the console, each with a stable ``code``.

The page refusals are ordinary HTTP errors. A WebSocket cannot answer with a status page, so a
refused console connection is closed with an application close code (4000-4999) and a reason;
:class:`ConsoleRefused` carries both. Every close the panel sends has a reason, and
:data:`CLOSE_MESSAGES` is the one table of what the console page says for each code: the page
carries it as JSON (``data-close-messages``), and static/js/console.js shows the code's message
with the server's reason beneath it, or :data:`CLOSE_FALLBACK` for a code it does not know (1006:
the connection dropped without a close frame).
"""

from __future__ import annotations

from corral.kit.errors import Conflict

# Close codes of a console WebSocket: 1000 when the session simply ended, else modelled on the HTTP
# status each one mirrors.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_CONFLICT = 4409
CLOSE_UNREACHABLE = 4502

CLOSE_MESSAGES: dict[int, str] = {
    CLOSE_NORMAL: "The console session ended.",
    CLOSE_PROTOCOL: "The browser and the console did not understand each other.",
    CLOSE_UNAUTHENTICATED: "You are not signed in any more.",
    CLOSE_FORBIDDEN: "This console connection was refused.",
    CLOSE_NOT_FOUND: "This server does not exist, or is not yours.",
    CLOSE_CONFLICT: "The console is closed for this server right now.",
    CLOSE_UNREACHABLE: "The server's console could not be reached.",
}
CLOSE_FALLBACK = "The connection to the console was lost."
# A close frame's reason is at most 123 bytes of UTF-8 (RFC 6455 5.5: 125 minus the code).
MAX_CLOSE_REASON_BYTES = 123


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame can carry, on a character boundary (a longer reason is a
    protocol error, and the close would fail)."""
    return text.encode()[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")


def close_messages() -> dict[str, str]:
    """:data:`CLOSE_MESSAGES` as the console page carries it: codes as strings, and ``fallback``."""
    return {str(code): message for code, message in CLOSE_MESSAGES.items()} | {"fallback": CLOSE_FALLBACK}


class ConsoleUnavailable(Conflict):
    code = "console_unavailable"
    default_message = "The console is not available for this server right now."


class ConsoleRefused(Exception):
    """A console connection that must be closed: ``reason`` is a stable key for the audit log,
    ``message`` is the close frame's reason, shown by the browser under the code's message in
    :data:`CLOSE_MESSAGES` (cut to the 123 bytes a close frame carries)."""

    def __init__(self, close_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.reason = reason
        self.message = close_reason(message)


class VncHandshakeFailed(Exception):
    """The VNC server refused or spoke something we do not understand."""
