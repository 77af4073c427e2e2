"""Expected failures. Each has an HTTP status and a stable ``code`` that clients can rely on.

Handlers never catch these: the error handlers render them as JSON for ``/api`` and as a page,
a toast or an inline fragment for the HTML side.
"""

from __future__ import annotations

from typing import Any


class PanelError(Exception):
    status_code: int = 400
    code: str = "bad_request"
    default_message: str = "The request could not be processed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries (a 429's Retry-After, say)."""
        return {}


class NotFound(PanelError):
    status_code = 404
    code = "not_found"
    default_message = "That page or object does not exist, or you cannot see it."


class Forbidden(PanelError):
    status_code = 403
    code = "forbidden"
    default_message = "You do not have permission to do that."


class Conflict(PanelError):
    status_code = 409
    code = "conflict"
    default_message = "That conflicts with the current state; reload and try again."


class Busy(Conflict):
    """A row (or advisory lock) this request needs is held by another transaction for longer than
    the database's ``lock_timeout``: answered at once with a 409 rather than a wait."""

    code = "busy"
    default_message = "This is being changed by another action right now. Try again in a moment."

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class ValidationFailed(PanelError):
    status_code = 422
    code = "validation_failed"
    default_message = "Some fields need attention."
