"""Step-up: proving again that it is really you, shortly before a sensitive action.

A session remembers when its user last proved themselves and how (``step_up_at`` and
``step_up_method``). A sensitive action goes ahead only if that happened within
:data:`STEP_UP_WINDOW`, with a method strong enough for the action:

- staff actions (any unsafe request needing a staff permission) accept only a passkey;
- a customer's sensitive actions (API tokens, email, password, second factors) accept the
  strongest factor the account has: a passkey if it has one, else its authenticator app (or a
  recovery code), else — for an account with no second factor at all — its password.

Signing in counts as a step-up when it used that strongest factor. Failed TOTP and password
step-ups count as failed sign-ins for the lockout rules, so a stolen session cannot be used to
guess a code; a failed passkey step-up is audited by the passkey service.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth import repository
from corral.auth.errors import MissingPermission
from corral.auth.passkey_errors import PasskeyRejected
from corral.auth.passkeys import passkeys
from corral.auth.principal import Principal
from corral.auth.throttle import throttle
from corral.auth.totp import totp
from corral.db.session import settings_of
from corral.kit.clock import utcnow
from corral.kit.errors import Forbidden
from corral.models.auth import UserSession
from corral.users.passwords import verify_password

STEP_UP_WINDOW = timedelta(minutes=5)


class StepUpMethod(enum.StrEnum):
    PASSKEY = "passkey"
    TOTP = "totp"
    PASSWORD = "password"  # noqa: S105 (a method name, not a password)


class StepUpRequired(Forbidden):
    """Raised by ``require()``; the HTML side answers with the step-up prompt."""

    code = "step_up_required"
    default_message = "Confirm it is you to continue: this action needs a fresh confirmation."


class StepUpNeedsBrowser(MissingPermission):
    code = "step_up_needs_browser"
    default_message = "This action needs a signed-in browser session; API tokens cannot do it."


@dataclass(frozen=True)
class Factors:
    passkeys: int
    totp: bool

    @property
    def any(self) -> bool:
        return self.passkeys > 0 or self.totp


def accepted_methods(factors: Factors, *, staff_action: bool) -> tuple[StepUpMethod, ...]:
    """The methods that may confirm an action: only the strongest factor the account has."""
    if staff_action or factors.passkeys:
        return (StepUpMethod.PASSKEY,)
    if factors.totp:
        return (StepUpMethod.TOTP,)
    return (StepUpMethod.PASSWORD,)


def is_fresh(user_session: UserSession | None, accepted: tuple[StepUpMethod, ...]) -> bool:
    if user_session is None or user_session.step_up_at is None or user_session.step_up_method is None:
        return False
    if user_session.step_up_method not in accepted:
        return False
    return utcnow() - user_session.step_up_at <= STEP_UP_WINDOW


async def factors_of(session: AsyncSession, user_id: int) -> Factors:
    count, has_totp = await repository.second_factors(session, user_id)
    return Factors(passkeys=count, totp=has_totp)


def mark(user_session: UserSession, method: StepUpMethod) -> None:
    user_session.step_up_at = utcnow()
    user_session.step_up_method = method.value


class StepUpService:
    async def ensure(self, session: AsyncSession, principal: Principal, *, staff_action: bool) -> None:
        """Return if the request's session stepped up recently enough; raise otherwise."""
        if principal.token is not None:
            if staff_action:
                # Staff tokens are created behind a passkey step-up; automation cannot repeat it.
                return
            raise StepUpNeedsBrowser()
        factors = await factors_of(session, principal.user_id)
        accepted = accepted_methods(factors, staff_action=staff_action)
        if is_fresh(principal.session, accepted):
            return
        raise StepUpRequired(
            details={
                "methods": [method.value for method in accepted],
                "has_passkey": factors.passkeys > 0,
                "staff_action": staff_action,
            }
        )

    async def passkey_options(self, session: AsyncSession, principal: Principal) -> dict[str, Any]:
        return await passkeys.authentication_options(session, user_id=principal.user_id, purpose="step_up")

    async def with_passkey(
        self, session: AsyncSession, principal: Principal, response_json: dict[str, Any]
    ) -> None:
        """Verify a step-up assertion; ``PasskeyRejected`` after its failure audit was flushed."""
        user = await passkeys.finish_authentication(session, response_json, purpose="step_up")
        if user.id != principal.user_id:  # the challenge is bound to the user: defence in depth
            raise PasskeyRejected(details={"reason": "credential_not_for_user"})
        await self._succeeded(session, principal, StepUpMethod.PASSKEY)

    async def with_code(self, session: AsyncSession, principal: Principal, code: str, ip: str | None) -> bool:
        """A six-digit app code, or one of the account's recovery codes."""
        if not await self._may_try(session, principal, ip):
            return False
        ok = await totp.check_second_factor(session, principal.user_id, code)
        if not ok:
            await self._failed(session, principal, StepUpMethod.TOTP, ip)
            return False
        await self._succeeded(session, principal, StepUpMethod.TOTP)
        return True

    async def with_password(
        self, session: AsyncSession, principal: Principal, password: str, ip: str | None
    ) -> bool:
        factors = await factors_of(session, principal.user_id)
        if factors.any:
            # An account with a second factor never steps up with its password alone.
            return False
        if not await self._may_try(session, principal, ip):
            return False
        stored = principal.user.password_hash
        if not stored or not verify_password(stored, password):
            await self._failed(session, principal, StepUpMethod.PASSWORD, ip)
            return False
        await self._succeeded(session, principal, StepUpMethod.PASSWORD)
        return True

    async def _may_try(self, session: AsyncSession, principal: Principal, ip: str | None) -> bool:
        policy = settings_of(session).auth
        refusal = await throttle.refusal(session, policy, email=principal.email, ip=ip, now=utcnow())
        return refusal is None

    async def _succeeded(self, session: AsyncSession, principal: Principal, method: StepUpMethod) -> None:
        if principal.session is not None:
            mark(principal.session, method)
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "auth.step_up",
            target=Target(type="user", id=principal.user_id),
            payload={"method": method.value},
        )

    async def _failed(
        self, session: AsyncSession, principal: Principal, method: StepUpMethod, ip: str | None
    ) -> None:
        locks = await throttle.failed_second_step(
            session,
            settings_of(session).auth,
            email=principal.email,
            user_id=principal.user_id,
            ip=ip,
            now=utcnow(),
        )
        await audit.record(
            session,
            principal.actor,
            "auth.step_up",
            target=Target(type="user", id=principal.user_id),
            payload={"method": method.value, "locked": bool(locks)},
            result="failure",
        )


step_up = StepUpService()
