"""The email an account's owner gets whenever one of its second factors is added or removed.

A thief who got into an account adds their own passkey or turns the authenticator app off
first; the owner hears about it at once and knows what to do. The message says what changed,
when, and from which address; it never carries a secret (no code, no credential, no link token).
"""

from __future__ import annotations

import enum

from sqlalchemy.ext.asyncio import AsyncSession

from corral.db.session import settings_of
from corral.kit.clock import utcnow
from corral.kit.context import current_request
from corral.models.users import User
from corral.notifications.service import absolute_url, mailer

SECURITY_PATH = "/account/security"
FORGOT_PATH = "/password/forgot"


class FactorChange(enum.StrEnum):
    """What changed; the email template words each one (``second_factor_changed``)."""

    PASSKEY_ADDED = "passkey_added"
    PASSKEY_REMOVED = "passkey_removed"
    TOTP_ENABLED = "totp_enabled"
    TOTP_DISABLED = "totp_disabled"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"


async def notify_factor_change(
    session: AsyncSession, user: User, change: FactorChange, *, detail: str | None = None
) -> None:
    """Queue the notice in the caller's transaction: it is sent if and only if the change commits.

    ``detail`` is the passkey's name (the owner's own label), never anything secret.
    """
    settings = settings_of(session)
    context = current_request()
    await mailer.queue(
        session,
        to=user.email,
        template="second_factor_changed",
        context={
            "name": user.name,
            "change": change.value,
            "detail": detail,
            "changed_at": utcnow().isoformat(),
            "ip": context.ip if context is not None else None,
            "security_link": absolute_url(settings, SECURITY_PATH),
            "reset_link": absolute_url(settings, FORGOT_PATH),
        },
    )
