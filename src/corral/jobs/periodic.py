"""Every periodic job Corral runs, in one list: :data:`PERIODIC`.

Each worker runs procrastinate's periodic deferrer; the database lets exactly one job through per
scheduled time however many workers there are, and a worker that starts late defers a run it
missed by up to 10 minutes (longer outages skip to the next one).

How to add one:

1. Declare the task in its domain's ``tasks.py`` (module listed in ``TASK_MODULES``), with a
   ``queueing_lock`` so runs do not pile up when workers fall behind. It may take a keyword
   ``timestamp: int``: the Unix time the run was scheduled for (useful to bill "the hour ending at")::

       @task("billing.charge", queueing_lock="billing.charge")
       async def charge(ctx: TaskContext, *, timestamp: int) -> None: ...

2. Add a line to ``PERIODIC``. Cron is evaluated in UTC: ``minute hour day month weekday``, plus an
   optional sixth field for seconds. The schedules the architecture calls for::

       Periodic("billing.charge", cron="0 * * * *"),                  # hourly
       Periodic("servers.process_cancellations", cron="* * * * * */30"),  # every 30 s (6th field)
       Periodic("nodes.reconcile", cron="* * * * *"),                 # every minute
       Periodic("nodes.collect_stats", cron="* * * * *"),             # every minute
       Periodic("servers.cleanup_orphans", cron="40 * * * *"),        # hourly

   Never emulate a short period with a loop inside a longer one: a job must end so its status,
   retries and locks mean something. The same task on two schedules needs distinct ``periodic_id``s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import croniter  # type: ignore[import-untyped]  # procrastinate's cron parser; no stubs
from procrastinate import App
from procrastinate.tasks import ConfigureTaskOptions

from corral.jobs.app import Backoff, TaskContext, task
from corral.jobs.errors import TaskDefinitionError

# Periodic runs go to their own queue so jobs.prune can drop their successes after a day (an
# every-minute task would otherwise keep 43,000 rows a month); their failures stay 30 days.
PERIODIC_QUEUE = "periodic"


@dataclass(frozen=True)
class Periodic:
    task: str
    cron: str
    periodic_id: str = ""
    # Extra arguments for every run, besides the ``timestamp`` procrastinate adds.
    kwargs: Mapping[str, Any] = field(default_factory=dict)


PERIODIC: tuple[Periodic, ...] = (
    Periodic("audit.checkpoint", cron="0 * * * *"),
    # Finished jobs older than 30 days, then the log lines of deleted jobs. Off the hour, when
    # other hourly work runs.
    Periodic("jobs.prune", cron="17 3 * * *"),
    # Expired passkey and second-factor challenges (each lives five minutes).
    Periodic("auth.prune_challenges", cron="41 * * * *"),
    # A worker that was killed leaves its jobs "doing", holding their locks; put them back.
    Periodic("jobs.recover_stalled", cron="* * * * *"),
    Periodic("nodes.health_check_all", cron="* * * * *"),  # queues one nodes.health_check per node
    # Compare every reachable node with the panel; queues one servers.reconcile_node per node.
    Periodic("servers.reconcile", cron="* * * * *"),
    # Due server cancellations (seed 000 8.2); the sixth cron field is seconds.
    Periodic("servers.process_cancellations", cron="* * * * * */30"),
    # Orders whose setup was never finished: remind the owner, then release them (panel setting).
    Periodic("servers.release_unfinished", cron="23 * * * *"),
)


# The audit domain has no tasks.py yet; this one only exists to be scheduled. It can move to
# corral/audit/tasks.py (listed in TASK_MODULES) without renaming it.
@task("audit.checkpoint", queueing_lock="audit.checkpoint", retry=Backoff(attempts=3, base_seconds=30))
async def audit_checkpoint(ctx: TaskContext, *, timestamp: int) -> None:
    """Sign the head of the audit chain, so truncation and rewrites can be detected later."""
    from corral.audit.service import audit  # imported on use: the audit domain may defer jobs

    checkpoint = await audit.checkpoint(ctx.session)
    if checkpoint is None:
        await ctx.log("The audit log is empty: nothing to checkpoint")
    else:
        await ctx.log(f"Checkpoint at audit event {checkpoint.seq}")


def register_periodic(app: App) -> None:
    """Attach every schedule in PERIODIC to its task in ``app`` (called by ``build_app``)."""
    for entry in PERIODIC:
        registered = app.tasks.get(entry.task)
        if registered is None:
            raise TaskDefinitionError(f"periodic {entry.task!r}: no such task")
        if not croniter.croniter.is_valid(entry.cron):
            raise TaskDefinitionError(f"periodic {entry.task!r}: invalid cron {entry.cron!r}")
        # A fresh dict per App: procrastinate writes each run's timestamp into it.
        options: ConfigureTaskOptions = {"task_kwargs": dict(entry.kwargs), "queue": PERIODIC_QUEUE}
        app.periodic(cron=entry.cron, periodic_id=entry.periodic_id, **options)(registered)
