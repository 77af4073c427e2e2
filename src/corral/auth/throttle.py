"""Brute-force protection for password sign-in (seed 000 section 3.3).

- per account: 5 failures → locked for 30 minutes
- per IP: 20 attempts in 5 minutes → blocked for 15 minutes
- per email from one IP: 3 failures → locked for 30 minutes
- a progressive delay before each attempt after failures, doubling up to 10 seconds

"Account" means the email as typed, whether or not such an account exists, so the answers for an
unknown email and for a real one are the same. Counters and locks are rows in PostgreSQL: they hold
across every web process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth import repository
from corral.config import AuthSettings
from corral.models.auth import AuthLockout, LockoutScope, SignInAttempt

UNKNOWN_IP = "unknown"


@dataclass(frozen=True)
class Refusal:
    scope: LockoutScope
    until: datetime


def _keys(email: str, ip: str | None) -> dict[LockoutScope, str]:
    address = ip or UNKNOWN_IP
    return {
        LockoutScope.IP: address,
        LockoutScope.ACCOUNT: email,
        LockoutScope.EMAIL_IP: f"{email}|{address}",
    }


class SignInThrottle:
    async def refusal(
        self, session: AsyncSession, policy: AuthSettings, *, email: str, ip: str | None, now: datetime
    ) -> Refusal | None:
        """The longest-lasting active lock that applies to this attempt, if any."""
        refusals = []
        for scope, key in _keys(email, ip).items():
            lockout = await repository.active_lockout(session, scope.value, key, now)
            if lockout is not None:
                refusals.append(Refusal(scope=scope, until=lockout.locked_until))
        return max(refusals, key=lambda refusal: refusal.until, default=None)

    async def delay_seconds(
        self, session: AsyncSession, policy: AuthSettings, *, email: str, now: datetime
    ) -> float:
        """How long to hold this attempt back: nothing at first, then base·2^(failures-1), capped."""
        since = now - timedelta(minutes=policy.account_lock_minutes)
        failures = await repository.count_attempts(session, since=since, email=email, failed_only=True)
        if failures == 0:
            return 0.0
        return float(min(policy.delay_max_seconds, policy.delay_base_seconds * 2 ** (failures - 1)))

    async def failed_second_step(
        self,
        session: AsyncSession,
        policy: AuthSettings,
        *,
        email: str,
        user_id: int,
        ip: str | None,
        now: datetime,
    ) -> list[AuthLockout]:
        """A wrong code or password after the first step (two-step sign-in, step-up): recorded as a
        failed sign-in attempt, so guessing codes with a known password meets the same locks."""
        session.add(SignInAttempt(attempted_at=now, email=email, ip=ip, succeeded=False, user_id=user_id))
        await session.flush()
        return await self.after_failure(session, policy, email=email, ip=ip, now=now)

    async def after_failure(
        self, session: AsyncSession, policy: AuthSettings, *, email: str, ip: str | None, now: datetime
    ) -> list[AuthLockout]:
        """Apply the thresholds after a failed attempt was recorded; return the locks it created."""
        keys = _keys(email, ip)
        account_since = now - timedelta(minutes=policy.account_lock_minutes)
        pair_since = now - timedelta(minutes=policy.email_ip_lock_minutes)
        ip_since = now - timedelta(minutes=policy.ip_window_minutes)
        rules = [
            (
                LockoutScope.ACCOUNT,
                await repository.count_attempts(session, since=account_since, email=email, failed_only=True),
                policy.account_max_failures,
                policy.account_lock_minutes,
            ),
            (
                LockoutScope.EMAIL_IP,
                await repository.count_attempts(
                    session, since=pair_since, email=email, ip=ip, failed_only=True
                )
                if ip is not None
                else 0,
                policy.email_ip_max_failures,
                policy.email_ip_lock_minutes,
            ),
        ]
        created = [
            lockout
            for scope, count, limit, minutes in rules
            if count >= limit
            and (lockout := await self._lock(session, scope, keys[scope], now, minutes)) is not None
        ]
        created += await self.after_any_attempt(session, policy, ip=ip, now=now, since=ip_since)
        return created

    async def after_any_attempt(
        self,
        session: AsyncSession,
        policy: AuthSettings,
        *,
        ip: str | None,
        now: datetime,
        since: datetime | None = None,
    ) -> list[AuthLockout]:
        """The per-IP rule counts every attempt, successful or not."""
        if ip is None:
            return []
        since = since or now - timedelta(minutes=policy.ip_window_minutes)
        attempts = await repository.count_attempts(session, since=since, ip=ip, failed_only=False)
        if attempts < policy.ip_max_attempts:
            return []
        lockout = await self._lock(session, LockoutScope.IP, ip, now, policy.ip_block_minutes)
        return [lockout] if lockout is not None else []

    async def _lock(
        self, session: AsyncSession, scope: LockoutScope, key: str, now: datetime, minutes: int
    ) -> AuthLockout | None:
        if await repository.active_lockout(session, scope.value, key, now) is not None:
            return None  # already locked; a second lock would only extend it on every try
        lockout = AuthLockout(
            scope=scope.value, key=key, created_at=now, locked_until=now + timedelta(minutes=minutes)
        )
        session.add(lockout)
        await session.flush()
        return lockout


throttle = SignInThrottle()
