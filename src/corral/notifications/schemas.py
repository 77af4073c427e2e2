"""The email templates there are, what each needs, and the shapes the domain hands around.

Each template in :data:`TEMPLATES` has three files under ``web/templates/email/``:
``<name>.subject.txt``, ``<name>.txt`` (the plain-text part, readable on its own) and
``<name>.html`` (the HTML part, extending ``email/base.html``).

Context values are JSON (they are stored in ``email_messages.context`` and rendered by a job):

- ``link`` and every ``*_link`` key: an absolute URL built with
  :func:`corral.notifications.service.absolute_url` from ``settings.web.public_url``, never from a
  request's Host header (a forged Host would otherwise send the user's token to an attacker).
- ``name``: how to greet the user; ``None`` or ``""`` greets without a name. Escaped in HTML.
- times (``until``, ``changed_at``): ISO 8601 strings with a time zone, ``dt.isoformat()``.
- ``valid_minutes``: a positive whole number of minutes, shown as "30 minutes", "24 hours".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict

# Keys every template receives from the sender and no caller may set.
RESERVED_KEYS: frozenset[str] = frozenset({"app_name", "panel_url"})


@dataclass(frozen=True)
class EmailTemplate:
    """A message the panel can send and the context keys its templates use."""

    name: str
    purpose: str
    required: frozenset[str]
    optional: frozenset[str] = field(default_factory=frozenset)

    @property
    def keys(self) -> frozenset[str]:
        return self.required | self.optional


def _template(name: str, purpose: str, required: set[str], optional: set[str] | None = None) -> EmailTemplate:
    return EmailTemplate(name, purpose, frozenset(required), frozenset(optional or ()))


TEMPLATES: Mapping[str, EmailTemplate] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            _template(
                "verify_email",
                "Confirm the address given at sign-up.",
                {"link", "name"},
                {"valid_minutes"},
            ),
            _template(
                "reset_password",
                "A link to choose a new password, asked for on the sign-in page.",
                {"link", "name", "valid_minutes"},
            ),
            _template(
                "account_locked",
                "Sign-in is blocked until a time after repeated failed attempts.",
                {"name", "until"},
                {"reset_link"},
            ),
            _template(
                "change_email",
                "Sent to the NEW address: confirm it before it replaces the old one.",
                {"link", "name", "new_email"},
                {"valid_minutes"},
            ),
            _template(
                "password_changed",
                "Notice that the password changed, and what to do if it was not the user.",
                {"name"},
                {"changed_at", "reset_link"},
            ),
            _template(
                "email_changed",
                "Sent to the OLD address once an email change applied, in case it was not the owner.",
                {"name", "new_email"},
                {"changed_at"},
            ),
            _template(
                "unfinished_order",
                "A server's setup was never finished: its order is released (server deleted, address "
                "freed) at release_at unless the setup is finished first. Sent once per server.",
                {"link", "name", "server_name", "ordered_at", "release_at"},
            ),
            _template(
                "welcome",
                "After the address is verified: the account is ready.",
                {"name"},
            ),
            _template(
                "passkey_enrolment",
                "A single-use link to add the first passkey of an operator or super-admin account.",
                {"link", "name", "role", "valid_minutes"},
            ),
            _template(
                "second_factor_changed",
                "Notice that a passkey or the authenticator app was added or removed, and what to do "
                "if it was not the owner. Never carries a secret.",
                {"name", "change", "changed_at", "security_link", "reset_link"},
                {"detail", "ip"},
            ),
        )
    }
)


@dataclass(frozen=True)
class RenderedEmail:
    """The three rendered parts of one message."""

    subject: str
    text: str
    html: str


DeliveryStatus = Literal["sent", "already_sent", "missing", "retry", "failed"]


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one sending attempt came to. ``error`` is set for "retry" and "failed"."""

    status: DeliveryStatus
    error: str | None = None


class EmailMessageRead(BaseModel):
    """A message as pages show it. Deliberately without the context: it can hold a reset link."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    to_address: str
    template: str
    subject: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
