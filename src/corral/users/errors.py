from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from corral.kit.clock import utcnow
from corral.kit.errors import Conflict, PanelError, ValidationFailed


class EmailTaken(Conflict):
    code = "email_taken"
    default_message = "An account with that email already exists."


class InvalidAccountInput(ValidationFailed):
    """A form's fields broke a rule; ``fields`` maps each field name to what is wrong with it.

    Raised before anything is written, so the page can show the form again with the messages.
    """

    def __init__(self, fields: Mapping[str, str], message: str | None = None) -> None:
        self.fields = dict(fields)
        super().__init__(message, details={"fields": self.fields})


class TooManyRequests(PanelError):
    status_code = 429
    code = "rate_limited"
    default_message = "Too many requests from your network. Wait a few minutes and try again."

    def __init__(self, retry_after: datetime, message: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, details={"retry_after": retry_after.isoformat()})

    @property
    def headers(self) -> dict[str, str]:
        seconds = math.ceil((self.retry_after - utcnow()).total_seconds())
        return {"Retry-After": str(max(1, seconds))}


class InvalidLink(PanelError):
    """An emailed link that is unknown, already used, replaced by a newer one, or expired.

    One message for all of these: which one it was is of no use to the reader and would tell an
    attacker which guesses came close.
    """

    status_code = 400
    code = "invalid_link"
    default_message = "It was already used, a newer one was sent, or it expired."


class EmailInUse(Conflict):
    """Raised when a confirmed address change collides with another account's address."""

    code = "email_in_use"
    default_message = "That email address now belongs to another account, so it cannot be used."
