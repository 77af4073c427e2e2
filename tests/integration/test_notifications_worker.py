"""End to end: queue and commit, a real worker runs notifications.send_email, a real SMTP sink receives."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage as MimeMessage
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy.engine import URL

from corral.config import Settings
from corral.db.session import transaction
from corral.db.url import libpq_conninfo
from corral.jobs.schemas import JobRead
from corral.jobs.service import job_service
from corral.models.email import EmailMessage
from corral.notifications.service import SEND_TASK, absolute_url, mailer
from tests.integration.test_jobs_support import Harness, harness, wait_until

if TYPE_CHECKING:  # the module itself is loaded as a plugin (its fixtures), before pytest rewrites it
    from tests.support.smtp import SmtpSink

pytest_plugins = ("tests.support.smtp",)

TOKEN = "verify-token-5f2a9c"
HOSTILE_NAME = "Ada <script>alert('x')</script>"


async def _queue(h: Harness, *, name: str = "Ada") -> tuple[EmailMessage, int]:
    """Queue a verify_email and commit; returns the row and its job id."""
    async with transaction(h.sessions) as session:
        link = absolute_url(h.settings, "/account/verify", query={"token": TOKEN})
        message = await mailer.queue(
            session, to="ada@example.test", template="verify_email", context={"link": link, "name": name}
        )
        [job] = [
            job
            for job in await job_service.list(session, task_name=SEND_TASK)
            if job.args == {"message_id": message.id}
        ]
    return message, job.id


async def _row(h: Harness, message_id: int) -> EmailMessage:
    async with h.sessions() as session:
        row = await session.get(EmailMessage, message_id)
    assert row is not None
    return row


def _parts(message: MimeMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, MimeMessage)
    assert isinstance(html, MimeMessage)
    return str(text.get_content()), str(html.get_content())


def _no_secrets_in(job: JobRead) -> None:
    """The job's timeline never shows the context (the link carries a token)."""
    for line in job.logs:
        assert TOKEN not in line.message
        assert "/account/verify" not in line.message


async def test_a_committed_email_is_sent_by_a_worker(
    fresh_database: Callable[[], URL], settings: Settings, smtp_sink: SmtpSink
) -> None:
    async with harness(fresh_database(), smtp_sink.settings(settings)) as h:
        await h.runtime.start_worker()
        message, job_id = await _queue(h, name=HOSTILE_NAME)

        [received] = await smtp_sink.wait_for(1)
        job = await h.wait_for_status(job_id, "succeeded")
        row = await _row(h, message.id)

    assert received.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in received.iter_parts()] == ["text/plain", "text/html"]
    assert received["From"] == "Corral <no-reply@panel.test>"
    assert received["To"] == "ada@example.test"
    assert received["Subject"] == "Confirm your email address for Corral"
    assert received["Message-ID"].startswith(f"<corral.{message.id}.")
    assert received["Date"]
    text, html = _parts(received)
    link = f"https://panel.test/account/verify?token={TOKEN}"  # from settings.web.public_url
    assert link in text
    assert f'href="{link}"' in html
    # The user's name is escaped in HTML and left as typed in the text part.
    assert "<script>" not in html
    assert "Ada &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert f"Hello {HOSTILE_NAME}," in text

    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.sent_at is not None
    assert job.attempts == 1
    assert [line.message for line in job.logs] == [f"Email {message.id} sent"]
    _no_secrets_in(job)


async def test_a_4xx_is_retried_with_backoff_and_then_sent(
    fresh_database: Callable[[], URL], settings: Settings, smtp_sink: SmtpSink
) -> None:
    url = fresh_database()
    greylisted = "451 4.7.1 Greylisted, please try again later"
    smtp_sink.answer(greylisted, stage="RCPT")
    async with harness(url, smtp_sink.settings(settings)) as h:
        await h.runtime.start_worker()
        message, job_id = await _queue(h)

        async def waiting_for_retry() -> JobRead | None:
            job = await h.job(job_id)
            return job if job.status == "todo" and job.attempts == 1 else None

        waiting = await wait_until(waiting_for_retry, what="the first attempt to fail and be rescheduled")
        assert waiting.scheduled_at is not None
        # The real policy: the next attempt is a minute away, not immediate.
        assert waiting.scheduled_at - datetime.now(UTC) > timedelta(seconds=45)
        [error] = [line.message for line in waiting.logs if line.level == "error"]
        assert error.startswith(f"TransientSmtpError: recipient deferred by 127.0.0.1:{smtp_sink.port}: 451")
        assert "retrying at" in error
        row = await _row(h, message.id)
        assert (row.status, row.attempts) == ("queued", 1)
        assert greylisted in (row.last_error or "")
        assert smtp_sink.received == []

        # Let the minute pass: make the retry due now, as the clock would.
        async with await psycopg.AsyncConnection.connect(libpq_conninfo(url), autocommit=True) as conn:
            await conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE id = %s", (job_id,))

        [received] = await smtp_sink.wait_for(1)
        job = await h.wait_for_status(job_id, "succeeded")
        row = await _row(h, message.id)

    assert received["To"] == "ada@example.test"
    assert smtp_sink.scripted_replies_given == [greylisted]
    assert job.attempts == 2
    assert (row.status, row.attempts) == ("sent", 2)
    _no_secrets_in(job)


async def test_a_5xx_marks_the_email_failed_without_retrying(
    fresh_database: Callable[[], URL], settings: Settings, smtp_sink: SmtpSink
) -> None:
    refusal = "550 5.1.1 <ada@example.test>: Recipient address rejected: User unknown"
    smtp_sink.answer(refusal, stage="RCPT")
    async with harness(fresh_database(), smtp_sink.settings(settings)) as h:
        await h.runtime.start_worker()
        message, job_id = await _queue(h)
        job = await h.wait_for_status(job_id, "failed")

        row = await _row(h, message.id)
    assert job.attempts == 1
    assert job.last_error == (
        f"PermanentJobError: Email {message.id} not sent: recipient refused by "
        f"127.0.0.1:{smtp_sink.port}: {refusal}; giving up"
    )
    assert (row.status, row.attempts, row.sent_at) == ("failed", 1, None)
    assert row.last_error == f"recipient refused by 127.0.0.1:{smtp_sink.port}: {refusal}"
    assert smtp_sink.received == []
    _no_secrets_in(job)


async def test_running_the_job_again_for_a_sent_email_sends_nothing(
    fresh_database: Callable[[], URL], settings: Settings, smtp_sink: SmtpSink
) -> None:
    async with harness(fresh_database(), smtp_sink.settings(settings)) as h:
        await h.runtime.start_worker()
        message, first = await _queue(h)
        await h.wait_for_status(first, "succeeded")
        assert len(await smtp_sink.wait_for(1)) == 1

        again = await h.defer(SEND_TASK, message_id=message.id)
        job = await h.wait_for_status(again, "succeeded")

        row = await _row(h, message.id)
    # The second job finished, so whatever it would have sent has been sent: nothing.
    assert len(smtp_sink.received) == 1
    assert [line.message for line in job.logs] == [
        f"Email {message.id} was already sent; not sending it again"
    ]
    assert (row.status, row.attempts) == ("sent", 1)
