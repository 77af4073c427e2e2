"""The node health check: status transitions, what is recorded, audit on change only, and the jobs
(per-node check with a queueing lock, the every-minute fan-out) run by a real worker."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from corral.config import Settings
from corral.db.session import transaction
from corral.drivers.base import DriverAuthError, PermanentDriverError, TransientDriverError
from corral.jobs.app import build_app
from corral.jobs.errors import JobAlreadyQueued
from corral.jobs.periodic import PERIODIC
from corral.jobs.service import job_service
from corral.kit.actors import Actor
from corral.kit.crypto import Keyring, generate_key_spec
from corral.models.nodes import Node, NodeStatus
from corral.nodes import health
from corral.nodes.credentials import context_for
from corral.nodes.probe import message_for, status_for
from corral.nodes.schemas import NodeCredentials
from tests.factories.nodes import create_node, create_node_key, unreachable_connection
from tests.integration.test_jobs_support import harness, wait_until
from tests.integration.test_nodes_support import audit_events

SYSTEM = Actor.system("nodes.health_check")


async def check(db: AsyncSession, node: Node) -> health.CheckOutcome:
    outcome = await health.check(db, node.id, SYSTEM)
    assert outcome is not None
    return outcome


async def test_online_offline_and_back_with_an_audit_event_per_change_only(db: AsyncSession) -> None:
    node = await create_node(db, status=NodeStatus.ONLINE.value)

    steady = await check(db, node)
    assert (steady.changed, node.status, node.last_error) == (False, "online", None)
    first_check = node.last_checked_at
    assert first_check is not None

    for name, value in unreachable_connection((await create_node_key(db)).id).items():
        setattr(node, name, value)
    await db.flush()
    down = await check(db, node)
    assert (down.changed, node.status) == (True, "offline")
    assert "Connection refused" in (node.last_error or "")
    still_down = await check(db, node)
    assert still_down.changed is False
    assert node.last_checked_at is not None
    assert node.last_checked_at > first_check

    node.transport, node.host, node.port = "test", None, None
    node.ssh_user, node.ssh_key_id, node.ssh_host_key = None, None, None
    await db.flush()
    up = await check(db, node)
    assert (up.changed, node.status, node.last_error) == (True, "online", None)

    events = await audit_events(db, "node.status.change")
    assert [(event.payload["from"], event.payload["to"]) for event in events] == [
        ("online", "offline"),
        ("offline", "online"),
    ]
    assert {event.actor_label for event in events} == {"system:nodes.health_check"}
    assert "Connection refused" in events[0].payload["error"]


async def test_a_node_that_answers_wrongly_is_unhealthy_until_fixed(db: AsyncSession) -> None:
    node = await create_node(db, storage_pool="no-such-pool")

    broken = await check(db, node)
    assert (broken.changed, node.status) == (True, "unhealthy")
    assert node.last_error == "storage pool 'no-such-pool' does not exist on the node"

    node.storage_pool = "default-pool"
    await db.flush()
    fixed = await check(db, node)
    assert (fixed.changed, node.status) == (True, "online")


async def test_credentials_that_cannot_be_decrypted_make_the_node_unhealthy(
    db: AsyncSession, settings: Settings
) -> None:
    node = await create_node(db, credentials=NodeCredentials(username="corral"))
    # Sealed under a key this panel does not have (e.g. dropped from the list too early).
    stranger = Keyring.parse(generate_key_spec("gone"))
    node.credentials_encrypted = stranger.encrypt('{"username": "x"}', context=context_for(node.id))
    await db.flush()

    outcome = await check(db, node)

    assert (outcome.changed, node.status) == (True, "unhealthy")
    assert node.last_error == (
        "the stored credentials cannot be decrypted: encrypted with key 'gone', which is not configured"
    )


async def test_maintenance_is_left_alone_but_the_check_is_recorded(db: AsyncSession) -> None:
    key = await create_node_key(db)
    node = await create_node(db, status=NodeStatus.MAINTENANCE.value, **unreachable_connection(key.id))

    outcome = await check(db, node)

    assert (outcome.changed, node.status) == (False, "maintenance")
    assert node.last_checked_at is not None
    assert "Connection refused" in (node.last_error or "")
    assert await audit_events(db, "node.") == []


def test_driver_errors_map_to_statuses_and_readable_messages() -> None:
    assert status_for(None) is NodeStatus.ONLINE
    assert status_for(TransientDriverError("no route to host")) is NodeStatus.OFFLINE
    assert status_for(TimeoutError()) is NodeStatus.OFFLINE
    assert status_for(DriverAuthError("permission denied")) is NodeStatus.UNHEALTHY
    assert status_for(PermanentDriverError("pool missing")) is NodeStatus.UNHEALTHY
    assert message_for(DriverAuthError("permission denied")) == "authentication failed: permission denied"
    assert message_for(TimeoutError()) == "the node did not answer within 20 seconds"


def test_the_fan_out_runs_every_minute() -> None:
    assert [(entry.task, entry.cron) for entry in PERIODIC if entry.task.startswith("nodes.")] == [
        ("nodes.health_check_all", "* * * * *")
    ]
    app = build_app()  # validates every periodic entry against its task
    assert {"nodes.health_check", "nodes.health_check_all"} <= set(app.tasks)


async def test_checks_never_pile_up_and_the_fan_out_checks_every_node(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with harness(fresh_database(), settings) as h:
        async with transaction(h.sessions) as session:
            reachable = await create_node(session, status=NodeStatus.OFFLINE.value)
            key = await create_node_key(session)
            unreachable = await create_node(session, location=None, **unreachable_connection(key.id))
            waiting = await create_node(session, status=NodeStatus.OFFLINE.value)
            # A check for `waiting` is already queued (due later): no second one may join it.
            await job_service.defer(
                session, "nodes.health_check", node_id=waiting.id, schedule_in=timedelta(hours=1)
            )
        async with transaction(h.sessions) as session:
            with pytest.raises(JobAlreadyQueued):
                await job_service.defer(session, "nodes.health_check", node_id=waiting.id)

        await h.runtime.start_worker()
        # The worker's periodic deferrer may queue this minute's fan-out too: either way, every run
        # must skip the node whose check is still waiting.
        fan_out = await h.defer("nodes.health_check_all", timestamp=0)
        done = await h.wait_for_status(fan_out, "succeeded")
        assert re.fullmatch(
            r"Queued [0-2] node check\(s\); [1-3] still waiting from before", done.logs[0].message
        )

        async def settled() -> dict[int, str] | None:
            async with h.sessions() as session:
                statuses = {
                    node.id: node.status
                    for node in [
                        await session.get(Node, reachable.id),
                        await session.get(Node, unreachable.id),
                    ]
                    if node is not None
                }
            return statuses if statuses == {reachable.id: "online", unreachable.id: "offline"} else None

        await wait_until(settled, what="both nodes to be checked")
        async with h.sessions() as session:
            checks = await job_service.list(session, task_name="nodes.health_check")
            fan_outs = await job_service.list(session, task_name="nodes.health_check_all", status="succeeded")
            still_waiting = await session.get(Node, waiting.id)
        assert [job.status for job in checks if job.args["node_id"] == waiting.id] == ["todo"]
        lines = sorted(line.message for job in checks if job.status == "succeeded" for line in job.logs)
        assert any(line.startswith(f"Node {reachable.name} is online (was offline)") for line in lines)
        assert any(
            line.startswith(f"Node {unreachable.name} is offline") and "Connection refused" in line
            for line in lines
        )
        for run in fan_outs:
            assert "still waiting from before" in run.logs[0].message
            assert not run.logs[0].message.endswith("; 0 still waiting from before")
        assert still_waiting is not None
        assert still_waiting.status == "offline"
