"""Comparing what a node runs with what the panel believes, and reporting disagreement.

The panel is the system of record for customers and money; the hypervisor for what is running.
This module records each server's observed power state, and files a drift report when the two
disagree: an instance the panel does not know, or a server whose instance has vanished; and when a
server has been building, reinstalling or deleting for longer than ``servers.stuck_after_minutes``
(its job was lost or is stuck). It never
deletes or recreates anything: a person decides (seed 000: "it never guesses").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.db.session import settings_of
from corral.drivers.base import InstanceRef, InstanceState
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.models.nodes import DriftKind, DriftReport
from corral.models.servers import PowerState, ServerStatus
from corral.servers import repository
from corral.servers.lifecycle import TRANSITIONAL

POWER_STATES: dict[InstanceState, PowerState] = {
    InstanceState.RUNNING: PowerState.RUNNING,
    InstanceState.STOPPED: PowerState.STOPPED,
    InstanceState.PAUSED: PowerState.PAUSED,
    InstanceState.SUSPENDED: PowerState.PAUSED,
    InstanceState.CRASHED: PowerState.CRASHED,
    InstanceState.STARTING: PowerState.STARTING,
    InstanceState.STOPPING: PowerState.RUNNING,
    InstanceState.UNKNOWN: PowerState.UNKNOWN,
}

# Servers that must have an instance on their node. A server being provisioned, reinstalled or
# deleted is in the middle of changing it, so its absence is not yet drift.
_EXPECTED = (ServerStatus.ACTIVE.value, ServerStatus.SUSPENDED.value)
_CHANGING = TRANSITIONAL
_ACTOR = Actor.system("servers.reconcile")


@dataclass
class ReconcileReport:
    updated: int = 0
    new_drift: list[int] = field(default_factory=list)
    resolved: int = 0


@dataclass(frozen=True)
class _NewDrift:
    kind: DriftKind
    external_id: str
    server_id: int | None
    detail: str


async def _report(
    session: AsyncSession,
    node_id: int,
    kind: DriftKind,
    external_id: str,
    server_id: int | None,
    detail: str,
    report: ReconcileReport,
    to_audit: list[_NewDrift],
) -> None:
    report_id, created = await repository.upsert_drift(
        session, node_id=node_id, kind=kind.value, external_id=external_id, server_id=server_id, detail=detail
    )
    if created:
        # Audited once, when first seen; later listings only refresh last_seen_at. The event is
        # recorded by reconcile() after its flush, not here (see there).
        report.new_drift.append(report_id)
        to_audit.append(_NewDrift(kind, external_id, server_id, detail))


async def reconcile(
    session: AsyncSession, node_id: int, instances: Sequence[InstanceRef], *, now: datetime | None = None
) -> ReconcileReport:
    """Apply one listing of ``node_id``'s instances to the panel's records (``now``: tests' clock)."""
    report = ReconcileReport()
    now = now or utcnow()
    servers = await repository.servers_placed_on(session, node_id)
    by_external = {server.external_id: server for server in servers if server.external_id}
    # Servers mid-operation, by panel id: their instance may exist before the job records its id.
    changing = {str(server.id) for server in servers if server.status in _CHANGING}
    open_keys: set[tuple[str, str]] = set()
    to_audit: list[_NewDrift] = []

    for instance in instances:
        server = by_external.pop(instance.external_id, None)
        if server is None and instance.server_id in changing:
            continue  # a provisioning or reinstall job is still recording this instance
        if server is None:
            detail = f"instance {instance.name!r} ({instance.state.value}) is not a server of this panel"
            if instance.server_id is not None:
                detail += f"; it is labelled as panel server {instance.server_id}"
            await _report(
                session,
                node_id,
                DriftKind.UNKNOWN_INSTANCE,
                instance.external_id,
                None,
                detail,
                report,
                to_audit,
            )
            open_keys.add((DriftKind.UNKNOWN_INSTANCE.value, instance.external_id))
            continue
        server.power_state = POWER_STATES.get(instance.state, PowerState.UNKNOWN).value
        server.state_checked_at = now
        report.updated += 1

    for external_id, server in by_external.items():
        if server.status not in _EXPECTED:
            continue
        server.power_state = PowerState.UNKNOWN.value
        server.state_checked_at = now
        detail = f"server {server.id} ({server.name}) expects instance {external_id}, which the node lacks"
        await _report(
            session, node_id, DriftKind.MISSING_INSTANCE, external_id, server.id, detail, report, to_audit
        )
        open_keys.add((DriftKind.MISSING_INSTANCE.value, external_id))

    stuck_after = timedelta(minutes=settings_of(session).servers.stuck_after_minutes)
    for server in servers:
        if server.status not in _CHANGING or now - server.status_changed_at <= stuck_after:
            continue
        since = f"{server.status_changed_at:%Y-%m-%d %H:%M} UTC"
        detail = (
            f"server {server.id} ({server.name}) has been {server.status} since {since}, longer than "
            f"{stuck_after.total_seconds() / 60:.0f} minutes: its job may be lost; see its tasks"
        )
        key = stuck_key(server.id)
        await _report(session, node_id, DriftKind.STUCK_SERVER, key, server.id, detail, report, to_audit)
        open_keys.add((DriftKind.STUCK_SERVER.value, key))

    report.resolved = await _resolve_others(session, node_id, open_keys)
    await session.flush()
    # Audit only now, after the flush has written (and so row-locked) the servers changed above.
    # The audit chain's lock is held until commit, and request paths lock a server row and then
    # audit (cancellations.request): auditing first and updating servers afterwards deadlocked
    # with them.
    for drift in to_audit:
        await audit.record(
            session,
            _ACTOR,
            f"drift.{drift.kind.value}",
            target=Target(type="node", id=node_id),
            payload={"external_id": drift.external_id, "server_id": drift.server_id, "detail": drift.detail},
            result="failure",
        )
    return report


def stuck_key(server_id: int) -> str:
    """A stuck server's report is keyed by the server (it may have no instance yet)."""
    return f"server:{server_id}"


async def _resolve_others(session: AsyncSession, node_id: int, still_open: set[tuple[str, str]]) -> int:
    """Close the reports this listing no longer confirms (someone fixed the cause)."""
    reports = await repository.open_drift_on(session, node_id)
    resolved = [report.id for report in reports if (report.kind, report.external_id) not in still_open]
    await repository.resolve_drift(session, resolved)
    return len(resolved)


async def open_drift_reports(
    session: AsyncSession, *, limit: int = 200
) -> tuple[Sequence[DriftReport], dict[int, str]]:
    """Unresolved drift, newest first, for the operators' page, with the names of their nodes."""
    reports = await repository.open_drift(session, limit=limit)
    names = await repository.node_names(session, {report.node_id for report in reports})
    return reports, names
