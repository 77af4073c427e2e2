"""Sign-in state: sessions, single-use email tokens, sign-in attempts and lockouts, API tokens.

Secrets (session ids, email tokens, API tokens) are stored only as SHA-256 hashes: a copy of the
database does not let anyone sign in.
"""

from __future__ import annotations

import enum
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base

TOKEN_HASH_LENGTH = 64  # hex SHA-256


class AuthMethod(enum.StrEnum):
    PASSWORD = "password"  # noqa: S105 (a method name, not a password)
    PASSWORD_TOTP = "password_totp"  # noqa: S105
    PASSKEY = "passkey"


class TokenPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105
    CHANGE_EMAIL = "change_email"


class LockoutScope(enum.StrEnum):
    ACCOUNT = "account"
    IP = "ip"
    EMAIL_IP = "email_ip"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    listed = ", ".join(f"'{member.value}'" for member in values)
    return f"{column} IN ({listed})"


class UserSession(Base):
    __tablename__ = "user_sessions"
    __table_args__ = (
        CheckConstraint(_in("auth_method", AuthMethod), name="auth_method_known"),
        Index("ix_user_sessions_user", "user_id", "revoked_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Absolute end of the session, whatever the activity.
    expires_at: Mapped[datetime]
    ip: Mapped[IPv4Address | IPv6Address | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(String(400))
    auth_method: Mapped[str] = mapped_column(String(32), default=AuthMethod.PASSWORD.value)
    # The last time the user proved themselves again (a step-up), and how: staff actions only
    # accept a passkey step-up, customers' sensitive actions also a TOTP code or their password.
    step_up_at: Mapped[datetime | None]
    step_up_method: Mapped[str | None] = mapped_column(String(32))
    # Set when the user's privileges change: the next request gets a new session id.
    rotate_required: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(64))


class UserToken(Base):
    """A single-use token sent by email: verification, password reset, email change."""

    __tablename__ = "user_tokens"
    __table_args__ = (
        CheckConstraint(_in("purpose", TokenPurpose), name="purpose_known"),
        Index("ix_user_tokens_user", "user_id", "purpose"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    # The address being proven, for verification and email change.
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class SignInAttempt(Base):
    """Every password sign-in attempt; the lockout rules count these by time window."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_email", "email", "attempted_at"),
        Index("ix_sign_in_attempts_ip", "ip", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    attempted_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Lower-cased as typed, whether or not such an account exists.
    email: Mapped[str] = mapped_column(String(320))
    ip: Mapped[IPv4Address | IPv6Address | None] = mapped_column(INET)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))


class AuthLockout(Base):
    """An active block on sign-in for an account, an IP, or an email from one IP."""

    __tablename__ = "auth_lockouts"
    __table_args__ = (
        CheckConstraint(_in("scope", LockoutScope), name="scope_known"),
        Index("ix_auth_lockouts_key", "scope", "key", "locked_until"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    locked_until: Mapped[datetime]


class ApiToken(Base):
    """A personal access token for ``Authorization: Bearer`` on /api/v1."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_user", "user_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # The first characters of the token, shown in lists so a person can tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
