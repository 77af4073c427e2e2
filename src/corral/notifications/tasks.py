"""The job that sends one queued email."""

from __future__ import annotations

from corral.jobs.app import Backoff, TaskContext, task
from corral.jobs.errors import PermanentJobError
from corral.notifications.errors import TransientSmtpError
from corral.notifications.service import SEND_TASK, mailer

# Six attempts, 1, 2, 4, 8 and 16 minutes apart: about half an hour, long enough for greylisting
# (commonly 5 to 15 minutes) and for an operator to fix a wrong password or TLS setting.
SEND_RETRY = Backoff(attempts=6, base_seconds=60.0, cap_seconds=30 * 60.0)


@task(SEND_TASK, lock="email:{message_id}", retry=SEND_RETRY)
async def send_email(ctx: TaskContext, *, message_id: int) -> None:
    """Render and send message ``message_id``; safe to run again (a sent message is left alone).

    A failed attempt raises so the job shows it and, when transient, retries. Raising rolls the
    attempt's transaction back, so the row's record of the attempt (attempts, last_error, status)
    is committed first, on purpose.
    """
    outcome = await mailer.deliver(ctx.session, message_id, final_attempt=ctx.attempt >= SEND_RETRY.attempts)
    if outcome.status == "missing":
        await ctx.log(f"Email {message_id} no longer exists; nothing to send", level="warning")
        return
    if outcome.status == "already_sent":
        await ctx.log(f"Email {message_id} was already sent; not sending it again")
        return
    if outcome.status == "sent":
        await ctx.log(f"Email {message_id} sent")
        return
    await ctx.session.commit()
    error = outcome.error or "sending failed"
    if outcome.status == "retry":
        raise TransientSmtpError(error)
    raise PermanentJobError(f"Email {message_id} not sent: {error}")
