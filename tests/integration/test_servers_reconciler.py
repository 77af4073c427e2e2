"""The reconciler records power states and reports drift, and never deletes anything."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import audit
from corral.db.session import settings_of
from corral.drivers.base import InstanceRef, InstanceState
from corral.kit.clock import utcnow
from corral.models.nodes import DriftKind, DriftReport
from corral.models.servers import Server, ServerStatus
from corral.servers.lifecycle import move
from corral.servers.reconciler import reconcile
from tests.factories.users import create_user
from tests.integration.test_servers_placement import make_location, make_node


async def server_on(
    db: AsyncSession, node_id: int, location_id: int, external_id: str, status: ServerStatus
) -> Server:
    user = await create_user(db)
    server = Server(
        user_id=user.id,
        location_id=location_id,
        node_id=node_id,
        name=f"srv-{external_id}",
        vcpus=1,
        memory_mib=512,
        disk_gib=5,
        status=status.value,
        external_id=external_id,
    )
    db.add(server)
    await db.flush()
    return server


def instance(
    external_id: str, state: InstanceState = InstanceState.RUNNING, server_id: str | None = None
) -> InstanceRef:
    return InstanceRef(external_id=external_id, name=f"dom-{external_id}", server_id=server_id, state=state)


async def test_power_states_follow_the_hypervisor(db: AsyncSession) -> None:
    location = await make_location(db)
    node = await make_node(db, location)
    running = await server_on(db, node.id, location.id, "a", ServerStatus.ACTIVE)
    stopped = await server_on(db, node.id, location.id, "b", ServerStatus.ACTIVE)
    report = await reconcile(db, node.id, [instance("a"), instance("b", InstanceState.STOPPED)])
    assert report.updated == 2
    assert report.new_drift == []
    assert (running.power_state, stopped.power_state) == ("running", "stopped")
    assert running.state_checked_at is not None


async def test_an_unknown_instance_is_reported_once_and_left_alone(db: AsyncSession) -> None:
    location = await make_location(db)
    node = await make_node(db, location)
    first = await reconcile(db, node.id, [instance("stranger", server_id="999")])
    again = await reconcile(db, node.id, [instance("stranger", server_id="999")])
    assert len(first.new_drift) == 1
    assert again.new_drift == []  # refreshed, not duplicated
    [drift] = (await db.execute(select(DriftReport))).scalars().all()
    assert drift.kind == "unknown_instance"
    assert drift.external_id == "stranger"
    assert "panel server 999" in (drift.detail or "")
    events = await audit.list(db, action="drift.unknown_instance")
    assert len(events) == 1


async def test_a_vanished_instance_is_reported_and_the_server_kept(db: AsyncSession) -> None:
    location = await make_location(db)
    node = await make_node(db, location)
    server = await server_on(db, node.id, location.id, "gone", ServerStatus.ACTIVE)
    report = await reconcile(db, node.id, [])
    assert len(report.new_drift) == 1
    [drift] = (await db.execute(select(DriftReport))).scalars().all()
    assert (drift.kind, drift.server_id) == ("missing_instance", server.id)
    assert server.status == ServerStatus.ACTIVE  # never deleted or changed by the reconciler
    assert server.power_state == "unknown"
    assert await db.scalar(select(func.count()).select_from(Server)) == 1


async def test_servers_mid_operation_are_not_drift(db: AsyncSession) -> None:
    location = await make_location(db)
    node = await make_node(db, location)
    for status in (ServerStatus.PROVISIONING, ServerStatus.REINSTALLING, ServerStatus.DELETING):
        await server_on(db, node.id, location.id, f"busy-{status.value}", status)
    report = await reconcile(db, node.id, [])
    assert report.new_drift == []


async def test_drift_closes_when_the_cause_is_fixed(db: AsyncSession) -> None:
    location = await make_location(db)
    node = await make_node(db, location)
    await server_on(db, node.id, location.id, "back", ServerStatus.ACTIVE)
    await reconcile(db, node.id, [])
    fixed = await reconcile(db, node.id, [instance("back")])
    assert fixed.resolved == 1
    [drift] = (await db.execute(select(DriftReport))).scalars().all()
    assert drift.resolved_at is not None


async def test_an_instance_still_being_recorded_by_its_job_is_not_drift(db: AsyncSession) -> None:
    location = await make_location(db)
    node = await make_node(db, location)
    server = await server_on(db, node.id, location.id, "new", ServerStatus.PROVISIONING)
    server.external_id = None  # the provisioning job has created the instance but not committed yet
    await db.flush()
    report = await reconcile(db, node.id, [instance("uuid-1", server_id=str(server.id))])
    assert report.new_drift == []
    # An instance claiming to be a settled server whose instance is elsewhere is drift.
    settled = await server_on(db, node.id, location.id, "settled", ServerStatus.ACTIVE)
    report = await reconcile(
        db, node.id, [instance("settled"), instance("impostor", server_id=str(settled.id))]
    )
    assert len(report.new_drift) == 1


async def test_a_server_stuck_reinstalling_past_the_deadline_is_reported_once(db: AsyncSession) -> None:
    location = await make_location(db)
    node = await make_node(db, location)
    stuck = await server_on(db, node.id, location.id, "r", ServerStatus.ACTIVE)
    move(stuck, ServerStatus.REINSTALLING, now=utcnow())
    await db.flush()
    deadline = timedelta(minutes=settings_of(db).servers.stuck_after_minutes)
    listing = [instance("r")]

    in_time = await reconcile(db, node.id, listing, now=stuck.status_changed_at + deadline)
    late = await reconcile(
        db, node.id, listing, now=stuck.status_changed_at + deadline + timedelta(minutes=1)
    )
    later = await reconcile(db, node.id, listing, now=stuck.status_changed_at + 2 * deadline)

    assert in_time.new_drift == []
    assert len(late.new_drift) == 1
    assert later.new_drift == []  # still open: refreshed, not reported (nor audited) again
    (report,) = (
        await db.execute(select(DriftReport).where(DriftReport.kind == DriftKind.STUCK_SERVER.value))
    ).scalars()
    assert (report.server_id, report.external_id, report.resolved_at) == (
        stuck.id,
        f"server:{stuck.id}",
        None,
    )
    assert "reinstalling since" in (report.detail or "")
    assert len(await audit.list(db, action="drift.stuck_server")) == 1

    move(stuck, ServerStatus.ACTIVE)  # the job finished after all
    await db.flush()
    done = await reconcile(db, node.id, listing, now=stuck.status_changed_at + 3 * deadline)
    assert done.resolved == 1
