"""Value objects of the audit log: what an event is about, and what verification found."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

AuditResult = Literal["success", "failure", "pending"]


class Target(BaseModel):
    """What an action was done to, e.g. ``Target(type="server", id=42)``.

    ``id`` is kept as text (numbers are converted) so every kind of object fits one column.
    Without an id it names a kind of thing (``Target(type="settings")``) or, as a list filter,
    every object of that type.
    """

    model_config = ConfigDict(frozen=True, coerce_numbers_to_str=True)

    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    id: str | None = Field(default=None, min_length=1, max_length=128)


class AuditEventRef(BaseModel):
    """Enough of a row to find it again: where verification stopped."""

    seq: int
    action: str
    occurred_at: datetime


class VerifyReport(BaseModel):
    """The outcome of walking the chain from seq 1 to its head, and of checking every checkpoint."""

    ok: bool
    rows_checked: int
    # The last row that verified (None on an empty chain or when seq 1 is already bad).
    head_seq: int | None
    checkpoints_checked: int
    # Where the chain first breaks. For a deleted row it is the missing seq; ``bad_event`` is then
    # the row found in its place (None when the tail is gone).
    first_bad_seq: int | None = None
    reason: str | None = None
    bad_event: AuditEventRef | None = None
    bad_checkpoint_id: int | None = None

    def summary(self) -> str:
        """One line for a terminal or a log."""
        if self.ok:
            head = f"head seq {self.head_seq}" if self.head_seq is not None else "empty chain"
            return (
                f"audit chain intact: {self.rows_checked} row(s) verified, {head}, "
                f"{self.checkpoints_checked} checkpoint(s) verified"
            )
        where = f"seq {self.first_bad_seq}" if self.first_bad_seq is not None else "an unknown seq"
        row = ""
        if self.bad_event is not None:
            event = self.bad_event
            found = "" if event.seq == self.first_bad_seq else f"next row: seq {event.seq}, "
            row = f" ({found}{event.action} at {event.occurred_at.isoformat()})"
        return f"audit chain BROKEN at {where}{row}: {self.reason}"


class AuditEventRead(BaseModel):
    """An audit row as pages and the JSON API show it."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: int | None
    actor_label: str
    actor_role: str | None
    action: str
    target_type: str | None
    target_id: str | None
    payload: dict[str, Any]
    result: AuditResult
    ip: str | None
    reason: str | None
    request_id: str | None

    @field_validator("ip", mode="before")
    @classmethod
    def _ip_as_text(cls, value: object) -> object:
        # psycopg loads inet columns as ipaddress objects; pages want text.
        if value is not None and not isinstance(value, str):
            return str(value)
        return value


class AuditCheckpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    seq: int
    hash: str
    created_at: datetime
    key_id: str
