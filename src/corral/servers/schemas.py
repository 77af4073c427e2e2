"""What the customer server pages and API take and give."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from corral.jobs.schemas import JobLogRead, JobRead, JobStatus
from corral.kit.text import SingleLine
from corral.locations.schemas import MAX_ID
from corral.models.servers import Server, ServerStatus
from corral.servers.errors import NoWayToSignIn
from corral.servers.naming import (
    MAX_HOSTNAME,
    MAX_NAME,
    NameRefused,
    normalise_display_name,
    normalise_hostname,
)
from corral.servers.root_password import MAX_LENGTH, MIN_LENGTH
from corral.servers.status import DisplayCode, DisplayStatus, display_status
from corral.ssh_keys.parsing import MAX_INPUT_BYTES

MAX_PASTED_KEYS = 20
MAX_KEY_IDS = 50
# Statuses during which something is happening: the page polls quickly.
TRANSITIONAL = frozenset(
    {ServerStatus.PROVISIONING.value, ServerStatus.REINSTALLING.value, ServerStatus.DELETING.value}
)
TASK_LABELS = {
    "server.provision": "Build",
    "server.power": "Power",
    "server.reinstall": "Reinstall",
    "server.destroy": "Delete",
}
POWER_LABELS = {"start": "Start", "shutdown": "Shut down", "restart": "Restart", "stop": "Force stop"}


def _display_name(value: str) -> str:
    try:
        return normalise_display_name(value)
    except NameRefused as error:
        raise ValueError(str(error)) from error


def _hostname(value: str) -> str:
    try:
        return normalise_hostname(value)
    except NameRefused as error:
        raise ValueError(str(error)) from error


DisplayName = Annotated[
    SingleLine,
    # The naming rules' own limits, so the schema states them; the validator adds what a JSON
    # Schema cannot say (not blank, no invisible characters, no web addresses, no slurs).
    StringConstraints(min_length=1, max_length=MAX_NAME),
    AfterValidator(_display_name),
    Field(description=f"What the panel calls the server: 1-{MAX_NAME} characters, no web addresses."),
]
Hostname = Annotated[
    SingleLine,
    StringConstraints(min_length=1, max_length=MAX_HOSTNAME),
    AfterValidator(_hostname),
    Field(description="RFC 1123 hostname, e.g. `web-1` or `web-1.example.com`; stored lower-cased."),
]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
RootPassword = Annotated[
    SingleLine,
    StringConstraints(min_length=MIN_LENGTH, max_length=MAX_LENGTH),
    Field(description=f"Optional root password, {MIN_LENGTH}-{MAX_LENGTH} characters; stored only hashed."),
]
PowerAction = Literal["start", "shutdown", "restart", "stop"]


class ServerOrderCreate(BaseModel):
    """Phase one: a plan in a location. The server is reserved and waits for its setup."""

    model_config = ConfigDict(extra="forbid")

    plan_id: Id
    location_id: Id
    name: DisplayName
    order_key: Annotated[
        str | None,
        StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$"),
        Field(
            description=(
                "Optional idempotency key (16-64 URL-safe characters): sending the same key again "
                "returns the server the first request made instead of ordering a second one."
            )
        ),
    ] = None


class ServerSetupCreate(BaseModel):
    """Phase two: the operating system, hostname and access for a server awaiting setup."""

    model_config = ConfigDict(extra="forbid")

    template_id: Id
    hostname: Hostname
    ssh_key_ids: Annotated[list[Id], Field(max_length=MAX_KEY_IDS)] = Field(
        default_factory=list, description="Ids of SSH keys saved on your account."
    )
    ssh_keys: Annotated[
        list[Annotated[SingleLine, StringConstraints(max_length=MAX_INPUT_BYTES)]],
        Field(max_length=MAX_PASTED_KEYS),
    ] = Field(default_factory=list, description="Public keys pasted for this server only (OpenSSH format).")
    root_password: RootPassword | None = None

    @model_validator(mode="after")
    def _some_way_to_sign_in(self) -> Self:
        """A server built with no key and no password cannot be reached: refuse it here, before
        anything is looked up (the service checks the resolved keys again)."""
        if not (self.ssh_key_ids or any(key.strip() for key in self.ssh_keys) or self.root_password):
            raise PydanticCustomError(NoWayToSignIn.code, NoWayToSignIn.default_message)
        return self


class ServerReinstall(ServerSetupCreate):
    """A reinstall wipes the disk: the current hostname is typed back as ``confirm``."""

    confirm: Annotated[SingleLine, StringConstraints(strip_whitespace=True, max_length=300)]


class ServerPower(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: PowerAction = Field(description="start, shutdown (ACPI), restart, or stop (force off).")


class ServerRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DisplayName


class ServerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    hostname: str | None
    status: str = Field(description="awaiting_setup, provisioning, active, reinstalling, deleting, failed…")
    power_state: str = Field(description="What the hypervisor last reported: running, stopped…")
    status_detail: str | None = Field(
        default=None,
        description=(
            "Why the last build or reinstall failed, when it did. A failed build is retried with "
            "POST /setup, a failed reinstall with POST /reinstall."
        ),
    )
    plan_id: int | None
    location_id: int
    template_id: int | None
    vcpus: int
    memory_mib: int
    disk_gib: int
    addresses: list[str] = Field(default_factory=list)
    created_at: datetime
    suspended: bool = False
    cancel_mode: str | None = None
    cancel_due_at: datetime | None = None
    display_status: DisplayCode = Field(
        default=DisplayCode.UNKNOWN,
        description=(
            "What the panel's badge says, derived from all of the above in one priority order: "
            "deleted, deleting, suspended, payment_overdue, pending_cancellation, then the "
            "lifecycle (awaiting_setup, building, reinstalling, failed), then the power state."
        ),
    )

    @classmethod
    def of(
        cls, server: Server, addresses: list[str] | None = None, *, display: DisplayStatus | None = None
    ) -> ServerRead:
        read = cls.model_validate(server)
        shown = display or display_status(server)
        return read.model_copy(
            update={
                "addresses": addresses or [],
                "suspended": server.suspended_at is not None,
                "display_status": shown.code,
            }
        )


class ServerJobRead(BaseModel):
    """One entry of a server's task timeline (the job's arguments are not shown: they may hold
    a password hash)."""

    id: int
    task_name: str
    status: JobStatus
    attempts: int
    deferred_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    logs: list[JobLogRead]
    can_retry: bool

    @classmethod
    def of(cls, job: JobRead) -> ServerJobRead:
        return cls(
            id=job.id,
            task_name=job.task_name,
            status=job.status,
            attempts=job.attempts,
            deferred_at=job.deferred_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            logs=job.logs,
            can_retry=job.can_retry,
        )


class JobAccepted(BaseModel):
    """An operation was queued; follow it on ``GET /api/v1/servers/{id}/jobs``."""

    job_id: int
    server: ServerRead


@dataclass(frozen=True)
class ServerView:
    """A server with what its pages show next to it (names resolved, addresses, running jobs)."""

    server: Server
    plan_name: str | None = None
    location_name: str | None = None
    template_name: str | None = None
    addresses: list[str] = field(default_factory=list)
    jobs: list[JobRead] = field(default_factory=list)
    # The timeline: the page polls with ``jobs_since`` (the oldest job id it first showed, 0 for
    # none) so no job drops out of view; ``older_jobs_before`` is the "Show older" cursor, None
    # when there is nothing older.
    jobs_since: int = 0
    older_jobs_before: int | None = None
    # What the live block was drawn from (ServerService.live_version): a poll that sends it back
    # unchanged is answered 204 with no body.
    live_version: str = ""

    @property
    def busy_job(self) -> JobRead | None:
        """The newest job still waiting or running, if any."""
        return next((job for job in self.jobs if job.status in ("todo", "doing")), None)

    @property
    def display(self) -> DisplayStatus:
        """The server's badge (servers/status.py), with a power operation in flight shown as such."""
        busy = self.busy_job
        action = (
            str(busy.args.get("action", ""))
            if busy is not None and busy.task_name == "server.power"
            else None
        )
        return display_status(self.server, power_action=action)

    @property
    def transitional(self) -> bool:
        return self.server.status in TRANSITIONAL or self.busy_job is not None

    @property
    def poll_seconds(self) -> int:
        return 2 if self.transitional else 10

    def read(self) -> ServerRead:
        return ServerRead.of(self.server, self.addresses, display=self.display)


def task_label(job: JobRead) -> str:
    label = TASK_LABELS.get(job.task_name, job.task_name)
    if job.task_name == "server.power":
        return f"{label}: {POWER_LABELS.get(str(job.args.get('action')), '?').lower()}"
    return label
