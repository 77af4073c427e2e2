"""Shapes handed around the users domain: forms as typed, API bodies, and what services return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from corral.kit.text import SingleLine
from corral.models.users import UserRole, UserStatus

# No spaces and no control characters anywhere (kit.text): a NUL would not even reach the database.
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+\.[^@\s\x00-\x1f\x7f-\x9f]+$"
MAX_EMAIL_LENGTH = 254  # what SMTP accepts (RFC 5321), below the column's 320
MAX_NAME_LENGTH = 200
# Forms accept more than the rules allow, so an over-long value gets a message next to its field
# instead of a bare framework 422; the services apply the real limits.
FORM_MAX_TEXT = 1024


class UserCreate(BaseModel):
    email: str = Field(min_length=3, max_length=320, pattern=EMAIL_PATTERN)
    name: SingleLine = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    password: str = Field(min_length=12, max_length=128)
    role: UserRole = UserRole.CUSTOMER
    status: UserStatus = UserStatus.PENDING_VERIFICATION


# ---------------------------------------------------------------- forms, as typed


@dataclass(frozen=True)
class RegistrationForm:
    email: str
    name: str
    password: str
    password_confirm: str


@dataclass(frozen=True)
class PasswordResetForm:
    token: str
    password: str
    password_confirm: str


@dataclass(frozen=True)
class EmailChangeForm:
    new_email: str
    current_password: str


@dataclass(frozen=True)
class PasswordChangeForm:
    current_password: str
    password: str
    password_confirm: str


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class VerifyOutcome:
    """What following a verification link did: the account is now ``active`` or waits for approval."""

    status: Literal["active", "pending_approval", "blocked"]
    email: str


@dataclass(frozen=True)
class PasswordChanged:
    """A password was changed while signed in: the browser needs this new session's cookie."""

    session_secret: str


# ---------------------------------------------------------------- JSON API

AccountName = Annotated[
    SingleLine, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_LENGTH)
]


class AccountRead(BaseModel):
    """The signed-in user's own account."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: str
    status: str
    email_verified_at: datetime | None
    password_changed_at: datetime | None
    created_at: datetime
    # An address change waiting for its confirmation link to be followed.
    pending_email: str | None = None


class AccountUpdate(BaseModel):
    """Fields a user may change through the API. Email and password need the web pages, which ask
    for the current password and confirm by email."""

    model_config = ConfigDict(extra="forbid")

    name: AccountName | None = None
