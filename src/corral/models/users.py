"""Accounts: customers and the provider's staff."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Identity, Index, String, func, text
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
