"""Signing in and out, and recognising a request's session or API token.

A failed sign-in never raises: the attempt and any lock it triggers must be committed with the
response that reports the failure, and an exception would roll them back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth import repository
from corral.auth.errors import SessionNotFound
from corral.auth.principal import Principal
from corral.auth.secrets import new_secret, secret_hash
from corral.auth.step_up import StepUpMethod, factors_of
from corral.auth.throttle import throttle
from corral.auth.totp import totp
from corral.db.session import settings_of
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.models.auth import AuthLockout, AuthMethod, LockoutScope, SignInAttempt, UserSession
from corral.models.mfa import WebAuthnChallenge
from corral.models.users import User, UserRole, UserStatus
from corral.notifications.service import mailer
from corral.panel_settings.service import panel_settings
from corral.rbac.permissions import ENROLMENT_PERMISSIONS, PASSKEY_ONLY_ROLES, parse_scopes, permissions_for
from corral.users import repository as users_repository
from corral.users.passwords import hash_password, needs_rehash, verify_password

# Verified against when no account matches, so an unknown email costs the same time as a known one.
# Precomputed with the same argon2id parameters as real hashes (a test checks they stay equal).
_DUMMY_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$56zetSb/HoxTb1TMqWm8bA$CBmML0EjDC3JADAH8/YZML2nQtISEQGd12GaMCoVkzk"
)
# last_seen_at is written at most this often, so reading pages does not mean a write per request.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)
MAX_USER_AGENT = 400

SignInStatus = Literal[
    "ok", "invalid", "throttled", "unverified", "pending_approval", "blocked", "second_factor", "expired"
]
# A password sign-in of an account with an authenticator app waits this long for the code.
SECOND_FACTOR_TTL = timedelta(minutes=5)
SECOND_FACTOR_PURPOSE = "second_factor"
# Wrong codes allowed against one pending sign-in before the password must be typed again.
SECOND_FACTOR_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class SignInOutcome:
    status: SignInStatus
    user: User | None = None
    # The new session's secret, for the cookie. Only present when status is "ok".
    session_secret: str | None = None
    # With status "second_factor": the secret naming the half-finished sign-in, for a short cookie.
    pending_secret: str | None = None
    retry_after: datetime | None = None


@dataclass(frozen=True)
class SessionAuth:
    principal: Principal
    # Set when the session id was just replaced (after a privilege change): the new cookie value.
    rotated_secret: str | None = None


def normalise_email(email: str) -> str:
    return email.strip().lower()


class AuthService:
    async def sign_in(
        self,
        session: AsyncSession,
        *,
        email: str,
        password: str,
        ip: str | None,
        user_agent: str | None,
    ) -> SignInOutcome:
        policy = settings_of(session).auth
        email = normalise_email(email)[:320]
        now = utcnow()

        refusal = await throttle.refusal(session, policy, email=email, ip=ip, now=now)
        if refusal is not None:
            await self._audit_failure(session, email, ip, reason=f"locked:{refusal.scope.value}")
            return SignInOutcome(status="throttled", retry_after=refusal.until)

        delay = await throttle.delay_seconds(session, policy, email=email, now=now)
        if delay > 0:
            await asyncio.sleep(delay)

        user = await users_repository.get_by_email(session, email)
        stored_hash = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
        password_ok = verify_password(stored_hash, password) and stored_hash is not _DUMMY_HASH
        session.add(
            SignInAttempt(
                attempted_at=now,
                email=email,
                ip=ip,
                succeeded=password_ok,
                user_id=user.id if user is not None else None,
            )
        )
        await session.flush()

        if not password_ok or user is None:
            locks = await throttle.after_failure(session, policy, email=email, ip=ip, now=now)
            await self._audit_failure(session, email, ip, reason="bad_credentials", user=user)
            await self._report_locks(session, locks, user, email)
            return SignInOutcome(status="invalid")

        await throttle.after_any_attempt(session, policy, ip=ip, now=now)
        refused = self._status_refusal(user)
        if refused is not None:
            await self._audit_failure(session, email, ip, reason=refused, user=user)
            return SignInOutcome(status=refused, user=user)

        if needs_rehash(stored_hash):
            user.password_hash = hash_password(password)
        factors = await factors_of(session, user.id)
        if factors.totp:
            pending = await self._begin_second_factor(session, user)
            return SignInOutcome(status="second_factor", user=user, pending_secret=pending)
        # With no second factor the password is the account's strongest proof: a fresh step-up.
        secret = await self.start_session(
            session,
            user,
            ip=ip,
            user_agent=user_agent,
            method=AuthMethod.PASSWORD,
            step_up=None if factors.any else StepUpMethod.PASSWORD,
        )
        await self._audit_sign_in(session, user, AuthMethod.PASSWORD, ip)
        return SignInOutcome(status="ok", user=user, session_secret=secret)

    async def _audit_sign_in(
        self, session: AsyncSession, user: User, method: AuthMethod, ip: str | None
    ) -> None:
        await audit.record(
            session,
            Actor.user(user.id, user.email, user.role),
            "auth.sign_in",
            target=Target(type="user", id=user.id),
            payload={"method": method.value},
            ip=ip,
        )

    async def _begin_second_factor(self, session: AsyncSession, user: User) -> str:
        secret = new_secret()
        session.add(
            WebAuthnChallenge(
                challenge_hash=secret_hash(secret),
                purpose=SECOND_FACTOR_PURPOSE,
                user_id=user.id,
                expires_at=utcnow() + SECOND_FACTOR_TTL,
            )
        )
        await session.flush()
        return secret

    async def pending_second_factor(self, session: AsyncSession, secret: str) -> bool:
        """Whether ``secret`` names a half-finished sign-in that may still be completed."""
        found = await repository.live_second_factor_challenge(
            session, secret_hash(secret), SECOND_FACTOR_PURPOSE, utcnow(), SECOND_FACTOR_MAX_ATTEMPTS
        )
        return found is not None

    async def finish_second_factor(
        self, session: AsyncSession, *, secret: str, code: str, ip: str | None, user_agent: str | None
    ) -> SignInOutcome:
        """Complete a password sign-in with an app code or a recovery code.

        Wrong codes count as failed sign-ins for the lockout rules, like wrong passwords.
        """
        policy = settings_of(session).auth
        now = utcnow()
        pending = await repository.live_second_factor_challenge(
            session, secret_hash(secret), SECOND_FACTOR_PURPOSE, now, SECOND_FACTOR_MAX_ATTEMPTS
        )
        user = await session.get(User, pending.user_id) if pending is not None and pending.user_id else None
        if pending is None or user is None:
            return SignInOutcome(status="expired")
        refusal = await throttle.refusal(session, policy, email=user.email, ip=ip, now=now)
        if refusal is not None:
            await self._audit_failure(
                session, user.email, ip, reason=f"locked:{refusal.scope.value}", user=user
            )
            return SignInOutcome(status="throttled", retry_after=refusal.until)
        refused = self._status_refusal(user)
        if refused is not None:
            pending.used_at = now
            return SignInOutcome(status=refused, user=user)
        ok = await totp.check_second_factor(session, user.id, code, now=now)
        if not ok:
            pending.attempts += 1
            locks = await throttle.failed_second_step(
                session, policy, email=user.email, user_id=user.id, ip=ip, now=now
            )
            await self._audit_failure(session, user.email, ip, reason="bad_second_factor", user=user)
            await self._report_locks(session, locks, user, user.email)
            return SignInOutcome(status="invalid", user=user)
        pending.used_at = now
        factors = await factors_of(session, user.id)
        session_secret = await self.start_session(
            session,
            user,
            ip=ip,
            user_agent=user_agent,
            method=AuthMethod.PASSWORD_TOTP,
            step_up=None if factors.passkeys else StepUpMethod.TOTP,
        )
        await self._audit_sign_in(session, user, AuthMethod.PASSWORD_TOTP, ip)
        return SignInOutcome(status="ok", user=user, session_secret=session_secret)

    async def sign_in_with_passkey(
        self, session: AsyncSession, user: User, *, ip: str | None, user_agent: str | None
    ) -> SignInOutcome:
        """Start a session for the user a verified passkey assertion named (the strongest sign-in)."""
        refused = self._status_refusal(user)
        if refused is not None:
            await self._audit_failure(session, user.email, ip, reason=refused, user=user)
            return SignInOutcome(status=refused, user=user)
        secret = await self.start_session(
            session,
            user,
            ip=ip,
            user_agent=user_agent,
            method=AuthMethod.PASSKEY,
            step_up=StepUpMethod.PASSKEY,
        )
        await self._audit_sign_in(session, user, AuthMethod.PASSKEY, ip)
        return SignInOutcome(status="ok", user=user, session_secret=secret)

    @staticmethod
    def _status_refusal(user: User) -> SignInStatus | None:
        if user.status == UserStatus.PENDING_VERIFICATION:
            return "unverified"
        if user.status == UserStatus.PENDING_APPROVAL:
            return "pending_approval"
        if user.status == UserStatus.BLOCKED:
            return "blocked"
        return None

    async def _audit_failure(
        self, session: AsyncSession, email: str, ip: str | None, *, reason: str, user: User | None = None
    ) -> None:
        actor = (
            Actor.user(user.id, user.email, user.role)
            if user is not None
            else Actor(kind="user", label=f"unknown:{email}")
        )
        await audit.record(
            session,
            actor,
            "auth.sign_in",
            target=Target(type="user", id=user.id) if user is not None else None,
            payload={"email": email, "reason": reason},
            result="failure",
            ip=ip,
        )

    async def _report_locks(
        self, session: AsyncSession, locks: Sequence[AuthLockout], user: User | None, email: str
    ) -> None:
        settings = settings_of(session)
        for lock in locks:
            scope, until = lock.scope, lock.locked_until
            await audit.record(
                session,
                Actor.system("auth.throttle"),
                "auth.lockout",
                target=Target(type="user", id=user.id) if user is not None else None,
                payload={"scope": scope, "email": email, "until": until.isoformat()},
            )
            if scope == LockoutScope.ACCOUNT and user is not None:
                await mailer.queue(
                    session,
                    to=user.email,
                    template="account_locked",
                    context={
                        "name": user.name,
                        "until": until.isoformat(),
                        "reset_link": f"{settings.web.public_url}/password/forgot",
                    },
                )

    async def start_session(
        self,
        session: AsyncSession,
        user: User,
        *,
        ip: str | None,
        user_agent: str | None,
        method: AuthMethod,
        step_up: StepUpMethod | None = None,
    ) -> str:
        """A brand-new session (never a reused id); returns its secret for the cookie.

        ``step_up`` says the sign-in itself was a fresh proof by that method (see auth.step_up).
        """
        policy = settings_of(session).auth
        now = utcnow()
        if policy.single_session:
            await repository.revoke_sessions(session, user.id, now, "single_session")
        secret = new_secret()
        session.add(
            UserSession(
                token_hash=secret_hash(secret),
                user_id=user.id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(hours=policy.session_lifetime_hours),
                ip=ip,
                user_agent=(user_agent or "")[:MAX_USER_AGENT] or None,
                auth_method=method.value,
                step_up_at=now if step_up is not None else None,
                step_up_method=step_up.value if step_up is not None else None,
            )
        )
        await session.flush()
        return secret

    async def authenticate_session(self, session: AsyncSession, secret: str) -> SessionAuth | None:
        found = await repository.session_with_user(session, secret_hash(secret))
        if found is None:
            return None
        user_session, user = found
        policy = settings_of(session).auth
        now = utcnow()
        idle_limit = user_session.last_seen_at + timedelta(minutes=policy.session_idle_minutes)
        if user_session.expires_at <= now or idle_limit <= now or user.status != UserStatus.ACTIVE:
            return None
        rotated = None
        if user_session.rotate_required:
            rotated = new_secret()
            user_session.token_hash = secret_hash(rotated)
            user_session.rotate_required = False
        if now - user_session.last_seen_at >= LAST_SEEN_RESOLUTION:
            user_session.last_seen_at = now
        principal = await self._session_principal(session, user, user_session)
        return SessionAuth(principal=principal, rotated_secret=rotated)

    async def _session_principal(
        self, session: AsyncSession, user: User, user_session: UserSession
    ) -> Principal:
        """The session's permissions: the role's, unless the way it signed in is not strong enough."""
        if user.role in PASSKEY_ONLY_ROLES and user_session.auth_method != AuthMethod.PASSKEY.value:
            return Principal.of(
                user, permissions_for(UserRole.CUSTOMER), session=user_session, elevation_withheld=True
            )
        # A passkey sign-in is itself a second factor; a password one must show the account has one.
        if user_session.auth_method == AuthMethod.PASSWORD.value and await self._must_enrol(session, user):
            return Principal.of(
                user, ENROLMENT_PERMISSIONS, session=user_session, must_enrol_second_factor=True
            )
        return Principal.of(user, permissions_for(user.role), session=user_session)

    @staticmethod
    async def _must_enrol(session: AsyncSession, user: User) -> bool:
        """The panel requires customers to have a second factor and this customer has none yet."""
        if user.role != UserRole.CUSTOMER:
            return False
        required = (await panel_settings.current(session)).require_customer_2fa
        return required and not (await factors_of(session, user.id)).any

    async def authenticate_token(self, session: AsyncSession, secret: str) -> Principal | None:
        found = await repository.api_token_with_user(session, secret_hash(secret))
        if found is None:
            return None
        token, user = found
        now = utcnow()
        if (token.expires_at is not None and token.expires_at <= now) or user.status != UserStatus.ACTIVE:
            return None
        if token.last_used_at is None or now - token.last_used_at >= LAST_SEEN_RESOLUTION:
            token.last_used_at = now
        # A token can never do more than its owner's role allows today, nor more than a password
        # session of its owner could: while the panel requires a second factor the account lacks,
        # that is the account and security pages only (the same gate as _session_principal).
        permissions = permissions_for(user.role) & parse_scopes(token.scopes)
        if await self._must_enrol(session, user):
            return Principal.of(
                user, permissions & ENROLMENT_PERMISSIONS, token=token, must_enrol_second_factor=True
            )
        return Principal.of(user, permissions, token=token)

    async def sign_out(self, session: AsyncSession, principal: Principal) -> None:
        if principal.session is None:
            return
        principal.session.revoked_at = utcnow()
        principal.session.revoked_reason = "signed_out"
        await audit.record(
            session, principal.actor, "auth.sign_out", target=Target(type="user", id=principal.user_id)
        )

    async def sign_out_everywhere(self, session: AsyncSession, principal: Principal) -> int:
        count = await repository.revoke_sessions(
            session, principal.user_id, utcnow(), "signed_out_everywhere"
        )
        await audit.record(
            session,
            principal.actor,
            "auth.sign_out_everywhere",
            target=Target(type="user", id=principal.user_id),
            payload={"sessions_ended": count},
        )
        return count

    async def sign_out_others(self, session: AsyncSession, principal: Principal) -> int:
        """End every session of the account except the one making the request."""
        keep = principal.session.id if principal.session is not None else None
        count = await repository.revoke_sessions(
            session, principal.user_id, utcnow(), "signed_out_elsewhere", keep_id=keep
        )
        await audit.record(
            session,
            principal.actor,
            "auth.sign_out_others",
            target=Target(type="user", id=principal.user_id),
            payload={"sessions_ended": count},
        )
        return count

    async def list_sessions(self, session: AsyncSession, principal: Principal) -> Sequence[UserSession]:
        return await repository.active_sessions(session, principal.user_id, utcnow())

    async def revoke_session(self, session: AsyncSession, principal: Principal, session_id: int) -> None:
        target = await repository.own_session(session, principal.user_id, session_id)
        if target is None:
            raise SessionNotFound()
        target.revoked_at = utcnow()
        target.revoked_reason = "revoked"
        await audit.record(
            session,
            principal.actor,
            "auth.session.revoke",
            target=Target(type="session", id=session_id),
        )

    async def end_all_sessions(self, session: AsyncSession, user_id: int, reason: str) -> int:
        """Used when an account is blocked or its password reset: every session ends now."""
        return await repository.revoke_sessions(session, user_id, utcnow(), reason)

    async def privileges_changed(self, session: AsyncSession, user_id: int) -> None:
        """The user's sessions get new ids on their next request (session fixation defence)."""
        await repository.require_rotation(session, user_id)


auth = AuthService()
