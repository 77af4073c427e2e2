"""The job machinery of one process: the procrastinate App, its connection pool, at most one worker.

``corral serve`` opens a runtime and, on the embedded database, runs a worker inside the web
process (``start_worker``); ``corral worker`` runs one in the foreground (``run_worker``) until
SIGTERM/SIGINT or cancellation. Either way a stop is graceful: no new job is fetched, running
jobs get ``shutdown_timeout`` seconds to finish, then they are interrupted and retried later.

The worker is supervised: procrastinate stops a worker whose database connection fails (a fetch,
a heartbeat, the listener), so a PostgreSQL restart would end job processing for good. Instead a
worker that ends without being asked is started again, with backoff, once the database answers.
``corral worker`` gives up after ``jobs.give_up_after_seconds`` without a healthy run and exits
non-zero (its service manager restarts it); the in-process worker of ``serve`` never gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

import psycopg
from procrastinate import App
from procrastinate.worker import Worker
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.config import Settings
from corral.db.session import create_engine, create_session_factory
from corral.db.url import libpq_conninfo
from corral.jobs.app import RESOURCES_KEY, WorkerResources, build_app
from corral.jobs.connector import FIRST_RETRY_SECONDS, ReconnectingConnector, next_delay
from corral.jobs.middleware import JobLogMiddleware, JobLogWriter
from corral.kit.logging import get_logger

log = get_logger("corral.jobs")

# With LISTEN/NOTIFY a new job starts at once; polling only catches what notifications cannot
# announce (retries coming due, scheduled jobs), so a few seconds is plenty.
DEFAULT_POLL_INTERVAL_SECONDS = 5.0
DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 30.0
# Time the worker gets, after interrupting jobs, to record their outcome and unregister.
_SHUTDOWN_MARGIN_SECONDS = 10.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A worker that ran this long before it died was healthy: its restart backoff and give-up budget
# start over. One that dies sooner (the database is still away, or came back broken) keeps
# counting towards giving up.
_HEALTHY_RUN_SECONDS = 30.0
_MAX_RESTART_DELAY_SECONDS = 10.0
# Bounds each connection attempt while waiting for the database to come back, and each attempt
# of the pool and the listener (a host that drops packets would otherwise hold them for minutes).
_CONNECT_TIMEOUT_SECONDS = 5
_POOL_WAIT_SECONDS = 2 * _CONNECT_TIMEOUT_SECONDS


class WorkerGaveUp(RuntimeError):
    """The worker kept dying, or the database stayed away, for longer than the give-up budget."""


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM/SIGINT ask for a graceful stop; a second one gets the default, immediate behaviour."""
    if threading.current_thread() is not threading.main_thread():
        log.warning("worker_signals_not_handled", reason="not the main thread")
        yield
        return
    loop = asyncio.get_running_loop()

    def handle(signum: int) -> None:
        log.info("worker_stop_requested", signal=signal.Signals(signum).name)
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        stop()

    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, handle, sig)
    try:
        yield
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)


class JobRuntime:
    def __init__(
        self,
        url: URL,
        settings: Settings,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self.settings = settings
        self.poll_interval = poll_interval
        self.shutdown_timeout = shutdown_timeout
        self._app: App | None = None
        self._pool: AsyncConnectionPool | None = None
        self._engine: AsyncEngine | None = None
        self._resources: WorkerResources | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._stop_requested = False
        self.restarts = 0  # workers started again after one died (tests and logs)
        self._between_workers = False  # one died; the next waits for backoff and the database

    @property
    def app(self) -> App:
        if self._app is None:
            raise RuntimeError("JobRuntime.open() has not been called")
        return self._app

    @property
    def worker_running(self) -> bool:
        return self._worker_task is not None and not self._worker_task.done()

    async def open(self) -> None:
        """Open procrastinate's pool on the resolved URL and build the App. Idempotent."""
        if self._app is not None:
            return
        # Small: the worker holds one connection to fetch, briefly one per finishing job, and
        # LISTENs on its own. Tasks use the SQLAlchemy engine made in _worker_resources.
        pool: AsyncConnectionPool = AsyncConnectionPool(
            libpq_conninfo(self.url),
            min_size=1,
            max_size=self.settings.jobs.concurrency + 2,
            open=False,
            name="corral-jobs",
            kwargs={
                "application_name": "corral-jobs",
                "connect_timeout": _CONNECT_TIMEOUT_SECONDS,
                # Notice a connection the server side dropped without a word (failover, a
                # middlebox restart): the LISTEN connection would otherwise wait on it forever.
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
            check=AsyncConnectionPool.check_connection,
            # How long fetching, heartbeats and the like wait for a connection. While the database
            # is away they fail after this (not psycopg_pool's 30 s, nor longer than the give-up
            # budget), the worker ends, and the supervisor takes over: restart with backoff, or
            # give up once the budget is spent.
            timeout=min(_POOL_WAIT_SECONDS, self.settings.jobs.give_up_after_seconds),
        )
        try:
            await pool.open(wait=True, timeout=30)
            connector = ReconnectingConnector()
            await connector.open_async(pool)
            app = build_app(connector)
            if not await app.check_connection_async():
                raise RuntimeError("the job queue's tables are missing: run `corral migrate` first")
        except BaseException:
            await pool.close()
            raise
        self._pool, self._app = pool, app

    def _worker_resources(self) -> WorkerResources:
        if self._resources is None:
            concurrency = self.settings.jobs.concurrency
            # A running job holds one connection for its transaction and briefly a second one to
            # write a log line on its own transaction.
            database = self.settings.database.model_copy(
                update={"pool_size": concurrency, "max_overflow": concurrency}
            )
            self._engine = create_engine(self.url, self.settings.model_copy(update={"database": database}))
            factory = create_session_factory(self._engine, self.settings)
            self._resources = WorkerResources(session_factory=factory, logs=JobLogWriter(factory))
        return self._resources

    def _new_worker(self) -> Worker:
        resources = self._worker_resources()
        jobs = self.settings.jobs
        return Worker(
            app=self.app,
            name="corral-worker",
            concurrency=jobs.concurrency,
            fetch_job_polling_interval=self.poll_interval,
            abort_job_polling_interval=self.poll_interval,
            shutdown_graceful_timeout=self.shutdown_timeout,
            listen_notify=True,
            delete_jobs="never",  # finished jobs stay for the timeline; jobs.prune removes them
            additional_context={RESOURCES_KEY: resources},
            install_signal_handlers=False,  # ours, in run_worker; uvicorn owns them in `serve`
            update_heartbeat_interval=jobs.heartbeat_seconds,
            stalled_worker_timeout=jobs.stalled_after_seconds,
            worker_middleware=[JobLogMiddleware(resources.logs)],
        )

    def _launch(self, *, give_up_after: float | None) -> asyncio.Task[None]:
        if self.worker_running:
            raise RuntimeError("this runtime already runs a worker")
        self._worker_resources()
        self._stop_requested = False
        self._between_workers = False
        # Stopping is cancelling this task: procrastinate's Worker.run turns a cancellation into a
        # graceful shutdown, and a cancel that lands between two runs ends the wait at once.
        task = asyncio.create_task(self._supervise(give_up_after), name="corral-job-worker")
        task.add_done_callback(self._worker_ended)
        self._worker_task = task
        log.info("worker_started", concurrency=self.settings.jobs.concurrency)
        return task

    async def _supervise(self, give_up_after: float | None) -> None:
        """Run workers one after another until asked to stop; see the module's docstring."""
        loop = asyncio.get_running_loop()
        delay = FIRST_RETRY_SECONDS
        failing_since: float | None = None
        while True:
            started = loop.time()
            try:
                await self._new_worker().run()  # type: ignore[no-untyped-call]
                reason = "a side task (listener, heartbeat) failed"
            except Exception as error:
                reason = f"{type(error).__name__}: {error}".strip()
            if self._stop_requested:  # its graceful shutdown failed; it is stopped all the same
                return
            ended = loop.time()
            if failing_since is None or ended - started >= _HEALTHY_RUN_SECONDS:
                failing_since, delay = ended, FIRST_RETRY_SECONDS
            log.error("worker_died", reason=reason[:500], restart_in_seconds=delay)
            self._between_workers = True
            while True:
                if give_up_after is not None and loop.time() - failing_since >= give_up_after:
                    raise WorkerGaveUp(f"no healthy worker for {give_up_after:g}s: {reason[:500]}")
                await asyncio.sleep(delay)
                delay = next_delay(delay, cap=_MAX_RESTART_DELAY_SECONDS)
                if await self._database_answers():
                    break
                log.warning("worker_waiting_for_database", retry_in_seconds=delay)
            self.restarts += 1
            self._between_workers = False
            log.info("worker_restarting", restarts=self.restarts)

    async def _database_answers(self) -> bool:
        """One bounded attempt on a connection of its own: the pool's would wait 30 s for a slot."""
        try:
            async with await psycopg.AsyncConnection.connect(
                libpq_conninfo(self.url), connect_timeout=_CONNECT_TIMEOUT_SECONDS, autocommit=True
            ) as connection:
                await connection.execute("SELECT 1 FROM procrastinate_workers LIMIT 1")
        except (psycopg.Error, OSError):
            return False
        return True

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stop_requested:
            log.info("worker_stopped")
        elif isinstance(error := task.exception(), WorkerGaveUp):
            log.error("worker_gave_up", error=str(error))
        elif error is not None:
            log.error("worker_crashed", error=repr(error), exc_info=error)

    def _request_stop(self) -> None:
        if self._worker_task is not None and not self._worker_task.done():
            self._stop_requested = True
            self._worker_task.cancel()

    @property
    def worker_lost(self) -> bool:
        """A worker was started here and none runs now, though none was asked to stop: one died and
        the next is not started yet, or its supervisor ended (/ready reports this)."""
        task = self._worker_task
        if task is None or self._stop_requested:
            return False
        return task.done() or self._between_workers

    async def start_worker(self) -> None:
        """Run a worker in this process, as a background asyncio task (until ``close``). It is
        started again whenever it dies, for as long as this process runs."""
        self._launch(give_up_after=None)

    async def run_worker(self) -> None:
        """Run a worker in the foreground until SIGTERM/SIGINT or cancellation, then stop gracefully.

        Raises :class:`WorkerGaveUp` when workers kept dying for ``jobs.give_up_after_seconds``.
        """
        task = self._launch(give_up_after=self.settings.jobs.give_up_after_seconds)
        with _stop_on_signals(self._request_stop):
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                await self.stop_worker()
                raise
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error

    async def stop_worker(self) -> None:
        """Stop the worker gracefully: running jobs get ``shutdown_timeout`` seconds to finish."""
        task = self._worker_task
        if task is None:
            return
        self._request_stop()
        done, _ = await asyncio.wait({task}, timeout=self.shutdown_timeout + _SHUTDOWN_MARGIN_SECONDS)
        if not done:
            log.error("worker_stop_timed_out")
        self._worker_task = None

    async def close(self) -> None:
        """Stop the worker (if any), then release every connection. Idempotent."""
        await self.stop_worker()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine, self._resources = None, None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        self._app = None
