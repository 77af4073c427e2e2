"""Task declaration, retry policy and the periodic schedule, without a database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from procrastinate.jobs import Job
from procrastinate.periodic import PeriodicDeferrer

from corral.jobs.app import Backoff, TaskContext, build_app, get_spec, registered_tasks, task
from corral.jobs.errors import (
    InvalidJobArguments,
    PermanentJobError,
    TaskDefinitionError,
    UnknownTask,
    WorkerLost,
)
from corral.jobs.periodic import PERIODIC, PERIODIC_QUEUE


class Transient(Exception):
    pass


def _job(attempts: int) -> Job:
    return Job(id=1, queue="default", lock=None, queueing_lock=None, task_name="x.y", attempts=attempts)


@task("unitjobs.power", lock="server:{server_id}", queueing_lock="power:{server_id}:{action}")
async def power(ctx: TaskContext, *, server_id: int, action: str = "start") -> None:
    await ctx.log(f"{action} {server_id}")


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(attempts=10, base_seconds=2, cap_seconds=20)
    assert [backoff.delay(attempt) for attempt in range(1, 7)] == [2, 4, 8, 16, 20, 20]


def test_backoff_counts_every_run_and_stops_at_its_limit() -> None:
    backoff = Backoff(attempts=3, base_seconds=10)
    before = datetime.now(UTC)
    first = backoff.get_retry_decision(exception=RuntimeError(), job=_job(attempts=0))
    assert first is not None
    assert first.retry_at is not None
    assert timedelta(seconds=9) < first.retry_at - before < timedelta(seconds=11)
    second = backoff.get_retry_decision(exception=RuntimeError(), job=_job(attempts=1))
    assert second is not None
    assert second.retry_at is not None
    assert timedelta(seconds=19) < second.retry_at - before < timedelta(seconds=21)
    assert backoff.get_retry_decision(exception=RuntimeError(), job=_job(attempts=2)) is None


def test_backoff_never_retries_permanent_errors_and_respects_retry_on() -> None:
    backoff = Backoff(attempts=5, retry_on=(Transient,))
    assert backoff.get_retry_decision(exception=PermanentJobError(), job=_job(0)) is None
    assert backoff.get_retry_decision(exception=ValueError(), job=_job(0)) is None
    assert backoff.get_retry_decision(exception=Transient(), job=_job(0)) is not None
    # Interrupted attempts (worker shutdown, lost worker) are retried whatever retry_on says.
    assert backoff.get_retry_decision(exception=asyncio.CancelledError(), job=_job(0)) is not None
    assert backoff.get_retry_decision(exception=WorkerLost(), job=_job(0)) is not None


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        Backoff(attempts=0)


def test_declared_locks_are_filled_from_the_arguments() -> None:
    spec = get_spec("unitjobs.power")
    assert spec.lock_for({"server_id": 7, "action": "stop"}) == "server:7"
    assert spec.queueing_lock_for({"server_id": 7, "action": "stop"}) == "power:7:stop"
    assert spec.static_lock() is None  # needs arguments, so not a task-wide default
    spec.check_arguments({"server_id": 7})
    with pytest.raises(InvalidJobArguments):
        spec.check_arguments({"server": 7})
    with pytest.raises(InvalidJobArguments, match="action"):
        spec.queueing_lock_for({"server_id": 7})  # a defaulted argument must still be passed


def test_unknown_task_names_are_refused() -> None:
    with pytest.raises(UnknownTask, match="TASK_MODULES"):
        get_spec("nosuch.task")


def test_bad_declarations_are_refused_at_import() -> None:
    async def body(ctx: TaskContext, *, server_id: int) -> None:
        return None

    def sync_body(ctx: TaskContext, *, server_id: int) -> None:
        return None

    async def positional(ctx: TaskContext, server_id: int, /) -> None:
        return None

    with pytest.raises(TaskDefinitionError, match=r"domain\.verb"):
        task("Provision")(body)
    with pytest.raises(TaskDefinitionError, match=r"domain\.verb"):
        task("server.provision.now")(body)
    with pytest.raises(TaskDefinitionError, match="async"):
        task("unitjobs.sync")(sync_body)  # type: ignore[type-var]
    with pytest.raises(TaskDefinitionError, match="unknown arguments"):
        task("unitjobs.badlock", lock="server:{id}")(body)
    with pytest.raises(TaskDefinitionError, match="plain fields"):
        task("unitjobs.badformat", lock="server:{server_id!r}")(body)
    with pytest.raises(TaskDefinitionError, match="by keyword"):
        task("unitjobs.positional")(positional)
    with pytest.raises(TaskDefinitionError, match="declared twice"):
        task("unitjobs.power")(body)
    assert "unitjobs.sync" not in registered_tasks()


def test_every_task_is_named_domain_verb_and_registered_in_the_app() -> None:
    app = build_app()
    for name in registered_tasks():
        assert name.count(".") == 1
        assert name == name.lower()
        assert name in app.tasks
    assert app.tasks["unitjobs.power"].lock is None
    assert app.tasks["jobs.prune"].queueing_lock == "jobs.prune"  # static: applies to periodic runs


def test_the_periodic_registry_holds_the_expected_schedules() -> None:
    app = build_app()
    schedules = {key: periodic.cron for key, periodic in app.periodic_registry.periodic_tasks.items()}
    assert schedules == {
        ("audit.checkpoint", ""): "0 * * * *",  # hourly
        ("jobs.prune", ""): "17 3 * * *",  # daily
        ("auth.prune_challenges", ""): "41 * * * *",  # hourly, expired sign-in challenges
        ("jobs.recover_stalled", ""): "* * * * *",  # every minute
        ("nodes.health_check_all", ""): "* * * * *",  # every minute, one check per node
        ("servers.reconcile", ""): "* * * * *",  # every minute, one reconcile per node
        ("servers.process_cancellations", ""): "* * * * * */30",  # every 30 seconds
        ("servers.release_unfinished", ""): "23 * * * *",  # hourly, orders never set up
    }
    assert len(PERIODIC) == len(schedules)
    for periodic in app.periodic_registry.periodic_tasks.values():
        assert periodic.configure_kwargs.get("queue") == PERIODIC_QUEUE  # pruned after a day
    # Every periodic task has a static queueing lock, so runs do not pile up behind busy workers.
    for name, _ in schedules:
        assert app.tasks[name].queueing_lock == name


def test_a_six_field_cron_schedules_every_30_seconds() -> None:
    """The schedule periodic.py documents for cancellations: seconds are the sixth field."""
    app = build_app()
    app.periodic(cron="* * * * * */30", periodic_id="every-30s")(app.tasks["unitjobs.power"])
    deferrer = PeriodicDeferrer(registry=app.periodic_registry, max_delay=600)
    periodic = app.periodic_registry.periodic_tasks[("unitjobs.power", "every-30s")]
    ticks = list(deferrer.get_timestamps(periodic, since=1_800_000_000, until=1_800_000_100))
    assert ticks == [1_800_000_030, 1_800_000_060, 1_800_000_090]
