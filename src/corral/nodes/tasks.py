"""Node jobs: the per-node health check and the periodic fan-out that queues one per node.

The fan-out runs every minute (``PERIODIC``); each node's check has a queueing lock, so a node
whose check is still waiting gets no second one, and a lock, so two checks of one node never run
at once. A check is not retried: the next minute's run is the retry.
"""

from __future__ import annotations

from corral.jobs.app import TaskContext, task
from corral.jobs.errors import JobAlreadyQueued
from corral.jobs.service import job_service
from corral.kit.actors import Actor
from corral.nodes import health, repository

HEALTH_CHECK = "nodes.health_check"
HEALTH_CHECK_ALL = "nodes.health_check_all"


@task(
    HEALTH_CHECK,
    lock="nodes.health_check:{node_id}",
    queueing_lock="nodes.health_check:{node_id}",
    retry=None,
)
async def health_check(ctx: TaskContext, *, node_id: int) -> None:
    outcome = await health.check(ctx.session, node_id, Actor.system(HEALTH_CHECK))
    if outcome is None:
        await ctx.log(f"Node {node_id} no longer exists")
        return
    node = outcome.node
    line = f"Node {node.name} is {node.status}"
    if outcome.changed:
        line += f" (was {outcome.previous_status})"
    if outcome.result.error:
        line += f": {outcome.result.error}"
    await ctx.log(line, level="info" if outcome.result.ok else "warning")


@task(HEALTH_CHECK_ALL, queueing_lock=HEALTH_CHECK_ALL, retry=None)
async def health_check_all(ctx: TaskContext, *, timestamp: int) -> None:
    """Queue a health check for every node (maintenance included: its errors are still recorded)."""
    queued = skipped = 0
    for node_id in await repository.ids(ctx.session):
        try:
            await job_service.defer(ctx.session, HEALTH_CHECK, node_id=node_id)
        except JobAlreadyQueued:
            skipped += 1  # the previous check is still waiting: do not pile up behind it
        else:
            queued += 1
    await ctx.log(f"Queued {queued} node check(s); {skipped} still waiting from before")
