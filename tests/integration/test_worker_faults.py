"""Job workers ride out database faults: a PostgreSQL restart, a killed worker, a database gone for good.

The real `corral worker` and `corral serve` run as subprocesses. The restarts happen on a
PostgreSQL of this module's own (tests/support/postgres.py), never on the machine's server.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

from corral.config import Settings
from corral.db.session import create_engine, create_session_factory, transaction
from corral.db.url import libpq_conninfo
from corral.jobs.service import job_service
from corral.kit.crypto import generate_key_spec
from tests.integration.test_jobs_support import harness
from tests.integration.test_jobs_support import wait_until as jobs_wait_until
from tests.support.postgres import ScratchPostgres, migrated_scratch_postgres
from tests.support.processes import CORRAL, clean_env, free_port, wait_until

HEARTBEAT_SECONDS = 0.5  # a worker silent for 1.5 s is dead: /ready notices a kill quickly
SECRETS = {
    "CORRAL_SECURITY__SECRET_KEY": secrets.token_urlsafe(48),
    "CORRAL_SECURITY__AUDIT_KEY": secrets.token_urlsafe(48),
    "CORRAL_SECURITY__ENCRYPTION_KEYS": generate_key_spec(),
}


@pytest.fixture(scope="module")
def scratch_postgres() -> Iterator[ScratchPostgres]:
    with migrated_scratch_postgres() as server:
        yield server


@pytest.fixture
def scratch_url(scratch_postgres: ScratchPostgres) -> URL:
    if not scratch_postgres.running:  # a test that left it down
        scratch_postgres.start()
    return scratch_postgres.url("corral")


class Processes:
    """`corral` subprocesses started by one test, their output kept for failure messages."""

    def __init__(self, folder: Path, url: URL, **settings: str) -> None:
        self.folder = folder
        self.env = clean_env(
            CORRAL_DATABASE_URL=libpq_conninfo(url),
            CORRAL_DATA_DIR=str(folder / "data"),
            CORRAL_JOBS__HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
            CORRAL_LOG__LEVEL="INFO",
            **SECRETS,
            **settings,
        )
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._outputs: list[IO[bytes]] = []

    def start(self, *args: str, **settings: str) -> subprocess.Popen[bytes]:
        name = f"{args[0]}-{len(self.started)}"
        output = (self.folder / f"{name}.log").open("wb")
        self._outputs.append(output)
        process = subprocess.Popen(
            [*CORRAL, *args],
            env={**self.env, **settings},
            cwd=self.folder,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        self.started.append((name, process))
        return process

    def output(self) -> str:
        parts = []
        for name, process in self.started:
            text = (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]
            parts.append(f"--- {name} (exit {process.poll()}):\n{text}")
        return "\n".join(parts)

    def wait_until(self, condition: Callable[[], bool], *, deadline_s: float, what: str) -> None:
        """``wait_until``, failing with what the processes printed."""
        try:
            wait_until(condition, deadline_s=deadline_s, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.output()}") from None

    def stop_all(self) -> None:
        for _, process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for output in self._outputs:
            output.close()


@pytest.fixture
def processes(tmp_path: Path, scratch_url: URL) -> Iterator[Processes]:
    started = Processes(tmp_path, scratch_url)
    yield started
    started.stop_all()


def _query(url: URL, sql: str, *params: object) -> tuple[Any, ...] | None:
    """One row from a fresh connection, or None while the database does not answer."""
    try:
        with psycopg.connect(libpq_conninfo(url), connect_timeout=2) as connection:
            return connection.execute(sql, params).fetchone()
    except psycopg.OperationalError:
        return None


def _now(url: URL) -> datetime:
    row = _query(url, "SELECT now()")
    assert row is not None
    value = row[0]
    assert isinstance(value, datetime)
    return value


def _workers_alive_since(url: URL, since: datetime) -> int:
    row = _query(url, "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > %s", since)
    return int(row[0]) if row else 0


def _job_status(url: URL, job_id: int) -> str | None:
    row = _query(url, "SELECT status FROM procrastinate_jobs WHERE id = %s", job_id)
    return str(row[0]) if row else None


def _defer(url: URL, settings: Settings) -> int:
    """Queue a real job (the periodic pruning, run now) the way the panel does."""

    async def defer() -> int:
        engine = create_engine(url, settings)
        try:
            async with transaction(create_session_factory(engine, settings)) as session:
                stamp = time.time_ns()  # a queueing lock of its own: each job is a new one
                return await job_service.defer(
                    session, "jobs.prune", queueing_lock=f"fault-{stamp}", timestamp=stamp
                )
        finally:
            await engine.dispose()

    return asyncio.run(defer())


def _ready(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_workers_ride_out_a_postgresql_restart(
    scratch_postgres: ScratchPostgres, scratch_url: URL, processes: Processes, settings: Settings
) -> None:
    port = free_port()
    worker = processes.start("worker")
    web = processes.start("serve", CORRAL_WEB__PORT=str(port), CORRAL_JOBS__IN_PROCESS_WORKER="true")
    before = _now(scratch_url)
    processes.wait_until(
        lambda: _workers_alive_since(scratch_url, before) == 2 and _ready(port) == 200,
        deadline_s=30,
        what="`corral worker` and the worker inside `corral serve` to be up\n",
    )

    scratch_postgres.stop()
    time.sleep(0.5)  # the deliberate outage
    scratch_postgres.start()
    restarted = _now(scratch_url)

    job_id = _defer(scratch_url, settings)
    processes.wait_until(
        lambda: _job_status(scratch_url, job_id) == "succeeded",
        deadline_s=20,
        what=f"job {job_id} deferred after the restart to succeed\n",
    )
    # Both workers are back (each registers anew and beats), with neither process restarted.
    processes.wait_until(
        lambda: _workers_alive_since(scratch_url, restarted) == 2,
        deadline_s=15,
        what="both workers to beat again after the restart\n",
    )
    assert worker.poll() is None, processes.output()
    assert web.poll() is None, processes.output()
    processes.wait_until(lambda: _ready(port) == 200, deadline_s=10, what="/ready to answer 200 again")


def test_ready_is_503_while_jobs_wait_and_no_worker_is_alive(
    scratch_url: URL, processes: Processes, settings: Settings
) -> None:
    port = free_port()
    processes.start("serve", CORRAL_WEB__PORT=str(port), CORRAL_JOBS__IN_PROCESS_WORKER="false")
    worker = processes.start("worker")
    before = _now(scratch_url)
    processes.wait_until(
        lambda: _workers_alive_since(scratch_url, before) == 1 and _ready(port) == 200,
        deadline_s=30,
        what="the panel and its worker to be up\n",
    )

    worker.kill()  # kill -9: no graceful stop, its registration stays behind
    worker.wait()
    job_id = _defer(scratch_url, settings)
    wait_until(lambda: _ready(port) == 503, deadline_s=10, what="/ready to notice the dead worker")
    checks = {check["name"]: check for check in httpx.get(f"http://127.0.0.1:{port}/ready").json()["checks"]}
    assert checks["job_queue"]["ok"] is False
    assert "no worker" in checks["job_queue"]["detail"]
    assert _job_status(scratch_url, job_id) == "todo"

    processes.start("worker")
    processes.wait_until(
        lambda: _job_status(scratch_url, job_id) == "succeeded" and _ready(port) == 200,
        deadline_s=30,
        what="a new worker to run the waiting job and /ready to answer 200\n",
    )


def test_worker_exits_non_zero_when_the_database_stays_away(
    scratch_postgres: ScratchPostgres, scratch_url: URL, processes: Processes
) -> None:
    worker = processes.start("worker", CORRAL_JOBS__GIVE_UP_AFTER_SECONDS="2")
    before = _now(scratch_url)
    processes.wait_until(
        lambda: _workers_alive_since(scratch_url, before) == 1,
        deadline_s=30,
        what="the worker to be up\n",
    )

    scratch_postgres.stop()  # and it stays down
    try:
        code = worker.wait(timeout=30)
    finally:
        scratch_postgres.start()
    assert code == 1, processes.output()
    assert "the job worker gave up" in (processes.folder / "worker-0.log").read_text()


async def test_the_in_process_worker_is_started_again_after_it_died(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    """`serve`'s worker: it never gives up, and runs jobs again once the database lets it in."""
    url = fresh_database()
    jobs = settings.jobs.model_copy(update={"heartbeat_seconds": 0.2, "give_up_after_seconds": 1.0})
    async with harness(url, settings.model_copy(update={"jobs": jobs})) as h:
        await h.runtime.start_worker()
        await h.wait_for_status(await h.defer("testjobs.echo", message="before"), "succeeded")

        admin = await psycopg.AsyncConnection.connect(
            libpq_conninfo(url.set(database="postgres")), autocommit=True
        )
        database = sql.Identifier(str(url.database))
        async with admin:
            # Even a superuser is refused now, and the worker's own connections are cut.
            await admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database))
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = 'corral-jobs'",
                (url.database,),
            )

            async def died() -> bool:
                return h.runtime.worker_lost

            await jobs_wait_until(died, what="the worker to die", within=15)
            assert h.runtime.worker_running  # its supervisor waits for the database
            assert h.runtime.restarts == 0
            await admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))

        job_id = await h.defer("testjobs.echo", message="after")
        await h.wait_for_status(job_id, "succeeded", within=20)
        assert h.runtime.restarts >= 1
        assert not h.runtime.worker_lost
