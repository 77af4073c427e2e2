"""Server cancellation (seed 000 sections 6.3 and 8.2).

Two modes:

- **grace**: the server is deleted ``servers.grace_days`` (30) days later; the owner can revoke it
  until then, and the server shows a PENDING CANCELLATION badge meanwhile;
- **immediate**: deleted ``servers.immediate_delay_seconds`` (5 minutes) later, never revocable.
  From the moment it is asked for the server is locked (:func:`locked_for_deletion`): its page is
  the "Deletion in progress" screen and power, reinstall and console are refused.

A grace cancellation may be turned into an immediate one (the customer changed their mind the
other way: "delete it now"); the earlier of the two due times wins. The reverse is refused, since
an immediate cancellation is final.

The cancellation processor (``servers.process_cancellations``, every 30 seconds) takes due
cancellations with ``FOR UPDATE SKIP LOCKED`` and hands each to :meth:`CancellationService.process`:

1. not yet deleting: call ``servers.destroy`` (which defers the ``server.destroy`` job that removes
   the instance and releases its addresses) and audit ``server.cancel.execute`` (pending);
2. deleting: look at the latest destroy job. Still queued or running: check again later. Failed:
   count an attempt, keep the error for operators (/admin/servers), audit ``server.cancel.fail``
   and queue a new destroy job after an exponential backoff, or give up after
   ``servers.cancel_max_attempts`` and leave the server to an operator, who can set it going
   again from /admin/servers (:meth:`CancellationService.retry`);
3. deleted: the cancellation is done; audit ``server.cancel.execute`` (success).

An exception while starting a deletion counts as a failed attempt in the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.db.session import settings_of
from corral.jobs.errors import JobAlreadyQueued
from corral.jobs.service import job_service
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.kit.errors import PanelError
from corral.models.servers import CancelMode, Server, ServerStatus
from corral.rbac.permissions import Permission
from corral.servers import fleet_repository
from corral.servers.errors import (
    CancellationExists,
    CancellationNotConfirmed,
    CancellationNotGivenUp,
    CancellationNotRevocable,
    NoCancellation,
    ServerBeingDeleted,
    ServerNotFound,
)
from corral.servers.service import servers

# Defined with the server's status badge (one place says what "being deleted" means); kept
# importable from here, where the cancellation rules live.
from corral.servers.status import locked_for_deletion as locked_for_deletion
from corral.servers.status import pending_cancellation as pending_cancellation

Outcome = Literal["started", "waiting", "completed", "failed", "gave_up"]

PROCESSOR = Actor.system("servers.process_cancellations")
# Servers taken per run; the rest wait for the next run 30 seconds later.
BATCH = 100
RETRY_CAP = timedelta(hours=1)
ERROR_MAX = 2000
_GONE = (ServerStatus.DELETING.value, ServerStatus.DELETED.value)
_DESTROY = "server.destroy"


def revocable(server: Server, now: datetime | None = None) -> bool:
    return (
        pending_cancellation(server)
        and server.cancel_due_at is not None
        and server.cancel_due_at > (now or utcnow())
    )


def _need(principal: Principal, permission: Permission) -> None:
    if not principal.can(permission):
        raise MissingPermission()


def _target(server: Server) -> Target:
    return Target(type="server", id=server.id)


def _mark(server: Server, mode: str | None, requested_at: datetime | None, due_at: datetime | None) -> None:
    """Set (or, with ``None``s, clear) the cancellation, starting its deletion attempts afresh."""
    server.cancel_mode = mode
    server.cancel_requested_at = requested_at
    server.cancel_due_at = due_at
    server.cancel_attempts = 0
    server.cancel_error = None


async def _owned(
    session: AsyncSession, principal: Principal, server_id: int, permission: Permission, *, for_update: bool
) -> Server:
    """The principal's own server (another customer's is not found), if ``permission`` allows."""
    _need(principal, permission)
    server = await fleet_repository.owned(session, principal.user_id, server_id, for_update=for_update)
    if server is None:
        raise ServerNotFound()
    return server


def _error_text(error: BaseException) -> str:
    text = error.message if isinstance(error, PanelError) else f"{type(error).__name__}: {error}"
    return text[:ERROR_MAX]


class CancellationService:
    async def get(self, session: AsyncSession, principal: Principal, server_id: int) -> Server:
        """The principal's own server (another customer's is not found)."""
        return await _owned(session, principal, server_id, Permission.SERVERS_READ, for_update=False)

    async def request(
        self,
        session: AsyncSession,
        principal: Principal,
        server_id: int,
        mode: CancelMode,
        *,
        confirm: str | None = None,
    ) -> Server:
        """Cancel the principal's own server. ``confirm`` must be the server's name for ``immediate``."""
        server = await _owned(session, principal, server_id, Permission.SERVERS_MANAGE, for_update=True)
        if server.status in _GONE:
            raise ServerBeingDeleted()
        previous = server.cancel_mode
        if previous == CancelMode.IMMEDIATE.value:
            raise CancellationExists("This server is already being deleted; that cannot be undone.")
        if previous == CancelMode.GRACE.value and mode == CancelMode.GRACE:
            raise CancellationExists(
                "This server is already cancelled at the end of its grace period; revoke that first "
                "or choose immediate deletion."
            )
        if mode == CancelMode.IMMEDIATE and (confirm or "").strip() != server.name:
            raise CancellationNotConfirmed(details={"field": "confirm"})
        policy = settings_of(session).servers
        now = utcnow()
        if mode == CancelMode.GRACE:
            due = now + timedelta(days=policy.grace_days)
        else:
            due = now + timedelta(seconds=policy.immediate_delay_seconds)
            if server.cancel_due_at is not None and server.cancel_due_at < due:
                due = server.cancel_due_at  # an upgrade never postpones the deletion
        _mark(server, mode.value, now, due)
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "server.cancel.request",
            target=_target(server),
            payload={"mode": mode.value, "due_at": due.isoformat(), "previous_mode": previous},
        )
        return server

    async def revoke(self, session: AsyncSession, principal: Principal, server_id: int) -> Server:
        """Keep the server: withdraw a grace cancellation before it is due."""
        server = await _owned(session, principal, server_id, Permission.SERVERS_MANAGE, for_update=True)
        if server.status in _GONE:
            raise CancellationNotRevocable("The deletion has already started.")
        if server.cancel_mode is None:
            raise NoCancellation()
        if server.cancel_mode == CancelMode.IMMEDIATE.value:
            raise CancellationNotRevocable(
                "An immediate cancellation cannot be revoked; the server is being deleted."
            )
        if not revocable(server):
            raise CancellationNotRevocable("The grace period has ended; the deletion is under way.")
        due = server.cancel_due_at
        _mark(server, None, None, None)
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "server.cancel.revoke",
            target=_target(server),
            payload={"mode": CancelMode.GRACE.value, "due_at": due.isoformat() if due else None},
        )
        return server

    # Staff's side.

    async def retry(self, session: AsyncSession, principal: Principal, server_id: int) -> Server:
        """Set going again a cancellation the processor gave up on (``fleet_servers:suspend``): its
        attempts start afresh and it is due now, so the next run (within 30 seconds) takes it."""
        _need(principal, Permission.FLEET_SERVERS_SUSPEND)
        server = await fleet_repository.for_update(session, server_id)
        if server is None:
            raise ServerNotFound()
        if not fleet_repository.cancel_given_up(server):
            raise CancellationNotGivenUp()
        attempts, error = server.cancel_attempts, server.cancel_error
        server.cancel_attempts = 0
        server.cancel_error = None
        server.cancel_due_at = utcnow()
        job_id: int | None = None
        if server.status == ServerStatus.DELETING.value:
            # The last deletion job failed; without a new one the next run would only count that
            # old failure again (and, with one attempt allowed, give up at once).
            with suppress(JobAlreadyQueued):
                job_id = await job_service.defer(
                    session, _DESTROY, server_id=server.id, queueing_lock=f"server:{server.id}:{_DESTROY}"
                )
        # Otherwise the deletion never started, and the next run calls servers.destroy.
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "server.cancel.retry",
            target=_target(server),
            payload={
                "mode": server.cancel_mode,
                "previous_attempts": attempts,
                "previous_error": error,
                "job_id": job_id,
            },
        )
        return server

    # The processor's side.

    async def due(self, session: AsyncSession, *, limit: int = BATCH) -> Sequence[Server]:
        """Due cancellations, row-locked with SKIP LOCKED (another worker has the rest)."""
        return await fleet_repository.due_cancellations(session, utcnow(), limit=limit)

    async def process(self, session: AsyncSession, server: Server) -> Outcome:
        """Move one due cancellation one step on (see the module's description)."""
        now = utcnow()
        # While a deletion runs, look at it again on a later run rather than on every one.
        check_again = timedelta(seconds=settings_of(session).servers.cancel_recheck_seconds)
        if server.status == ServerStatus.DELETED.value:
            server.cancel_due_at = None
            server.cancel_error = None
            await session.flush()
            await audit.record(
                session,
                PROCESSOR,
                "server.cancel.execute",
                target=_target(server),
                payload={"mode": server.cancel_mode, "attempts": server.cancel_attempts},
            )
            return "completed"
        if server.status != ServerStatus.DELETING.value:
            job_id = await servers.destroy(
                session, PROCESSOR, server.id, reason=f"cancelled by the customer ({server.cancel_mode})"
            )
            server.cancel_due_at = now + check_again
            await session.flush()
            await audit.record(
                session,
                PROCESSOR,
                "server.cancel.execute",
                target=_target(server),
                payload={"mode": server.cancel_mode, "job_id": job_id},
                result="pending",
            )
            return "started"
        jobs = await job_service.list(session, lock=f"server:{server.id}", task_name=_DESTROY, limit=1)
        job = jobs[0] if jobs else None
        if job is not None and not job.is_finished:
            server.cancel_due_at = now + check_again
            await session.flush()
            return "waiting"
        if job is None:
            error = "No deletion job was found for this server."
        elif job.status == "succeeded":
            error = "The deletion job finished without deleting the server."
        else:
            error = job.last_error or f"The deletion job ended {job.status}."
        return await self.record_failure(session, server, error)

    async def record_failure(
        self, session: AsyncSession, server: Server, error: str | BaseException
    ) -> Outcome:
        """Count a failed attempt, keep the error for operators and retry later, or give up."""
        # After a failed savepoint the row's attributes are expired; read them again.
        await session.refresh(server)
        message = error if isinstance(error, str) else _error_text(error)
        policy = settings_of(session).servers
        server.cancel_attempts += 1
        server.cancel_error = message[:ERROR_MAX]
        gave_up = server.cancel_attempts >= policy.cancel_max_attempts
        retry_at: datetime | None = None
        if gave_up:
            # Nothing more happens on its own: the server stays listed as a failed cancellation.
            server.cancel_due_at = None
        else:
            backoff = policy.cancel_retry_base_seconds * 2 ** (server.cancel_attempts - 1)
            delay = min(RETRY_CAP, timedelta(seconds=backoff))
            retry_at = utcnow() + delay
            server.cancel_due_at = retry_at
            if server.status == ServerStatus.DELETING.value:
                # A deletion already waiting (JobAlreadyQueued) is as good: the next run looks at it.
                with suppress(JobAlreadyQueued):
                    await job_service.defer(
                        session,
                        _DESTROY,
                        server_id=server.id,
                        queueing_lock=f"server:{server.id}:{_DESTROY}",
                        schedule_in=delay,
                    )
            # Otherwise the next run calls servers.destroy again.
        await session.flush()
        await audit.record(
            session,
            PROCESSOR,
            "server.cancel.fail",
            target=_target(server),
            payload={
                "attempts": server.cancel_attempts,
                "error": server.cancel_error,
                "retry_at": retry_at.isoformat() if retry_at else None,
                "gave_up": gave_up,
            },
            result="failure",
        )
        return "gave_up" if gave_up else "failed"


cancellations = CancellationService()
