"""What a page or the API is shown about a background job."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

# procrastinate's job statuses ("aborting" is a legacy value it no longer sets).
JobStatus = Literal["todo", "doing", "succeeded", "failed", "cancelled", "aborting", "aborted"]
LogLevel = Literal["debug", "info", "warning", "error"]

FINISHED_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "aborted"})


class JobLogRead(BaseModel):
    """One line a job wrote, or the error an attempt ended with."""

    model_config = ConfigDict(from_attributes=True)

    attempt: int
    logged_at: datetime
    level: LogLevel
    message: str


class JobRead(BaseModel):
    id: int
    task_name: str
    queue: str
    status: JobStatus
    # procrastinate's counter: attempts that have ended. A running job shows the ones before it;
    # a manual retry of a failed job also counts one (procrastinate's retry procedure does that).
    attempts: int
    lock: str | None
    queueing_lock: str | None
    args: dict[str, Any]
    # Not before this time (None: as soon as a worker is free).
    scheduled_at: datetime | None
    deferred_at: datetime | None
    # Start of the latest attempt.
    started_at: datetime | None
    # Set once the job has reached a final status.
    finished_at: datetime | None
    logs: list[JobLogRead]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def can_retry(self) -> bool:
        return self.status == "failed"

    @property
    def last_error(self) -> str | None:
        """The message the latest failed attempt ended with, for a one-line summary."""
        errors = [line.message for line in self.logs if line.level == "error"]
        return errors[-1] if errors else None
