"""The jobs domain's own tasks: housekeeping of the queue itself (scheduled in periodic.py)."""

from __future__ import annotations

from procrastinate import builtin_tasks
from procrastinate.jobs import Job, Status

from corral.jobs import repository
from corral.jobs.app import RESOURCES_KEY, Backoff, TaskContext, WorkerResources, get_spec, give_up, task
from corral.jobs.errors import UnknownTask, WorkerLost
from corral.jobs.periodic import PERIODIC_QUEUE
from corral.kit.logging import get_logger

log = get_logger("corral.jobs")

# Finished jobs (and their log lines) are kept this long for the timeline pages.
KEEP_FINISHED_HOURS = 30 * 24
# Successful runs of periodic jobs say little after a day.
KEEP_PERIODIC_SUCCESSES_HOURS = 24
# procrastinate workers beat every 10 s; three missed beats and the worker is presumed dead.
STALLED_AFTER_SECONDS = 30.0


@task("jobs.prune", queueing_lock="jobs.prune", retry=Backoff(attempts=3, base_seconds=60))
async def prune(ctx: TaskContext, *, timestamp: int) -> None:
    """Delete jobs finished more than 30 days ago (periodic successes: 1 day), then their log lines."""
    await builtin_tasks.remove_old_jobs(
        ctx.job, max_hours=KEEP_PERIODIC_SUCCESSES_HOURS, queue=PERIODIC_QUEUE
    )
    await builtin_tasks.remove_old_jobs(
        ctx.job,
        max_hours=KEEP_FINISHED_HOURS,
        remove_failed=True,
        remove_cancelled=True,
        remove_aborted=True,
    )
    removed = await repository.delete_orphan_logs(ctx.session)
    days = KEEP_FINISHED_HOURS // 24
    await ctx.log(f"Removed jobs finished over {days} days ago and {removed} log line(s)")


@task("jobs.recover_stalled", queueing_lock="jobs.recover_stalled", retry=None)
async def recover_stalled(ctx: TaskContext, *, timestamp: int) -> None:
    """Give the jobs of dead workers another attempt (or fail them), releasing their locks.

    Without this a ``kill -9`` or a lost host leaves jobs "doing" forever, and every later job
    with the same lock (all of one server's work) waits behind them.
    """
    manager = ctx.job.app.job_manager
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_SECONDS):
        assert job.id is not None
        task_ = ctx.job.app.tasks.get(job.task_name)
        error = WorkerLost("the worker running this attempt stopped responding")
        retry = task_.get_retry_exception(exception=error, job=job) if task_ else None
        outcome = "retrying" if retry else "giving up"
        try:
            if retry is not None:
                await manager.retry_job(job=job, retry_at=retry.retry_decision.retry_at)
            else:
                await manager.finish_job_by_id_async(job_id=job.id, status=Status.FAILED, delete_job=False)
        except Exception as failure:  # another recoverer or the job itself got there first
            log.warning("stalled_job_not_recovered", job_id=job.id, error=repr(failure))
            continue
        await ctx.logs.write_quietly(
            job_id=job.id, attempt=job.attempts + 1, level="error", message=f"WorkerLost: {error}; {outcome}"
        )
        if retry is None:
            # A job lost on its last attempt fails for good here, not in a worker: its give-up hook
            # (a reinstall back to a state the owner can act on) runs now, or never.
            await _give_up(ctx, job, error)
        log.warning("stalled_job_recovered", job_id=job.id, task=job.task_name, outcome=outcome)


async def _give_up(ctx: TaskContext, job: Job, error: WorkerLost) -> None:
    resources = ctx.job.additional_context.get(RESOURCES_KEY)
    if not isinstance(resources, WorkerResources):
        return
    try:
        spec = get_spec(job.task_name)
    except UnknownTask:
        return
    await give_up(spec, resources, job, dict(job.task_kwargs), error)
