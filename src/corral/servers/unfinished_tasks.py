"""Releasing unfinished orders (``corral.servers.unfinished``): every hour, remind the owners of
orders nearing their deadline, then release the orders past it."""

from __future__ import annotations

from corral.jobs.app import TaskContext, task
from corral.kit.clock import utcnow
from corral.servers.unfinished import unfinished_orders


@task("servers.release_unfinished", queueing_lock="servers.release_unfinished", retry=None)
async def release_unfinished(ctx: TaskContext, *, timestamp: int) -> None:
    # The time of the run, not the schedule's: a late run acts on what is due by now.
    sweep = await unfinished_orders.sweep(ctx.session, utcnow())
    if sweep.reminded or sweep.released or sweep.failed:
        await ctx.log(
            f"Unfinished orders: {len(sweep.reminded)} owner(s) reminded, {len(sweep.released)} released, "
            f"{len(sweep.failed)} failed (tried again next run)",
            level="warning" if sweep.failed else "info",
        )
