"""The cancellation processor (seed 000 8.2): every 30 seconds, move each due cancellation on.

One run takes a batch of due servers, row-locked with SKIP LOCKED so overlapping runs or several
workers never handle one server twice, and gives each its own savepoint: one server's failure is
recorded against it and does not undo the others.
"""

from __future__ import annotations

from collections import Counter

from corral.jobs.app import TaskContext, task
from corral.servers.cancellation import cancellations


@task("servers.process_cancellations", queueing_lock="servers.process_cancellations", retry=None)
async def process_cancellations(ctx: TaskContext, *, timestamp: int) -> None:
    outcomes: Counter[str] = Counter()
    for server in await cancellations.due(ctx.session):
        try:
            async with ctx.session.begin_nested():
                outcome = await cancellations.process(ctx.session, server)
        except Exception as error:  # any failure to start the deletion is one failed attempt
            outcome = await cancellations.record_failure(ctx.session, server, error)
        outcomes[outcome] += 1
    if outcomes:
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
        failed = outcomes["failed"] or outcomes["gave_up"]
        await ctx.log(f"Cancellations: {summary}", level="warning" if failed else "info")
