"""Second factors: TOTP authenticator apps, single-use recovery codes, and passkeys (WebAuthn)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base


class TotpFactor(Base):
    """A user's authenticator app. One per user; confirmed once the user typed a first code."""

    __tablename__ = "totp_factors"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # The shared secret, encrypted with the panel's keyring (context "user:<id>:totp").
    secret_encrypted: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    confirmed_at: Mapped[datetime | None]
    # The last time step a code was accepted for: a code is never accepted twice, nor an older one.
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """A single-use code for when the authenticator is lost. Stored only as a hash."""

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_user", "user_id", "used_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    used_at: Mapped[datetime | None]


class Passkey(Base):
    """A WebAuthn credential (passkey or security key) registered to an account."""

    __tablename__ = "passkeys"
    __table_args__ = (Index("ix_passkeys_user", "user_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    # The authenticator's transports (usb, nfc, ble, internal, hybrid), hints for the browser.
    transports: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    aaguid: Mapped[str | None] = mapped_column(String(36))
    backup_eligible: Mapped[bool | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_used_at: Mapped[datetime | None]


class WebAuthnChallenge(Base):
    """A challenge handed to a browser for one ceremony; single use, short-lived."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # sha256 of the challenge: what the browser signs comes back and is looked up by it.
    challenge_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))  # register | authenticate | step_up
    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")


class EnrolmentDelivery(enum.StrEnum):
    """How a passkey enrolment link reached its owner."""

    EMAIL = "email"  # sent to the account's verified address
    HANDOVER = "handover"  # shown once to the super-admin who issued it, to hand over
    CLI = "cli"  # printed by `corral admin enrolment-link` (the first super-admin)


class PasskeyEnrolmentLink(Base):
    """A single-use link for an operator's or super-admin's first passkey (seed 003).

    A password alone never grants staff rights, so the first passkey of a privileged account is
    added only by the person signed in with its password *and* holding this link, which travels
    out of band (its verified email, a super-admin, or the CLI). The token is stored only as its
    SHA-256; a link works once, for an hour, and only while it is the account's newest.
    """

    __tablename__ = "passkey_enrolment_links"
    __table_args__ = (
        CheckConstraint("delivery IN ('email', 'handover', 'cli')", name="delivery_known"),
        Index("ix_passkey_enrolment_links_user", "user_id", "used_at", "revoked_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    delivery: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    # Set when a newer link replaced this one before it was used.
    revoked_at: Mapped[datetime | None]
