"""Accounts: customers and the provider's staff."""

from __future__ import annotations

import enum
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from sqlalchemy import BigInteger, CheckConstraint, Identity, Index, String, func, text
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base


class UserRole(enum.StrEnum):
    CUSTOMER = "customer"
    SUPPORT = "support"
    BILLING = "billing"
    OPERATOR = "operator"
    SUPER_ADMIN = "super_admin"


class UserStatus(enum.StrEnum):
    PENDING_VERIFICATION = "pending_verification"
    PENDING_APPROVAL = "pending_approval"
    ACTIVE = "active"
    BLOCKED = "blocked"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    listed = ", ".join(f"'{member.value}'" for member in values)
    return f"{column} IN ({listed})"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", UserRole), name="role_known"),
        CheckConstraint(_in("status", UserStatus), name="status_known"),
        # Emails are unique however they are capitalised.
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32), default=UserRole.CUSTOMER.value)
    status: Mapped[str] = mapped_column(String(32), default=UserStatus.PENDING_VERIFICATION.value)
    email_verified_at: Mapped[datetime | None]
    # Set when staff approve an account (only required when approval is switched on).
    approved_at: Mapped[datetime | None]
    blocked_at: Mapped[datetime | None]
    blocked_reason: Mapped[str | None] = mapped_column(String(500))
    password_changed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class AccountRequestKind(enum.StrEnum):
    REGISTER = "register"
    VERIFY_RESEND = "verify_resend"
    PASSWORD_FORGOT = "password_forgot"  # noqa: S105 (a request kind, not a password)


class AccountRequest(Base):
    """An anonymous request that creates an account or sends an email, kept to rate-limit them.

    Counted per IP and per email address over a short window (seed 000 section 9.3); rows older
    than a day are pruned as new ones arrive.
    """

    __tablename__ = "account_requests"
    __table_args__ = (
        CheckConstraint(_in("kind", AccountRequestKind), name="kind_known"),
        Index("ix_account_requests_ip", "kind", "ip", "created_at"),
        Index("ix_account_requests_email", "kind", "email", "created_at"),
        Index("ix_account_requests_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    ip: Mapped[IPv4Address | IPv6Address | None] = mapped_column(INET)
    # Lower-cased as typed, whether or not an account has it.
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
