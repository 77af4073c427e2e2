"""Single-use tokens sent by email: address verification, password reset, email change.

The link carries a 256-bit random secret; the database keeps only its SHA-256 (a copy of the
database lets nobody follow a link). A token works once, until it expires, and only while it is
the newest of its purpose for its user: issuing one retires the ones before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.secrets import new_secret, secret_hash
from corral.db.session import settings_of
from corral.kit.clock import utcnow
from corral.models.auth import TokenPurpose, UserToken
from corral.models.users import User
from corral.users import repository
from corral.users.errors import InvalidLink

# Longer than any real secret (43 characters); anything longer is not worth hashing.
MAX_TOKEN_LENGTH = 200


@dataclass(frozen=True)
class IssuedToken:
    secret: str
    row: UserToken
    valid_minutes: int


class EmailTokens:
    async def issue(
        self, session: AsyncSession, user: User, purpose: TokenPurpose, *, email: str | None = None
    ) -> IssuedToken:
        """A new token for ``user``; every earlier unused token of the same purpose stops working."""
        hours = settings_of(session).auth.email_token_hours
        now = utcnow()
        await repository.retire_tokens(session, user.id, purpose.value, now)
        secret = new_secret()
        row = UserToken(
            token_hash=secret_hash(secret),
            user_id=user.id,
            purpose=purpose.value,
            email=email,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
        repository.add_token(session, row)
        await session.flush()
        return IssuedToken(secret=secret, row=row, valid_minutes=hours * 60)

    async def check(
        self, session: AsyncSession, secret: str | None, purpose: TokenPurpose, *, lock: bool = False
    ) -> UserToken:
        """The token for ``secret`` if it still works, else ``InvalidLink``. Does not use it up."""
        if not secret or len(secret) > MAX_TOKEN_LENGTH:
            raise InvalidLink()
        token = await repository.token_by_hash(session, secret_hash(secret), purpose.value, for_update=lock)
        if token is None or token.used_at is not None or token.expires_at <= utcnow():
            raise InvalidLink()
        return token

    async def consume(self, session: AsyncSession, secret: str | None, purpose: TokenPurpose) -> UserToken:
        """Use the token up (row-locked, so two simultaneous clicks cannot both succeed)."""
        token = await self.check(session, secret, purpose, lock=True)
        token.used_at = utcnow()
        await session.flush()
        return token

    async def retire(self, session: AsyncSession, user_id: int, purpose: TokenPurpose) -> None:
        await repository.retire_tokens(session, user_id, purpose.value, utcnow())

    async def pending(self, session: AsyncSession, user_id: int, purpose: TokenPurpose) -> UserToken | None:
        return await repository.pending_token(session, user_id, purpose.value, utcnow())


email_tokens = EmailTokens()
