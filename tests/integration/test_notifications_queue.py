"""Queueing an email: the row and its job live and die with the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from corral.config import Settings
from corral.db.session import create_engine, create_session_factory
from corral.db.url import libpq_conninfo
from corral.jobs.service import job_service
from corral.models.email import EmailMessage
from corral.notifications.errors import (
    InvalidEmailAddress,
    InvalidEmailContext,
    InvalidEmailSubject,
    UnknownEmailTemplate,
)
from corral.notifications.service import SEND_TASK, absolute_url, mailer


def _verify_context(settings: Settings, name: str = "Ada") -> dict[str, Any]:
    return {"link": absolute_url(settings, "/account/verify", query={"token": "t0k"}), "name": name}


async def _seen_from_outside(url: URL) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(email rows, send jobs) as a separate connection sees them."""
    async with await psycopg.AsyncConnection.connect(libpq_conninfo(url)) as connection:
        rows = await (
            await connection.execute("SELECT id, to_address, template, status FROM email_messages")
        ).fetchall()
        jobs = await (
            await connection.execute(
                "SELECT args, status::text FROM procrastinate_jobs WHERE task_name = %s", (SEND_TASK,)
            )
        ).fetchall()
    return rows, jobs


async def test_queue_writes_the_row_and_defers_its_job_in_the_callers_transaction(
    db: AsyncSession, settings: Settings
) -> None:
    message = await mailer.queue(
        db, to="ada@example.test", template="verify_email", context=_verify_context(settings)
    )
    assert message.id is not None
    assert message.status == "queued"
    assert message.attempts == 0
    assert message.subject == "Confirm your email address for Corral"
    assert message.context == {"link": "https://panel.test/account/verify?token=t0k", "name": "Ada"}
    assert message.created_at is not None
    [job] = await job_service.list(db, task_name=SEND_TASK)
    assert job.args == {"message_id": message.id}
    assert job.lock == f"email:{message.id}"
    assert job.status == "todo"


async def test_a_subject_can_be_given(db: AsyncSession, settings: Settings) -> None:
    message = await mailer.queue(
        db, to="ada@example.test", template="welcome", context={"name": "Ada"}, subject="Hi  there"
    )
    assert message.subject == "Hi there"
    for bad in ("", "   ", "Hi\r\nBcc: eve@example.test", "x" * 301):
        with pytest.raises(InvalidEmailSubject):
            await mailer.queue(
                db, to="ada@example.test", template="welcome", context={"name": "A"}, subject=bad
            )


async def test_the_email_and_its_job_exist_once_the_transaction_commits(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    url = fresh_database()
    engine = create_engine(url, settings)
    try:
        async with create_session_factory(engine, settings)() as session:
            message = await mailer.queue(
                session, to="ada@example.test", template="verify_email", context=_verify_context(settings)
            )
            assert await _seen_from_outside(url) == ([], [])  # nobody sees it before the commit
            await session.commit()
        rows, jobs = await _seen_from_outside(url)
        assert rows == [(message.id, "ada@example.test", "verify_email", "queued")]
        assert jobs == [({"message_id": message.id}, "todo")]
    finally:
        await engine.dispose()


async def test_the_email_and_its_job_vanish_when_the_transaction_rolls_back(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    url = fresh_database()
    engine = create_engine(url, settings)
    try:
        async with create_session_factory(engine, settings)() as session:
            await mailer.queue(
                session, to="ada@example.test", template="verify_email", context=_verify_context(settings)
            )
            await session.rollback()
        assert await _seen_from_outside(url) == ([], [])
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "to",
    [
        "ada@example.test\r\nBcc: eve@example.test",
        "ada@example.test\nSubject: free money",
        "ada@example.test, eve@example.test",
        "Ada <ada@example.test>",
        "ada@example.test\r\n",
        "",
    ],
)
async def test_header_injection_through_the_address_is_refused_and_nothing_is_written(
    db: AsyncSession, settings: Settings, to: str
) -> None:
    with pytest.raises(InvalidEmailAddress) as refused:
        await mailer.queue(db, to=to, template="verify_email", context=_verify_context(settings))
    assert refused.value.status_code == 422
    assert (await db.execute(select(func.count()).select_from(EmailMessage))).scalar_one() == 0
    assert await job_service.list(db, task_name=SEND_TASK) == []


async def test_templates_and_contexts_are_checked_before_anything_is_written(
    db: AsyncSession, settings: Settings
) -> None:
    with pytest.raises(UnknownEmailTemplate):
        await mailer.queue(db, to="ada@example.test", template="../base", context={})
    with pytest.raises(InvalidEmailContext, match="missing keys"):
        await mailer.queue(db, to="ada@example.test", template="verify_email", context={"name": "Ada"})
    # A link built from a request's Host header instead of settings.web.public_url.
    forged = {"link": "https://attacker.test/account/verify?token=t0k", "name": "Ada"}
    with pytest.raises(InvalidEmailContext, match="absolute_url"):
        await mailer.queue(db, to="ada@example.test", template="verify_email", context=forged)
    with pytest.raises(InvalidEmailContext, match="time zone"):
        await mailer.queue(
            db,
            to="ada@example.test",
            template="account_locked",
            context={"name": "Ada", "until": "2031-01-01T10:00:00"},
        )
    assert (await db.execute(select(func.count()).select_from(EmailMessage))).scalar_one() == 0
    assert await job_service.list(db, task_name=SEND_TASK) == []


async def test_get_shows_a_message_without_its_context(db: AsyncSession, settings: Settings) -> None:
    message = await mailer.queue(
        db, to="ada@example.test", template="verify_email", context=_verify_context(settings)
    )
    read = await mailer.get(db, message.id)
    assert read.id == message.id
    assert read.status == "queued"
    assert "t0k" not in read.model_dump_json()
