"""Housekeeping for sign-in state."""

from __future__ import annotations

from datetime import timedelta

from corral.auth import repository
from corral.jobs.app import Backoff, TaskContext, task
from corral.kit.clock import utcnow

# Expired challenges are useless; a day's grace keeps recent ones for investigating a complaint.
CHALLENGE_RETENTION = timedelta(days=1)


@task(
    "auth.prune_challenges", queueing_lock="auth.prune_challenges", retry=Backoff(attempts=3, base_seconds=60)
)
async def prune_challenges(ctx: TaskContext, *, timestamp: int) -> None:
    """Delete passkey and second-factor challenges that expired more than a day ago."""
    removed = await repository.prune_challenges(ctx.session, utcnow() - CHALLENGE_RETENTION)
    await ctx.log(f"Removed {removed} expired sign-in challenges")
