"""Errors of the notifications domain.

Two families. Queueing refuses a message the caller got wrong (``InvalidEmailAddress`` may come
from user input and renders as a 422; the others are programming errors). Sending classifies what
the SMTP server said: ``TransientSmtpError`` is worth another attempt later, ``PermanentSmtpError``
is not.
"""

from __future__ import annotations

from corral.kit.errors import ValidationFailed


class InvalidEmailAddress(ValidationFailed):
    code = "invalid_email_address"
    default_message = "Enter a single email address such as name@example.com."


class UnknownEmailTemplate(LookupError):
    """No email template has that name (a programming error in the caller)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no email template is named {name!r}; see notifications.schemas.TEMPLATES")
        self.name = name


class InvalidEmailContext(ValueError):
    """The context does not fit the template: a missing or unknown key, a value that is not JSON,
    a link not built from ``settings.web.public_url``, or a value the template cannot format."""


class InvalidEmailSubject(ValueError):
    """A subject override that is empty, too long or spans several lines."""


class SmtpError(Exception):
    """Sending failed. The message is safe to store and show: it never holds a password or the
    email's context, only what the server or the network said."""


class TransientSmtpError(SmtpError):
    """Worth trying again later: the server could not be reached, timed out, answered 4xx, or the
    configuration (TLS, credentials) needs an operator's fix before the message can go."""


class PermanentSmtpError(SmtpError):
    """The server refused this message for good (a 5xx reply to MAIL, RCPT or DATA), or the
    stored message itself cannot be sent. Trying again cannot help."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
