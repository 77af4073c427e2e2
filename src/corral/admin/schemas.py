"""What the admin pages and API take and give: filters, action bodies, user views, result pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from corral.auth.enrolment import EnrolmentStatus
from corral.kit.text import NORMALISED_NEWLINES, MultiLine, SingleLine
from corral.models.audit import AuditEvent
from corral.models.users import User, UserRole, UserStatus

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
MAX_QUERY = 200
MAX_USER_ID = 2**63 - 1  # users.id is a BIGINT; larger ids are a 422, not a database error
REASON_MIN = 3
REASON_MAX = 500  # users.blocked_reason is VARCHAR(500)

# Destructive and privilege-changing actions must say why (seed 000 section 7.4). A few letters
# at least, so a stray space or "." does not pass for a reason.
Reason = Annotated[
    MultiLine,
    StringConstraints(strip_whitespace=True, min_length=REASON_MIN, max_length=REASON_MAX),
    Field(description=f"Why, for the audit log ({REASON_MIN}-{REASON_MAX} characters)."),
    NORMALISED_NEWLINES,
]
OptionalReason = Annotated[
    MultiLine, StringConstraints(strip_whitespace=True, max_length=REASON_MAX), NORMALISED_NEWLINES
]
# What staff can do to an account, as the pages name the actions.
UserAction = Literal["block", "unblock", "approve", "role", "verify_email", "resend_verification"]
REASON_HINT = f"Give a reason of at least {REASON_MIN} characters; it is kept in the audit log."


def _blank_to_none(value: Any) -> Any:
    # HTML forms send "" for "any"; the API may send null. Both mean "no filter".
    if isinstance(value, str) and not value.strip():
        return None
    return value


class UserFilter(BaseModel):
    """Search and paging for the user list. Pages are keyset cursors on the user id (newest first):
    ``before`` = the last id shown for the next (older) page, ``after`` = the first id shown for
    the previous (newer) one."""

    model_config = ConfigDict(extra="ignore")

    q: SingleLine = Field(default="", max_length=MAX_QUERY, description="Part of the email or name.")
    status: UserStatus | None = None
    role: UserRole | None = None
    before: int | None = Field(default=None, ge=1, le=MAX_USER_ID)
    after: int | None = Field(default=None, ge=1, le=MAX_USER_ID)
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("q", mode="before")
    @classmethod
    def _strip_query(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("status", "role", "before", "after", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @model_validator(mode="after")
    def _one_cursor(self) -> Self:
        if self.before is not None and self.after is not None:
            raise ValueError("give either before or after, not both")
        return self

    def query(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (for links), without the cursors unless given."""
        values: dict[str, Any] = {"q": self.q, "status": self.status, "role": self.role}
        if self.limit != DEFAULT_PAGE_SIZE:
            values["limit"] = self.limit
        values.update(changes)
        return {key: str(value) for key, value in values.items() if value not in (None, "")}


class UserBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class UserUnblock(BaseModel):
    """Lifting a block is not destructive, so the reason is optional (but kept when given)."""

    model_config = ConfigDict(extra="forbid")

    reason: OptionalReason | None = None

    @field_validator("reason", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return _blank_to_none(value)


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: UserRole
    reason: Reason


class AdminUserRead(BaseModel):
    """An account as staff see it. Never the password hash."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: UserRole
    status: UserStatus
    created_at: datetime
    email_verified_at: datetime | None
    approved_at: datetime | None
    blocked_at: datetime | None
    blocked_reason: str | None


# What a staff email action came to, and the sentence that says so (page toasts and API answers).
EmailOutcome = Literal["email_verified", "already_verified", "verification_sent"]
EMAIL_OUTCOMES: dict[str, str] = {
    "email_verified": "Email marked verified. The audit log names you as the one who checked it.",
    "already_verified": "This email address was already verified; nothing changed.",
    "verification_sent": "A new verification email is on its way; earlier links no longer work.",
}


@dataclass(frozen=True)
class EmailAction:
    """What the service did: the user as it is now, and the outcome."""

    user: User
    outcome: EmailOutcome

    def read(self) -> EmailActionRead:
        return EmailActionRead(
            user=AdminUserRead.model_validate(self.user),
            outcome=self.outcome,
            message=EMAIL_OUTCOMES[self.outcome],
        )


class EmailActionRead(BaseModel):
    user: AdminUserRead
    outcome: EmailOutcome = Field(
        description="`already_verified` when marking verified found nothing to do (the call is idempotent)."
    )
    message: str


class AdminUserDetailRead(AdminUserRead):
    active_sessions: int


class AdminUserPage(BaseModel):
    items: list[AdminUserRead]
    total: int = Field(description="Users matching the filter, on every page.")
    older: int | None = Field(description="Pass as `before` for the next (older) page; null at the end.")
    newer: int | None = Field(description="Pass as `after` for the previous (newer) page; null at the start.")


@dataclass(frozen=True)
class UserPage:
    """One page of the user list, as the service returns it."""

    users: Sequence[User]
    total: int
    # Cursors for the neighbouring pages, None when there is none.
    older: int | None
    newer: int | None
    # Accounts waiting for approval, whatever the filter: the list links to them.
    pending_approval: int

    def read(self) -> AdminUserPage:
        return AdminUserPage(
            items=[AdminUserRead.model_validate(user) for user in self.users],
            total=self.total,
            older=self.older,
            newer=self.newer,
        )


@dataclass(frozen=True)
class UserDetail:
    user: User
    active_sessions: int
    # Recent audit events about the user; None when the viewer may not read the audit log.
    events: Sequence[AuditEvent] | None
    # What the viewer may do to the user now (the buttons to show).
    actions: frozenset[UserAction]
    # An operator's or super-admin's first-passkey state; None for other roles.
    enrolment: EnrolmentStatus | None = None

    def read(self) -> AdminUserDetailRead:
        base = AdminUserRead.model_validate(self.user).model_dump()
        return AdminUserDetailRead(**base, active_sessions=self.active_sessions)
