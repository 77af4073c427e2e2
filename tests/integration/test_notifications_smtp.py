"""One sending attempt against real SMTP servers: TLS modes, logins, refusals, outages, timeouts.

Each test queues a message in the rolled-back ``db`` session and runs ``mailer.deliver`` (the job's
body) on it, with the session's settings pointed at an aiosmtpd sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from corral.config import Settings
from corral.models.email import EmailMessage
from corral.notifications.service import absolute_url, mailer
from tests.support.processes import free_port

if TYPE_CHECKING:  # the module itself is loaded as a plugin (its fixtures), before pytest rewrites it
    from tests.support.smtp import SinkCertificate, SmtpSink

pytest_plugins = ("tests.support.smtp",)

CREDENTIALS = ("mailer", "s3cret-smtp-password")


async def _queue(db: AsyncSession, settings: Settings, *, to: str = "ada@example.test") -> EmailMessage:
    link = absolute_url(settings, "/account/reset", query={"token": "reset-token-123"})
    return await mailer.queue(
        db, to=to, template="reset_password", context={"link": link, "name": "Ada", "valid_minutes": 30}
    )


def _use(db: AsyncSession, settings: Settings) -> None:
    """Point the session (and so the code under test) at these settings."""
    db.info["settings"] = settings


async def _attempt(db: AsyncSession, message: EmailMessage, *, final: bool = False) -> Any:
    outcome = await mailer.deliver(db, message.id, final_attempt=final)
    await db.refresh(message)
    return outcome


async def test_a_message_is_delivered_over_plain_smtp(
    db: AsyncSession, settings: Settings, smtp_sink: SmtpSink
) -> None:
    _use(db, smtp_sink.settings(settings))
    message = await _queue(db, settings)
    outcome = await _attempt(db, message)
    assert (outcome.status, outcome.error) == ("sent", None)
    assert (message.status, message.attempts, message.last_error) == ("sent", 1, None)
    assert message.sent_at is not None
    [received] = smtp_sink.received
    assert received.mail_from == "no-reply@panel.test"
    assert received.rcpt_tos == ("ada@example.test",)
    assert not received.encrypted
    assert received.message["Subject"] == "Reset your Corral password"


async def test_starttls_with_a_login(
    db: AsyncSession,
    settings: Settings,
    smtp_sink_factory: Callable[..., SmtpSink],
    trust_smtp_certificate: SinkCertificate,
) -> None:
    sink = smtp_sink_factory(security="starttls", credentials=CREDENTIALS)
    _use(db, sink.settings(settings))
    message = await _queue(db, settings)
    assert (await _attempt(db, message)).status == "sent"
    [received] = sink.received
    assert received.encrypted
    assert received.login == "mailer"


# The sink allows AUTH without STARTTLS because the whole connection is TLS; aiosmtpd warns anyway.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls_with_a_login(
    db: AsyncSession,
    settings: Settings,
    smtp_sink_factory: Callable[..., SmtpSink],
    trust_smtp_certificate: SinkCertificate,
) -> None:
    sink = smtp_sink_factory(security="tls", credentials=CREDENTIALS)
    _use(db, sink.settings(settings))
    message = await _queue(db, settings)
    assert (await _attempt(db, message)).status == "sent"
    [received] = sink.received
    assert received.encrypted
    assert received.login == "mailer"


async def test_starttls_is_required_not_hoped_for(
    db: AsyncSession, settings: Settings, smtp_sink: SmtpSink
) -> None:
    """A server (or a man in the middle) that does not offer STARTTLS gets nothing in clear."""
    _use(db, smtp_sink.settings(settings, security="starttls"))
    message = await _queue(db, settings)
    outcome = await _attempt(db, message)
    assert outcome.status == "retry"
    assert "STARTTLS" in (message.last_error or "")
    assert smtp_sink.received == []


async def test_an_untrusted_certificate_is_refused(
    db: AsyncSession, settings: Settings, smtp_sink_factory: Callable[..., SmtpSink]
) -> None:
    sink = smtp_sink_factory(security="tls")  # the test CA is not trusted in this test
    _use(db, sink.settings(settings))
    message = await _queue(db, settings)
    assert (await _attempt(db, message)).status == "retry"
    assert "CERTIFICATE_VERIFY_FAILED" in (message.last_error or "")
    assert sink.received == []


async def test_a_wrong_password_is_retried_and_never_written_down(
    db: AsyncSession,
    settings: Settings,
    smtp_sink_factory: Callable[..., SmtpSink],
    trust_smtp_certificate: SinkCertificate,
) -> None:
    sink = smtp_sink_factory(security="starttls", credentials=CREDENTIALS)
    _use(db, sink.settings(settings, password="wrong-password-xyz"))
    message = await _queue(db, settings)
    outcome = await _attempt(db, message)
    assert outcome.status == "retry"
    assert message.status == "queued"
    assert "refused the login: 535" in (message.last_error or "")
    assert "wrong-password-xyz" not in (message.last_error or "")
    assert sink.received == []


async def test_credentials_are_never_sent_without_encryption(
    db: AsyncSession, settings: Settings, smtp_sink: SmtpSink
) -> None:
    _use(db, smtp_sink.settings(settings, username="mailer", password="pw-in-clear"))
    message = await _queue(db, settings)
    assert (await _attempt(db, message)).status == "retry"
    assert "unencrypted" in (message.last_error or "")
    assert "pw-in-clear" not in (message.last_error or "")
    assert smtp_sink.received == []


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("RCPT", "451 4.7.1 Greylisted, try again later"),
        ("MAIL", "421 4.3.2 Service shutting down"),
        ("DATA", "452 4.3.1 Insufficient system storage"),
    ],
)
async def test_a_4xx_reply_leaves_the_message_queued_for_a_retry(
    db: AsyncSession, settings: Settings, smtp_sink: SmtpSink, stage: str, reply: str
) -> None:
    _use(db, smtp_sink.settings(settings))
    smtp_sink.answer(reply, stage=stage)  # type: ignore[arg-type]
    message = await _queue(db, settings)
    outcome = await _attempt(db, message)
    assert outcome.status == "retry"
    assert (message.status, message.attempts) == ("queued", 1)
    assert reply in (message.last_error or "")
    assert smtp_sink.scripted_replies_given == [reply]
    # The next attempt goes through; the earlier error is kept to explain attempts == 2.
    assert (await _attempt(db, message)).status == "sent"
    assert (message.status, message.attempts) == ("sent", 2)
    assert reply in (message.last_error or "")
    assert len(smtp_sink.received) == 1


async def test_a_4xx_on_the_last_attempt_marks_the_message_failed(
    db: AsyncSession, settings: Settings, smtp_sink: SmtpSink
) -> None:
    _use(db, smtp_sink.settings(settings))
    smtp_sink.answer("451 4.7.1 Greylisted, try again later")
    message = await _queue(db, settings)
    assert (await _attempt(db, message, final=True)).status == "failed"
    assert message.status == "failed"
    assert message.sent_at is None


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("RCPT", "550 5.1.1 <ada@example.test>: Recipient address rejected: User unknown"),
        ("MAIL", "553 5.7.1 Sender address rejected"),
        ("DATA", "554 5.7.1 Message rejected as spam"),
    ],
)
async def test_a_5xx_reply_marks_the_message_failed(
    db: AsyncSession, settings: Settings, smtp_sink: SmtpSink, stage: str, reply: str
) -> None:
    _use(db, smtp_sink.settings(settings))
    smtp_sink.answer(reply, stage=stage)  # type: ignore[arg-type]
    message = await _queue(db, settings)
    outcome = await _attempt(db, message)
    assert outcome.status == "failed"
    assert (message.status, message.attempts) == ("failed", 1)
    assert reply in (message.last_error or "")
    assert message.sent_at is None
    assert smtp_sink.received == []


async def test_a_server_that_is_down_is_retried(db: AsyncSession, settings: Settings) -> None:
    port = free_port()  # bound and released: nothing listens there
    _use(
        db,
        settings.model_copy(
            update={
                "smtp": settings.smtp.model_copy(
                    update={"host": "127.0.0.1", "port": port, "security": "none"}
                )
            }
        ),
    )
    message = await _queue(db, settings)
    assert (await _attempt(db, message)).status == "retry"
    assert f"127.0.0.1:{port}" in (message.last_error or "")
    assert (message.last_error or "").startswith("could not deliver to 127.0.0.1:")


async def test_a_server_that_never_answers_times_out_and_is_retried(
    db: AsyncSession, settings: Settings, silent_smtp_server: tuple[str, int]
) -> None:
    host, port = silent_smtp_server
    smtp = settings.smtp.model_copy(
        update={"host": host, "port": port, "security": "none", "timeout_seconds": 0.5}
    )
    _use(db, settings.model_copy(update={"smtp": smtp}))
    message = await _queue(db, settings)
    assert (await _attempt(db, message)).status == "retry"
    assert "timed out" in (message.last_error or "").lower()


async def test_a_sent_message_is_not_sent_again(
    db: AsyncSession, settings: Settings, smtp_sink: SmtpSink
) -> None:
    _use(db, smtp_sink.settings(settings))
    message = await _queue(db, settings)
    assert (await _attempt(db, message)).status == "sent"
    assert (await _attempt(db, message)).status == "already_sent"
    assert message.attempts == 1
    assert len(smtp_sink.received) == 1


async def test_a_message_that_no_longer_exists_is_skipped(db: AsyncSession) -> None:
    assert (await mailer.deliver(db, 987654321, final_attempt=False)).status == "missing"


async def test_non_ascii_text_arrives_intact(
    db: AsyncSession, settings: Settings, smtp_sink: SmtpSink
) -> None:
    _use(db, smtp_sink.settings(settings))
    message = await mailer.queue(
        db,
        to="zoe@example.test",
        template="welcome",
        context={"name": "Zoë Ådahl 李"},
        subject="Bienvenue, Zoë ✓",
    )
    assert (await _attempt(db, message)).status == "sent"
    [received] = smtp_sink.messages
    assert received["Subject"] == "Bienvenue, Zoë ✓"
    text = received.get_body(preferencelist=("plain",))
    html = received.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert "Hello Zoë Ådahl 李," in text.get_content()
    assert "Hello Zoë Ådahl 李," in html.get_content()
