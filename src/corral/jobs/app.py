"""Corral's procrastinate App: the task registry, the retry policy and the wrapper each task runs in.

A domain declares its tasks in its own ``tasks.py``::

    from corral.jobs.app import Backoff, TaskContext, task

    @task("server.provision", lock="server:{server_id}", retry=Backoff(attempts=8))
    async def provision(ctx: TaskContext, *, server_id: int) -> None:
        server = await servers_repository.get(ctx.session, server_id)   # reload: args are ids only
        await ctx.log("Creating the disk")
        ...

and lists that module once in :data:`TASK_MODULES`. The body runs in a transaction the wrapper
commits when it returns and rolls back when it raises; a raise is retried with exponential backoff
(``PermanentJobError`` is not). Tasks must be safe to run twice: a worker can die after the work
and before the commit.

The App is built by :func:`build_app` for each :class:`~corral.jobs.runtime.JobRuntime` rather than
at import: its connection pool needs a URL that may only exist once an embedded PostgreSQL has
started, and tests run several runtimes against different databases in one process.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import string
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Concatenate, TypeVar

import structlog
from procrastinate import App, BaseConnector, BaseRetryStrategy, JobContext, PsycopgConnector, RetryDecision
from procrastinate.jobs import Job
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from corral.db.session import transaction
from corral.drivers.base import PermanentDriverError, UnsupportedOperation
from corral.jobs.errors import (
    InvalidJobArguments,
    PermanentJobError,
    TaskDefinitionError,
    UnknownTask,
    WorkerLost,
)
from corral.jobs.middleware import JobLogWriter, attempt_of
from corral.jobs.schemas import LogLevel
from corral.kit.logging import get_logger

# Every module that declares tasks. Workers import them all before fetching a job; a job whose
# task is in a module missing here fails with "task not found".
TASK_MODULES: tuple[str, ...] = (
    "corral.jobs.tasks",
    "corral.jobs.periodic",
    "corral.notifications.tasks",
    "corral.auth.tasks",
    "corral.servers.tasks",
    "corral.servers.cancellation_tasks",
    "corral.servers.unfinished_tasks",
    "corral.nodes.tasks",
)

QUEUE = "default"
# Where a worker hands its resources (session factory, log writer) to the task wrapper.
RESOURCES_KEY = "corral"

_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
log = get_logger("corral.jobs")
# Errors that say trying again cannot help: the task's own refusal, and a hypervisor's (an image
# the node does not have, an operation the driver does not offer). Retrying them only repeats the
# refusal and delays the state the owner can act on.
NEVER_RETRY: tuple[type[BaseException], ...] = (PermanentJobError, PermanentDriverError, UnsupportedOperation)


class Backoff(BaseRetryStrategy):
    """Retry with exponential backoff: wait ``base``, ``2·base``, ``4·base`` … (at most ``cap``) seconds.

    ``attempts`` counts every run, the first included. Only ``retry_on`` errors are retried, and
    never those in :data:`NEVER_RETRY`; an attempt cut short by a worker shutdown or a lost worker is
    always retried while attempts remain.
    """

    def __init__(
        self,
        *,
        attempts: int = 5,
        base_seconds: float = 2.0,
        cap_seconds: float = 600.0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        if attempts < 1 or base_seconds < 0 or cap_seconds < base_seconds:
            raise ValueError("Backoff needs attempts >= 1 and 0 <= base_seconds <= cap_seconds")
        self.attempts = attempts
        self.base_seconds = base_seconds
        self.cap_seconds = cap_seconds
        self.retry_on = retry_on

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt ``attempt`` (counted from 1) has failed."""
        return min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt - 1, 32))

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        attempt = job.attempts + 1
        if attempt >= self.attempts or isinstance(exception, NEVER_RETRY):
            return None
        interrupted = isinstance(exception, asyncio.CancelledError | WorkerLost)
        if not interrupted and not isinstance(exception, self.retry_on):
            return None
        return RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=self.delay(attempt)))

    def __repr__(self) -> str:
        return f"Backoff(attempts={self.attempts}, base_seconds={self.base_seconds})"


DEFAULT_RETRY = Backoff()


@dataclass(frozen=True)
class WorkerResources:
    """What a worker lends every task it runs."""

    session_factory: async_sessionmaker[AsyncSession]
    logs: JobLogWriter


@dataclass(frozen=True)
class TaskContext:
    """Handed to a task body: its session (one transaction per attempt) and its log."""

    session: AsyncSession
    job: JobContext
    logs: JobLogWriter

    @property
    def job_id(self) -> int:
        job_id = self.job.job.id
        assert job_id is not None  # a running job always has one
        return job_id

    @property
    def attempt(self) -> int:
        """This attempt's number, counted from 1."""
        return attempt_of(self.job)

    @property
    def task_name(self) -> str:
        return self.job.job.task_name

    async def log(self, message: str, *, level: LogLevel = "info") -> None:
        """Add a line to the job's timeline. It is committed at once and kept if the attempt fails."""
        await self.logs.write(job_id=self.job_id, attempt=self.attempt, level=level, message=message)
        log.debug("job_log", message=message, level=level)

    def should_abort(self) -> bool:
        """True once someone asked to abort this job: stop at the next safe point."""
        return self.job.should_abort()


@dataclass(frozen=True)
class GiveUp:
    """Handed to a task's ``on_give_up`` hook once its job has failed for good: no attempt is left,
    the error is one that is never retried, or its worker was lost on the last attempt.

    The hook runs in a transaction of its own (the failed attempt's was rolled back), so it can
    leave the rows the job was changing in a state a person can act on ("failed", with why).
    """

    session: AsyncSession
    arguments: Mapping[str, Any]
    error: BaseException
    job_id: int
    attempt: int
    logs: JobLogWriter

    @property
    def reason(self) -> str:
        """The error as a person reads it: a driver's message, else the error's name and text."""
        message = str(getattr(self.error, "message", "") or self.error)
        return message if message else type(self.error).__name__

    async def log(self, message: str, *, level: LogLevel = "warning") -> None:
        await self.logs.write_quietly(job_id=self.job_id, attempt=self.attempt, level=level, message=message)


GiveUpHook = Callable[[GiveUp], Awaitable[None]]
TaskFunc = Callable[Concatenate[TaskContext, ...], Awaitable[None]]
F = TypeVar("F", bound=TaskFunc)


def _template_fields(template: str | None) -> tuple[str, ...]:
    if template is None:
        return ()
    fields = []
    for _, field_name, format_spec, conversion in string.Formatter().parse(template):
        if field_name is None:
            continue
        if not field_name.isidentifier() or format_spec or conversion:
            raise TaskDefinitionError(f"lock template {template!r}: use plain fields like {{server_id}}")
        fields.append(field_name)
    return tuple(fields)


def _render(template: str | None, arguments: Mapping[str, object]) -> str | None:
    fields = _template_fields(template)
    if template is None or not fields:
        return template
    missing = [name for name in fields if name not in arguments]
    if missing:
        raise InvalidJobArguments(f"lock {template!r} needs {', '.join(missing)}")
    return template.format_map({name: arguments[name] for name in fields})


@dataclass(frozen=True)
class TaskSpec:
    """A task as declared by a domain, before any App exists."""

    name: str
    func: TaskFunc
    lock: str | None
    queueing_lock: str | None
    retry: Backoff | None
    priority: int
    signature: inspect.Signature
    on_give_up: GiveUpHook | None = None

    def will_retry(self, error: BaseException, job: Job) -> bool:
        """Whether procrastinate will run the job again after ``error`` ended this attempt."""
        return self.retry is not None and self.retry.get_retry_decision(exception=error, job=job) is not None

    @property
    def accepts_timestamp(self) -> bool:
        """Periodic jobs receive the ``timestamp`` they were scheduled for; a task may ignore it."""
        return "timestamp" in self.signature.parameters

    def static_lock(self) -> str | None:
        """The lock when it needs no arguments (periodic jobs are deferred without ours)."""
        return None if _template_fields(self.lock) else self.lock

    def static_queueing_lock(self) -> str | None:
        return None if _template_fields(self.queueing_lock) else self.queueing_lock

    def lock_for(self, arguments: Mapping[str, object]) -> str | None:
        return _render(self.lock, arguments)

    def queueing_lock_for(self, arguments: Mapping[str, object]) -> str | None:
        return _render(self.queueing_lock, arguments)

    def check_arguments(self, arguments: Mapping[str, object]) -> None:
        """Refuse, at the caller, a job the task could never run."""
        try:
            self.signature.bind(None, **arguments)
        except TypeError as error:
            raise InvalidJobArguments(f"{self.name}: {error}") from None


_registry: dict[str, TaskSpec] = {}


def _make_spec(
    name: str,
    func: TaskFunc,
    *,
    lock: str | None,
    queueing_lock: str | None,
    retry: Backoff | None,
    priority: int,
    on_give_up: GiveUpHook | None = None,
) -> TaskSpec:
    where = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"
    if not _TASK_NAME.match(name):
        raise TaskDefinitionError(f"{where}: task names are 'domain.verb' in lower case, got {name!r}")
    if not inspect.iscoroutinefunction(func):
        raise TaskDefinitionError(f"{where}: a task must be an async function")
    signature = inspect.signature(func)
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TaskDefinitionError(f"{where}: the first parameter receives the TaskContext")
    keywords = set()
    for parameter in parameters[1:]:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            raise TaskDefinitionError(f"{where}: job arguments are passed by keyword")
        keywords.add(parameter.name)
    for template in (lock, queueing_lock):
        unknown = [field for field in _template_fields(template) if field not in keywords]
        if unknown:
            raise TaskDefinitionError(f"{where}: {template!r} names unknown arguments {unknown}")
    return TaskSpec(
        name=name,
        func=func,
        lock=lock,
        queueing_lock=queueing_lock,
        retry=retry,
        priority=priority,
        signature=signature,
        on_give_up=on_give_up,
    )


def task(
    name: str,
    *,
    lock: str | None = None,
    queueing_lock: str | None = None,
    retry: Backoff | None = DEFAULT_RETRY,
    priority: int = 0,
    on_give_up: GiveUpHook | None = None,
) -> Callable[[F], F]:
    """Declare ``async def body(ctx: TaskContext, *, some_id: int) -> None`` as task ``name``.

    ``lock`` (e.g. ``"server:{server_id}"``, filled from the job's arguments) keeps jobs with the
    same lock from running at the same time, in the order they were deferred. ``queueing_lock``
    refuses a second job while one with the same value is waiting. ``retry=None`` runs once.
    ``on_give_up`` runs (see :class:`GiveUp`) when the job fails for good, so no job leaves what it
    was changing half-way ("Building" forever) when its retries run out.
    """

    def register(func: F) -> F:
        spec = _make_spec(
            name,
            func,
            lock=lock,
            queueing_lock=queueing_lock,
            retry=retry,
            priority=priority,
            on_give_up=on_give_up,
        )
        existing = _registry.get(name)
        if existing is not None and (
            getattr(existing.func, "__module__", None),
            getattr(existing.func, "__qualname__", None),
        ) != (getattr(func, "__module__", None), getattr(func, "__qualname__", None)):
            raise TaskDefinitionError(f"task {name!r} is declared twice")
        _registry[name] = spec
        return func

    return register


def import_task_modules() -> None:
    """Import every module in TASK_MODULES so their ``@task`` declarations have run."""
    for path in TASK_MODULES:
        importlib.import_module(path)


def registered_tasks() -> Mapping[str, TaskSpec]:
    import_task_modules()
    return MappingProxyType(_registry)


def get_spec(name: str) -> TaskSpec:
    spec = _registry.get(name)
    if spec is None:
        import_task_modules()
        spec = _registry.get(name)
    if spec is None:
        raise UnknownTask(name)
    return spec


def _runner(spec: TaskSpec) -> Callable[..., Awaitable[None]]:
    """The function procrastinate calls: opens the attempt's transaction and runs the body in it."""

    async def run(context: JobContext, **arguments: Any) -> None:
        resources = context.additional_context.get(RESOURCES_KEY)
        if not isinstance(resources, WorkerResources):
            raise RuntimeError("Corral tasks run in a worker started by JobRuntime")
        if not spec.accepts_timestamp:
            arguments.pop("timestamp", None)
        with structlog.contextvars.bound_contextvars(job_id=context.job.id, task=spec.name):
            try:
                async with transaction(resources.session_factory) as session:
                    ctx = TaskContext(session=session, job=context, logs=resources.logs)
                    await spec.func(ctx, **arguments)
            except Exception as error:
                if not spec.will_retry(error, context.job):
                    await give_up(spec, resources, context.job, arguments, error)
                raise

    run.__name__ = getattr(spec.func, "__name__", "run")
    run.__qualname__ = spec.name
    run.__module__ = getattr(spec.func, "__module__", __name__)
    return run


async def give_up(
    spec: TaskSpec,
    resources: WorkerResources,
    job: Job,
    arguments: Mapping[str, Any],
    error: BaseException,
) -> None:
    """Run ``spec``'s give-up hook for ``job`` on its own transaction. A hook that fails is logged
    and left at that: the job's own error is what its timeline must show."""
    if spec.on_give_up is None:
        return
    assert job.id is not None  # a job that ran has an id
    try:
        async with transaction(resources.session_factory) as session:
            await spec.on_give_up(
                GiveUp(
                    session=session,
                    arguments=arguments,
                    error=error,
                    job_id=job.id,
                    attempt=attempt_of_job(job),
                    logs=resources.logs,
                )
            )
    except Exception as failure:
        log.error("job_give_up_hook_failed", job_id=job.id, task=spec.name, error=repr(failure))


def attempt_of_job(job: Job) -> int:
    """The attempt that just ended, counted from 1 (procrastinate counts the ended ones)."""
    return job.attempts + 1


def build_app(connector: BaseConnector | None = None) -> App:
    """A procrastinate App holding every registered task and periodic schedule.

    The connector is opened later (``JobRuntime.open``); deferring on a caller's connection never
    needs it, so an unopened App is enough to inspect or defer.
    """
    import_task_modules()
    app = App(connector=connector or PsycopgConnector(), import_paths=TASK_MODULES)
    for spec in _registry.values():
        app.task(
            name=spec.name,
            pass_context=True,
            retry=spec.retry or False,
            queue=QUEUE,
            priority=spec.priority,
            lock=spec.static_lock(),
            queueing_lock=spec.static_queueing_lock(),
        )(_runner(spec))

    from corral.jobs.periodic import register_periodic  # periodic.py declares tasks with this module

    register_periodic(app)
    return app
