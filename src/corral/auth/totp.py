"""TOTP (authenticator app) as a second factor, with single-use recovery codes.

    secret, uri, qr_svg = await totp.begin_enrolment(session, principal)
    codes = await totp.confirm(session, principal, "123456")    # shown once, stored hashed
    ok = await totp.verify(session, user_id, "654321")          # at sign-in

A code is accepted within one time step either side of now (clock drift), and only if its time
step is later than the last one accepted: the same code is never accepted twice, nor an older
one after a newer one, so a code seen over someone's shoulder is useless once it was used.
The shared secret is stored encrypted with the panel's keyring, bound to the user's row.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import pyotp
import segno
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.factor_notices import FactorChange, notify_factor_change
from corral.auth.principal import Principal
from corral.db.session import settings_of
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.kit.crypto import Keyring
from corral.kit.errors import Conflict, NotFound, ValidationFailed
from corral.models.mfa import RecoveryCode, TotpFactor
from corral.models.users import User

ISSUER = "Corral"
DIGITS = 6
PERIOD_SECONDS = 30
# One step either side of now: enough for a phone whose clock drifts, no more.
WINDOW_STEPS = 1
RECOVERY_CODE_COUNT = 10
# Unambiguous characters only (no 0/O, 1/I/L), so a code copied from paper is typed right.
_RECOVERY_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_RECOVERY_GROUP = 5
_STYLE_ATTRIBUTE = re.compile(r"""\sstyle=(?:"[^"]*"|'[^']*')""")


class TotpAlreadyEnabled(Conflict):
    code = "totp_already_enabled"
    default_message = "An authenticator app is already set up. Turn it off first to set up another."


class TotpNotEnrolling(NotFound):
    code = "totp_not_enrolling"
    default_message = "Start setting up the authenticator app again: no setup is in progress."


class TotpNotEnabled(NotFound):
    code = "totp_not_enabled"
    default_message = "No authenticator app is set up for this account."


class TotpCodeRejected(ValidationFailed):
    code = "totp_code_rejected"
    default_message = "That code is not right. Check your authenticator app and try again."


class Enrolment(NamedTuple):
    """Unpacks as ``(secret_base32, otpauth_uri, qr_svg)``."""

    secret: str
    uri: str
    qr_svg: str


@dataclass(frozen=True)
class TotpStatus:
    enabled: bool
    enrolling: bool
    confirmed_at: datetime | None
    recovery_codes_left: int


def _context(user_id: int) -> str:
    return f"user:{user_id}:totp"


def _keyring(session: AsyncSession) -> Keyring:
    return Keyring.parse(settings_of(session).security.encryption_keys.get_secret_value())


def _normalise_code(code: str) -> str:
    return "".join(code.split())


def normalise_recovery_code(code: str) -> str:
    """Upper case without spaces or dashes, so "abcde-fghij" and "ABCDEFGHIJ" are the same code."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def hash_recovery_code(code: str) -> str:
    # Codes are random with ~50 bits of entropy, so a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(normalise_recovery_code(code).encode("ascii")).hexdigest()


def _new_recovery_code() -> str:
    chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(2 * _RECOVERY_GROUP))
    return f"{chars[:_RECOVERY_GROUP]}-{chars[_RECOVERY_GROUP:]}"


def qr_svg(data: str) -> str:
    """An inline <svg> of ``data``; no style attributes, which the page's CSP would refuse."""
    svg = segno.make(data, error="m").svg_inline(
        scale=5, border=2, dark="#000", light="#fff", svgclass="totp-qr", lineclass=None
    )
    # segno writes none today; stripping keeps the CSP promise if a later version does.
    return _STYLE_ATTRIBUTE.sub("", svg)


def _step_of(moment: datetime) -> int:
    return int(moment.timestamp()) // PERIOD_SECONDS


def matching_step(secret: str, code: str, last_used_step: int | None, now: datetime) -> int | None:
    """The time step ``code`` belongs to, if it is valid within the window and newer than
    ``last_used_step``; otherwise None."""
    code = _normalise_code(code)
    if len(code) != DIGITS or not code.isdigit():
        return None
    generator = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_SECONDS)
    current = _step_of(now)
    found: int | None = None
    # Every candidate is compared (no early exit), so timing says nothing about which matched.
    for step in range(current - WINDOW_STEPS, current + WINDOW_STEPS + 1):
        expected = generator.at(step * PERIOD_SECONDS)
        if hmac.compare_digest(expected, code) and (last_used_step is None or step > last_used_step):
            found = step
    return found


class TotpService:
    async def _factor(self, session: AsyncSession, user_id: int, *, lock: bool = False) -> TotpFactor | None:
        query = select(TotpFactor).where(TotpFactor.user_id == user_id)
        if lock:
            # Two sign-ins racing with the same code must not both pass the last_used_step check.
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    def _secret(self, session: AsyncSession, factor: TotpFactor) -> str:
        return _keyring(session).decrypt(factor.secret_encrypted, context=_context(factor.user_id))

    async def begin_enrolment(self, session: AsyncSession, principal: Principal) -> Enrolment:
        """A fresh secret for the user's app; replaces a setup that was never confirmed."""
        factor = await self._factor(session, principal.user_id, lock=True)
        if factor is not None and factor.confirmed_at is not None:
            raise TotpAlreadyEnabled()
        secret = pyotp.random_base32()
        encrypted = _keyring(session).encrypt(secret, context=_context(principal.user_id))
        if factor is None:
            session.add(TotpFactor(user_id=principal.user_id, secret_encrypted=encrypted))
        else:
            factor.secret_encrypted = encrypted
            factor.last_used_step = None
        await session.flush()
        uri = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_SECONDS).provisioning_uri(
            name=principal.email, issuer_name=ISSUER
        )
        return Enrolment(secret=secret, uri=uri, qr_svg=qr_svg(uri))

    async def current_enrolment(self, session: AsyncSession, principal: Principal) -> Enrolment | None:
        """The unconfirmed setup in progress, for re-showing the page (e.g. after a wrong code)."""
        factor = await self._factor(session, principal.user_id)
        if factor is None or factor.confirmed_at is not None:
            return None
        secret = self._secret(session, factor)
        uri = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_SECONDS).provisioning_uri(
            name=principal.email, issuer_name=ISSUER
        )
        return Enrolment(secret=secret, uri=uri, qr_svg=qr_svg(uri))

    async def confirm(
        self, session: AsyncSession, principal: Principal, code: str, *, now: datetime | None = None
    ) -> list[str]:
        """The first valid code turns the factor on; returns the recovery codes (shown once)."""
        factor = await self._factor(session, principal.user_id, lock=True)
        if factor is None:
            raise TotpNotEnrolling()
        if factor.confirmed_at is not None:
            raise TotpAlreadyEnabled()
        moment = now or utcnow()
        step = matching_step(self._secret(session, factor), code, factor.last_used_step, moment)
        if step is None:
            raise TotpCodeRejected()
        factor.confirmed_at = moment
        factor.last_used_step = step
        codes = await self._replace_recovery_codes(session, principal.user_id)
        await audit.record(
            session, principal.actor, "auth.totp.enrol", target=Target(type="user", id=principal.user_id)
        )
        await notify_factor_change(session, principal.user, FactorChange.TOTP_ENABLED)
        return codes

    async def verify(
        self, session: AsyncSession, user_id: int, code: str, *, now: datetime | None = None
    ) -> bool:
        """Whether ``code`` is a fresh, valid code of the user's confirmed app; records its step."""
        factor = await self._factor(session, user_id, lock=True)
        if factor is None or factor.confirmed_at is None:
            return False
        step = matching_step(self._secret(session, factor), code, factor.last_used_step, now or utcnow())
        if step is None:
            return False
        factor.last_used_step = step
        await session.flush()
        return True

    async def check_second_factor(
        self, session: AsyncSession, user_id: int, code: str, *, now: datetime | None = None
    ) -> bool:
        """A fresh app code (six digits) or an unused recovery code (anything else), spent if valid."""
        cleaned = code.strip().replace(" ", "")
        if len(cleaned) == DIGITS and cleaned.isdigit():
            return await self.verify(session, user_id, cleaned, now=now)
        return await self.use_recovery_code(session, user_id, cleaned)

    async def use_recovery_code(self, session: AsyncSession, user_id: int, code: str) -> bool:
        """Spend one recovery code; each works exactly once."""
        # A single conditional UPDATE, so two requests with the same code cannot both succeed.
        used = (
            await session.execute(
                update(RecoveryCode)
                .where(
                    RecoveryCode.user_id == user_id,
                    RecoveryCode.code_hash == hash_recovery_code(code),
                    RecoveryCode.used_at.is_(None),
                )
                .values(used_at=utcnow())
                .returning(RecoveryCode.id)
            )
        ).scalar_one_or_none()
        if used is None:
            return False
        await audit.record(
            session,
            await self._actor_for(session, user_id),
            "auth.recovery_code.use",
            target=Target(type="user", id=user_id),
        )
        return True

    async def _actor_for(self, session: AsyncSession, user_id: int) -> Actor:
        # Recovery codes are spent before sign-in completes: no Principal exists yet.
        user = await session.get(User, user_id)
        if user is None:
            raise TotpNotEnabled()
        return Actor.user(user.id, user.email, user.role)

    async def regenerate_recovery_codes(self, session: AsyncSession, principal: Principal) -> list[str]:
        """New recovery codes replacing all earlier ones, used or not."""
        factor = await self._factor(session, principal.user_id)
        if factor is None or factor.confirmed_at is None:
            raise TotpNotEnabled()
        codes = await self._replace_recovery_codes(session, principal.user_id)
        await audit.record(
            session,
            principal.actor,
            "auth.recovery_code.regenerate",
            target=Target(type="user", id=principal.user_id),
        )
        await notify_factor_change(session, principal.user, FactorChange.RECOVERY_CODES_REGENERATED)
        return codes

    async def disable(self, session: AsyncSession, principal: Principal) -> None:
        """Turn the authenticator off and drop its recovery codes."""
        factor = await self._factor(session, principal.user_id, lock=True)
        if factor is None:
            raise TotpNotEnabled()
        was_confirmed = factor.confirmed_at is not None
        await session.delete(factor)
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == principal.user_id))
        await session.flush()
        if was_confirmed:
            # Abandoning an unconfirmed setup changes no sign-in; only a real disable is audited.
            await audit.record(
                session,
                principal.actor,
                "auth.totp.disable",
                target=Target(type="user", id=principal.user_id),
            )
            await notify_factor_change(session, principal.user, FactorChange.TOTP_DISABLED)

    async def status(self, session: AsyncSession, user_id: int) -> TotpStatus:
        factor = await self._factor(session, user_id)
        left = await session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        )
        return TotpStatus(
            enabled=factor is not None and factor.confirmed_at is not None,
            enrolling=factor is not None and factor.confirmed_at is None,
            confirmed_at=factor.confirmed_at if factor is not None else None,
            recovery_codes_left=int(left or 0),
        )

    async def _replace_recovery_codes(self, session: AsyncSession, user_id: int) -> list[str]:
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        session.add_all(RecoveryCode(user_id=user_id, code_hash=hash_recovery_code(c)) for c in codes)
        await session.flush()
        return codes


totp = TotpService()
