"""Jobs running in real workers on a fresh database: retries, logs, locks, shutdown, recovery."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from datetime import datetime

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import URL

from corral.config import Settings
from corral.db.session import transaction
from corral.db.url import libpq_conninfo
from corral.jobs.errors import JobNotFound
from corral.jobs.periodic import PERIODIC_QUEUE
from corral.jobs.schemas import JobRead
from corral.jobs.service import job_service
from corral.models.jobs import JobLog
from tests.integration.test_jobs_support import SHUTDOWN_TIMEOUT, harness, wait_until


def _interval(job: JobRead) -> tuple[datetime, datetime]:
    start = next(line.logged_at for line in job.logs if line.message == "start")
    end = next(line.logged_at for line in job.logs if line.message == "end")
    return start, end


async def _workers_registered(url: URL) -> int:
    async with await psycopg.AsyncConnection.connect(libpq_conninfo(url)) as connection:
        cursor = await connection.execute("SELECT count(*) FROM procrastinate_workers")
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_worker_runs_a_deferred_job_and_its_log_lines_are_kept(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with harness(fresh_database(), settings) as h:
        await h.runtime.start_worker()
        assert h.runtime.worker_running
        job_id = await h.defer("testjobs.echo", message="hello from a job")

        job = await h.wait_for_status(job_id, "succeeded")
        assert job.attempts == 1
        assert [(line.attempt, line.level, line.message) for line in job.logs] == [
            (1, "info", "hello from a job"),
            (1, "warning", "hello from a job (warning)"),
        ]
        assert job.logs[0].logged_at <= job.logs[1].logged_at
        assert job.deferred_at is not None
        assert job.started_at is not None
        assert job.finished_at is not None
        # Event times are PostgreSQL's now(), the start of each event's transaction: the worker's
        # fetch can begin a moment before the deferring transaction commits, so "deferred" and
        # "started" may be out of order by milliseconds. Finished always follows both.
        assert abs((job.started_at - job.deferred_at).total_seconds()) < 30
        assert job.deferred_at <= job.finished_at
        assert job.started_at <= job.finished_at


async def test_a_failing_job_is_retried_with_each_error_kept(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with harness(fresh_database(), settings) as h:
        await h.runtime.start_worker()
        # FAST_RETRY allows 3 attempts: fails on 1 and 2, succeeds on 3.
        recovers = await h.defer("testjobs.fail_until", succeed_on=3)
        # Never succeeds: fails 3 times, then gives up.
        gives_up = await h.defer("testjobs.fail_until", succeed_on=10)

        job = await h.wait_for_status(recovers, "succeeded")
        assert job.attempts == 3
        errors = [(line.attempt, line.message) for line in job.logs if line.level == "error"]
        assert [attempt for attempt, _ in errors] == [1, 2]
        assert errors[0][1].startswith("RuntimeError: boom on attempt 1; retrying at ")
        assert [line.attempt for line in job.logs if line.level == "info"] == [1, 2, 3]

        failed = await h.wait_for_status(gives_up, "failed")
        assert failed.attempts == 3
        assert failed.can_retry
        assert failed.last_error == "RuntimeError: boom on attempt 3; giving up"
        assert [line.attempt for line in failed.logs if line.level == "error"] == [1, 2, 3]


async def test_a_failed_attempt_rolls_back_its_work_but_keeps_its_log(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with harness(fresh_database(), settings) as h:
        await h.runtime.start_worker()
        job_id = await h.defer("testjobs.always_fail", marker="in-transaction-row")

        job = await h.wait_for_status(job_id, "failed")
        assert [(line.level, line.message) for line in job.logs] == [
            ("info", "about to fail"),
            ("error", "ValueError: refused in-transaction-row; giving up"),
        ]  # the row the task wrote in its own transaction is gone with the rollback


async def test_a_job_defers_follow_ups_in_its_own_transaction(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with harness(fresh_database(), settings) as h:
        await h.runtime.start_worker()
        kept = await h.defer("testjobs.chain", fail=False)
        dropped = await h.defer("testjobs.chain", fail=True)
        await h.wait_for_status(kept, "succeeded")
        failed = await h.wait_for_status(dropped, "failed")
        assert failed.last_error == "PermanentJobError: changed my mind; giving up"

        async def follow_ups() -> list[JobRead] | None:
            async with h.sessions() as session:
                jobs = await job_service.list(session, task_name="testjobs.echo")
            return list(jobs) if jobs and all(job.status == "succeeded" for job in jobs) else None

        done = await wait_until(follow_ups, what="the follow-up job to run")
        assert [job.args for job in done] == [{"message": f"follow-up of {kept}"}]


async def test_a_failed_job_can_be_retried_by_hand(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with harness(fresh_database(), settings) as h:
        await h.runtime.start_worker()
        job_id = await h.defer("testjobs.always_fail", marker="retry-me")
        first = await h.wait_for_status(job_id, "failed")

        async with transaction(h.sessions) as session:
            await job_service.retry(session, job_id)

        async def failed_again() -> JobRead | None:
            job = await h.job(job_id)
            errors = [line for line in job.logs if line.level == "error"]
            return job if job.status == "failed" and len(errors) == 2 else None

        again = await wait_until(failed_again, what="the retried job to fail a second time")
        assert again.attempts > first.attempts
        assert again.finished_at is not None
        assert first.finished_at is not None
        assert again.finished_at > first.finished_at


async def test_a_lock_serialises_jobs_and_no_lock_lets_them_overlap(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    assert settings.jobs.concurrency >= 2
    async with harness(fresh_database(), settings) as h:
        locked = [await h.defer("testjobs.hold", key="srv-1", seconds=0.4) for _ in range(2)]
        free = [await h.defer("testjobs.hold_unlocked", key="srv-2", seconds=0.4) for _ in range(2)]
        await h.runtime.start_worker()

        first, second = [_interval(await h.wait_for_status(job_id, "succeeded")) for job_id in locked]
        assert first[1] <= second[0], "the second job with the same lock started before the first ended"

        a, b = [_interval(await h.wait_for_status(job_id, "succeeded")) for job_id in free]
        # Without a lock they run side by side: each starts before the other ends.
        assert a[0] < b[1]
        assert b[0] < a[1]


async def test_close_waits_for_running_jobs(fresh_database: Callable[[], URL], settings: Settings) -> None:
    url = fresh_database()
    async with harness(url, settings) as h:
        await h.runtime.start_worker()
        job_id = await h.defer("testjobs.hold", key="graceful", seconds=1.0)

        async def started() -> bool:
            return any(line.message == "start" for line in (await h.job(job_id)).logs)

        await wait_until(started, what="the job to start")
        assert await _workers_registered(url) == 1
        await h.runtime.close()

        assert not h.runtime.worker_running
        job = await h.job(job_id)
        assert job.status == "succeeded"
        assert [line.message for line in job.logs] == ["start", "end"]
        assert await _workers_registered(url) == 0


async def test_a_job_outliving_the_shutdown_deadline_is_interrupted_and_retried_later(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with harness(fresh_database(), settings) as h:
        await h.runtime.start_worker()
        job_id = await h.defer("testjobs.hold_retryable", seconds=SHUTDOWN_TIMEOUT * 20)

        async def started() -> bool:
            return any(line.message == "start" for line in (await h.job(job_id)).logs)

        await wait_until(started, what="the job to start")
        loop = asyncio.get_running_loop()
        began = loop.time()
        await h.runtime.stop_worker()
        assert loop.time() - began < SHUTDOWN_TIMEOUT + 5

        job = await h.job(job_id)
        assert job.status == "todo"  # back in the queue, for the next worker (after its backoff)
        assert job.attempts == 1
        assert [(line.level, line.message) for line in job.logs] == [
            ("info", "start"),
            ("warning", "Interrupted: the worker stopped"),
        ]


async def test_run_worker_stops_gracefully_on_sigterm(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    url = fresh_database()
    async with harness(url, settings) as h:
        foreground = asyncio.create_task(h.runtime.run_worker())

        async def running() -> bool:
            # The signal handlers are installed in the same step that starts the worker.
            return h.runtime.worker_running and await _workers_registered(url) == 1

        await wait_until(running, what="the foreground worker to start")
        job_id = await h.defer("testjobs.hold", key="sigterm", seconds=0.5)

        async def started() -> bool:
            return any(line.message == "start" for line in (await h.job(job_id)).logs)

        await wait_until(started, what="the job to start")
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(foreground, timeout=SHUTDOWN_TIMEOUT + 10)  # returns, no exception

        assert not h.runtime.worker_running
        assert (await h.job(job_id)).status == "succeeded"
        assert await _workers_registered(url) == 0


async def test_jobs_of_a_dead_worker_are_recovered(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    url = fresh_database()
    async with harness(url, settings) as h:
        retried = await h.defer("testjobs.fail_until", succeed_on=1)  # has retries left
        abandoned = await h.defer("testjobs.echo", message="no retries")  # retry=None
        # A worker that fetched both jobs, then stopped beating five minutes ago (kill -9).
        async with transaction(h.sessions) as session:
            dead = (
                await session.execute(
                    text(
                        "INSERT INTO procrastinate_workers (last_heartbeat)"
                        " VALUES (now() - interval '5 minutes') RETURNING id"
                    )
                )
            ).scalar_one()
            for expected in (retried, abandoned):
                fetched = await session.execute(
                    text("SELECT id FROM procrastinate_fetch_job_v2(NULL, :worker)"), {"worker": dead}
                )
                assert fetched.scalar_one() == expected
        assert (await h.job(retried)).status == "doing"

        await h.defer("jobs.recover_stalled", timestamp=0)
        await h.runtime.start_worker()

        job = await h.wait_for_status(retried, "succeeded")
        assert [(line.attempt, line.level) for line in job.logs] == [(1, "error"), (2, "info")]
        assert job.logs[0].message == (
            "WorkerLost: the worker running this attempt stopped responding; retrying"
        )
        failed = await h.wait_for_status(abandoned, "failed")
        assert (
            failed.last_error == "WorkerLost: the worker running this attempt stopped responding; giving up"
        )


async def test_prune_removes_old_jobs_and_their_log_lines(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with harness(fresh_database(), settings) as h:
        await h.runtime.start_worker()
        month_old = await h.defer("testjobs.always_fail", marker="old")
        recent = await h.defer("testjobs.always_fail", marker="recent")
        periodic_success = await h.defer("testjobs.echo", message="periodic run")
        ordinary_success = await h.defer("testjobs.echo", message="ordinary run")
        for job_id in (month_old, recent):
            await h.wait_for_status(job_id, "failed")
        for job_id in (periodic_success, ordinary_success):
            await h.wait_for_status(job_id, "succeeded")
        async with transaction(h.sessions) as session:
            # Age the jobs as far as procrastinate's event log says, and file one as a periodic run.
            age = text("UPDATE procrastinate_events SET at = at - CAST(:age AS interval) WHERE job_id = :id")
            await session.execute(age, {"id": month_old, "age": "31 days"})
            await session.execute(age, {"id": periodic_success, "age": "2 days"})
            await session.execute(age, {"id": ordinary_success, "age": "2 days"})
            await session.execute(
                text("UPDATE procrastinate_jobs SET queue_name = :queue WHERE id = :id"),
                {"id": periodic_success, "queue": PERIODIC_QUEUE},
            )

        prune = await h.defer("jobs.prune", timestamp=0)
        await h.wait_for_status(prune, "succeeded")

        async with h.sessions() as session:
            for gone in (month_old, periodic_success):
                with pytest.raises(JobNotFound):
                    await job_service.get(session, gone)
            counts = await session.execute(select(JobLog.job_id, func.count()).group_by(JobLog.job_id))
            by_job = {job_id: count for job_id, count in counts}
        assert month_old not in by_job
        assert periodic_success not in by_job
        assert by_job[recent] == 2  # "about to fail" and the error
        assert by_job[ordinary_success] == 2
        assert (await h.job(prune)).logs[-1].message.endswith("and 4 log line(s)")
