"""Rate limits on the anonymous account pages: registration, verification resends, reset requests.

Seed 000 section 9.3 asks for per-IP tracking of registration over 5 minutes. The two pages that
send email to a typed address are also limited per address, so nobody can flood a stranger's
mailbox from many IPs. Every limit counts requests whether or not an account matched, so being
limited reveals nothing about which addresses have accounts.

Each accepted request is a row in ``account_requests`` (PostgreSQL, so the limit holds across every
web process); rows older than :data:`RETENTION` are deleted as new ones are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from corral.kit.clock import utcnow
from corral.models.users import AccountRequest, AccountRequestKind
from corral.users import repository
from corral.users.errors import TooManyRequests

RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class Limit:
    per_ip: int
    # None: no limit per address (registration: the address is the account being made).
    per_email: int | None
    window: timedelta
    message: str


LIMITS: dict[AccountRequestKind, Limit] = {
    AccountRequestKind.REGISTER: Limit(
        per_ip=5,
        per_email=None,
        window=timedelta(minutes=5),
        message="Too many sign-ups from your network. Wait a few minutes, then try again.",
    ),
    AccountRequestKind.VERIFY_RESEND: Limit(
        per_ip=10,
        per_email=3,
        window=timedelta(minutes=15),
        message="Too many verification emails were asked for. Wait a few minutes, then try again.",
    ),
    AccountRequestKind.PASSWORD_FORGOT: Limit(
        per_ip=10,
        per_email=3,
        window=timedelta(minutes=15),
        message="Too many password resets were asked for. Wait a few minutes, then try again.",
    ),
}


class RequestLimiter:
    async def check(
        self, session: AsyncSession, kind: AccountRequestKind, *, ip: str | None, email: str | None = None
    ) -> None:
        """Raise ``TooManyRequests`` (with when to come back) if this request is over a limit."""
        limit = LIMITS[kind]
        now = utcnow()
        since = now - limit.window
        retry_after: datetime | None = None
        keys: list[tuple[int, str | None, str | None]] = []
        if ip is not None:
            keys.append((limit.per_ip, ip, None))
        if email is not None and limit.per_email is not None:
            keys.append((limit.per_email, None, email))
        for allowed, by_ip, by_email in keys:
            count, oldest = await repository.count_requests(
                session, kind.value, since, ip=by_ip, email=by_email
            )
            if count >= allowed:
                # The window frees a slot when its oldest request ages out.
                until = (oldest or now) + limit.window
                retry_after = max(retry_after or until, until)
        if retry_after is not None:
            raise TooManyRequests(retry_after, limit.message)

    async def record(
        self, session: AsyncSession, kind: AccountRequestKind, *, ip: str | None, email: str | None = None
    ) -> None:
        now = utcnow()
        await repository.prune_requests(session, now - RETENTION)
        repository.add_request(session, AccountRequest(kind=kind.value, ip=ip, email=email))
        await session.flush()


limiter = RequestLimiter()
