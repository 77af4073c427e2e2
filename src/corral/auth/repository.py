"""SQL for sessions, email tokens, sign-in attempts, lockouts and API tokens.

Everything a person can list or revoke is selected through their own user id, so one user can
never reach another's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.auth import ApiToken, AuthLockout, SignInAttempt, UserSession, UserToken
from corral.models.mfa import Passkey, PasskeyEnrolmentLink, TotpFactor, WebAuthnChallenge
from corral.models.users import User


async def session_with_user(session: AsyncSession, token_hash: str) -> tuple[UserSession, User] | None:
    statement = (
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash == token_hash, UserSession.revoked_at.is_(None))
    )
    row = (await session.execute(statement)).one_or_none()
    return (row[0], row[1]) if row is not None else None


async def active_sessions(session: AsyncSession, user_id: int, now: datetime) -> Sequence[UserSession]:
    statement = (
        select(UserSession)
        .where(
            UserSession.user_id == user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > now,
        )
        .order_by(UserSession.last_seen_at.desc())
    )
    return (await session.execute(statement)).scalars().all()


async def own_session(session: AsyncSession, user_id: int, session_id: int) -> UserSession | None:
    statement = select(UserSession).where(
        UserSession.id == session_id, UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def revoke_sessions(
    session: AsyncSession, user_id: int, now: datetime, reason: str, *, keep_id: int | None = None
) -> int:
    conditions = [UserSession.user_id == user_id, UserSession.revoked_at.is_(None)]
    if keep_id is not None:
        conditions.append(UserSession.id != keep_id)
    result = await session.execute(
        update(UserSession).where(and_(*conditions)).values(revoked_at=now, revoked_reason=reason)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def require_rotation(session: AsyncSession, user_id: int) -> None:
    await session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(rotate_required=True)
    )


async def count_attempts(
    session: AsyncSession,
    *,
    since: datetime,
    email: str | None = None,
    ip: str | None = None,
    failed_only: bool,
) -> int:
    """Attempts in a window for an email, an IP, or both.

    With ``failed_only``, failures count only after the last success for the same key: a person who
    mistypes twice and then signs in starts again from zero.
    """
    conditions = [SignInAttempt.attempted_at >= since]
    if email is not None:
        conditions.append(SignInAttempt.email == email)
    if ip is not None:
        conditions.append(SignInAttempt.ip == ip)
    if failed_only:
        last_success = await session.scalar(
            select(func.max(SignInAttempt.attempted_at)).where(*conditions, SignInAttempt.succeeded.is_(True))
        )
        conditions.append(SignInAttempt.succeeded.is_(False))
        if last_success is not None:
            conditions.append(SignInAttempt.attempted_at > last_success)
    statement = select(func.count()).select_from(SignInAttempt).where(*conditions)
    return int((await session.execute(statement)).scalar_one())


async def active_lockout(session: AsyncSession, scope: str, key: str, now: datetime) -> AuthLockout | None:
    statement = (
        select(AuthLockout)
        .where(AuthLockout.scope == scope, AuthLockout.key == key, AuthLockout.locked_until > now)
        .order_by(AuthLockout.locked_until.desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def user_token(session: AsyncSession, token_hash: str, purpose: str) -> UserToken | None:
    statement = (
        select(UserToken)
        .where(UserToken.token_hash == token_hash, UserToken.purpose == purpose)
        .with_for_update()
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def expire_user_tokens(session: AsyncSession, user_id: int, purpose: str, now: datetime) -> None:
    """Older links stop working when a new one is sent."""
    await session.execute(
        update(UserToken)
        .where(UserToken.user_id == user_id, UserToken.purpose == purpose, UserToken.used_at.is_(None))
        .values(used_at=now)
    )


async def api_token_with_user(session: AsyncSession, token_hash: str) -> tuple[ApiToken, User] | None:
    statement = (
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
    )
    row = (await session.execute(statement)).one_or_none()
    return (row[0], row[1]) if row is not None else None


async def user_by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def own_api_tokens(session: AsyncSession, user_id: int) -> Sequence[ApiToken]:
    """The user's tokens that are not revoked, newest first; expired ones stay listed until revoked."""
    statement = (
        select(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    return (await session.execute(statement)).scalars().all()


async def own_api_token(session: AsyncSession, user_id: int, token_id: int) -> ApiToken | None:
    statement = select(ApiToken).where(
        ApiToken.id == token_id, ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)
    )
    return (await session.execute(statement)).scalar_one_or_none()


def _usable_api_token(user_id: int, now: datetime) -> list[Any]:
    return [
        ApiToken.user_id == user_id,
        ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
    ]


async def api_token_name_in_use(session: AsyncSession, user_id: int, name: str, now: datetime) -> bool:
    """Whether a usable token of the user already has this name (case-insensitively)."""
    statement = select(
        exists().where(*_usable_api_token(user_id, now), func.lower(ApiToken.name) == name.lower())
    )
    return bool((await session.execute(statement)).scalar_one())


async def count_usable_api_tokens(session: AsyncSession, user_id: int, now: datetime) -> int:
    statement = select(func.count()).select_from(ApiToken).where(*_usable_api_token(user_id, now))
    return int((await session.execute(statement)).scalar_one())


async def second_factors(session: AsyncSession, user_id: int) -> tuple[int, bool]:
    """(number of passkeys, whether a confirmed authenticator app exists) for one user."""
    passkey_count = select(func.count()).select_from(Passkey).where(Passkey.user_id == user_id)
    totp_confirmed = exists().where(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None))
    row = (await session.execute(select(passkey_count.scalar_subquery(), totp_confirmed))).one()
    return int(row[0]), bool(row[1])


async def prune_challenges(session: AsyncSession, older_than: datetime) -> int:
    """Delete WebAuthn and sign-in challenges that expired before ``older_than``."""
    result = await session.execute(delete(WebAuthnChallenge).where(WebAuthnChallenge.expires_at < older_than))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def live_second_factor_challenge(
    session: AsyncSession, challenge_hash: str, purpose: str, now: datetime, max_attempts: int
) -> WebAuthnChallenge | None:
    """The live, unused second-factor challenge with this hash, locked for this transaction."""
    statement = (
        select(WebAuthnChallenge)
        .where(
            WebAuthnChallenge.challenge_hash == challenge_hash,
            WebAuthnChallenge.purpose == purpose,
            WebAuthnChallenge.used_at.is_(None),
            WebAuthnChallenge.expires_at > now,
            WebAuthnChallenge.attempts < max_attempts,
        )
        .with_for_update()
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def enrolment_link(
    session: AsyncSession, token_hash: str, *, lock: bool
) -> PasskeyEnrolmentLink | None:
    """The enrolment link with this hash, whatever its state; ``lock`` holds its row until commit,
    so two requests presenting the same link are served one after the other."""
    statement = select(PasskeyEnrolmentLink).where(PasskeyEnrolmentLink.token_hash == token_hash)
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def revoke_enrolment_links(session: AsyncSession, user_id: int, now: datetime) -> int:
    """Retire every unused link of the user (a newer one was issued, or a passkey now exists)."""
    result = await session.execute(
        update(PasskeyEnrolmentLink)
        .where(
            PasskeyEnrolmentLink.user_id == user_id,
            PasskeyEnrolmentLink.used_at.is_(None),
            PasskeyEnrolmentLink.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def passkey_count(session: AsyncSession, user_id: int) -> int:
    statement = select(func.count()).select_from(Passkey).where(Passkey.user_id == user_id)
    return int((await session.execute(statement)).scalar_one())


async def live_enrolment_link(
    session: AsyncSession, user_id: int, now: datetime
) -> PasskeyEnrolmentLink | None:
    """The user's newest enrolment link that still works, if any."""
    statement = (
        select(PasskeyEnrolmentLink)
        .where(
            PasskeyEnrolmentLink.user_id == user_id,
            PasskeyEnrolmentLink.used_at.is_(None),
            PasskeyEnrolmentLink.revoked_at.is_(None),
            PasskeyEnrolmentLink.expires_at > now,
        )
        .order_by(PasskeyEnrolmentLink.created_at.desc(), PasskeyEnrolmentLink.id.desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()
