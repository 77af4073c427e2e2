"""The demo outbox: email the demo panel sends is caught by an SMTP server in its own process and
read at /demo/outbox, which exists in demo mode only and opens to this machine's browsers or staff."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage as MimeMessage
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from corral.app import create_app
from corral.config import Settings
from corral.demo.outbox import DemoOutbox, catch_demo_mail
from corral.models.users import UserRole
from corral.notifications import smtp
from corral.web.deps import get_db_session
from tests.support.admin import BASE_URL, people_for
from tests.support.auth import ORIGIN, form_token

PASSWORD = "violet anchor drifts north"
LOCAL = ("127.0.0.1", 50123)
REMOTE = ("203.0.113.9", 50123)


def demo_settings(settings: Settings, **web: Any) -> Settings:
    return settings.model_copy(update={"demo": True, "web": settings.web.model_copy(update=web)})


async def deliver(outbox: DemoOutbox, settings: Settings, *, to: str, subject: str, text: str) -> None:
    """Send one message to the outbox over SMTP with the panel's own client."""
    message = MimeMessage()
    message["From"] = settings.smtp.from_address
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    await smtp.send_message(outbox.settings(settings).smtp, message, recipient=to)


async def wait_for_messages(outbox: DemoOutbox, count: int, *, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while len(outbox.messages()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"the outbox has {len(outbox.messages())} message(s), not {count}")
        await asyncio.sleep(0.05)  # polling interval; the loop ends on the condition or the deadline


def client_for(app: FastAPI, address: tuple[str, int] = LOCAL) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=address), base_url=BASE_URL)


@asynccontextmanager
async def demo_panel(settings: Settings, database_url: URL, db: AsyncSession) -> AsyncIterator[FastAPI]:
    """A demo panel with its outbox running, on the test's rolled-back transaction (no worker)."""
    served, outbox = catch_demo_mail(settings)
    assert outbox is not None
    app = create_app(served, database_url=database_url, run_worker=False, demo_outbox=outbox)

    async def test_session() -> AsyncIterator[AsyncSession]:
        work = await db.begin_nested()
        try:
            yield db
        except BaseException:
            await work.rollback()
            raise
        else:
            await work.commit()

    app.dependency_overrides[get_db_session] = test_session
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def demo_app(settings: Settings, database_url: URL, db: AsyncSession) -> AsyncIterator[FastAPI]:
    async with demo_panel(demo_settings(settings), database_url, db) as app:
        yield app


def outbox_of(app: FastAPI) -> DemoOutbox:
    outbox: DemoOutbox = app.state.demo_outbox
    return outbox


# ---------------------------------------------------------------- the real path, worker and SMTP


async def test_a_signup_email_sent_by_the_worker_is_read_in_the_outbox(
    settings: Settings, fresh_database: Callable[[], URL]
) -> None:
    served, outbox = catch_demo_mail(demo_settings(settings))
    assert outbox is not None
    assert (served.smtp.host, served.smtp.port, served.smtp.security) == ("127.0.0.1", outbox.port, "none")
    app = create_app(served, database_url=fresh_database(), run_worker=True, demo_outbox=outbox)
    async with app.router.lifespan_context(app), client_for(app) as client:
        token = await form_token(client, "/register")
        form = {"email": "ada@example.com", "name": "Ada <b>Lovelace</b>", "password": PASSWORD}
        registered = await client.post(
            "/register", data={**form, "password_confirm": PASSWORD, "csrf_token": token}, headers=ORIGIN
        )
        assert registered.status_code == 200
        assert 'href="/demo/outbox"' in registered.text  # the "check your email" page points there

        await wait_for_messages(outbox, 1)
        listing = await client.get("/demo/outbox")
        [caught] = outbox.messages()
        page = await client.get(f"/demo/outbox/{caught.id}")
        link = re.search(r'<a href="(https://panel\.test/verify\?token=[\w-]+)">', page.text)
        assert link is not None, page.text
        verified = await client.get(link.group(1).removeprefix(BASE_URL))

    assert caught.recipients == ("ada@example.com",)
    assert caught.subject == "Confirm your email address for Corral"
    assert listing.status_code == 200
    assert listing.headers["cache-control"] == "no-store"
    assert "Confirm your email address for Corral" in listing.text
    assert "ada@example.com" in listing.text
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    # The name the visitor typed is in the text part, and shown escaped.
    assert "Hello Ada &lt;b&gt;Lovelace&lt;/b&gt;," in page.text
    assert "<b>Lovelace" not in page.text
    assert verified.status_code == 200
    assert "Your email is confirmed" in verified.text


async def test_the_demo_command_path_leaves_a_configured_mail_server_alone(settings: Settings) -> None:
    chosen = demo_settings(settings).model_copy(
        update={"smtp": settings.smtp.model_validate({"host": "mail.example.net"})}
    )
    unchanged, outbox = catch_demo_mail(chosen)
    assert outbox is None
    assert unchanged.smtp.host == "mail.example.net"
    # Outside demo mode there is never an outbox, whatever the SMTP settings.
    assert catch_demo_mail(settings) == (settings, None)


# ---------------------------------------------------------------- never outside demo mode


async def test_the_outbox_does_not_exist_outside_demo_mode(app: FastAPI, db: AsyncSession) -> None:
    async with people_for(app, db) as people:
        admin = await people.sign_in(UserRole.SUPPORT)
        async with client_for(app) as anonymous:
            for path in ("/demo/outbox", "/demo/outbox/1"):
                assert (await anonymous.get(path)).status_code == 404
                assert (await admin.client.get(path)).status_code == 404


async def test_a_panel_cannot_be_built_with_an_outbox_outside_demo_mode(settings: Settings) -> None:
    outbox = DemoOutbox()
    try:
        with pytest.raises(ValueError, match="only in demo mode"):
            create_app(settings, demo_outbox=outbox)
    finally:
        await outbox.stop()


# ---------------------------------------------------------------- who may read it


async def test_any_browser_on_the_demo_machine_reads_it_and_nobody_else(demo_app: FastAPI) -> None:
    settings: Settings = demo_app.state.settings
    await deliver(outbox_of(demo_app), settings, to="ada@example.com", subject="Hello", text="Hi Ada")
    async with client_for(demo_app) as local, client_for(demo_app, REMOTE) as remote:
        assert (await local.get("/demo/outbox")).status_code == 200
        assert (await local.get("/demo/outbox/1")).status_code == 200
        refused = await remote.get("/demo/outbox")
        relayed = await local.get("/demo/outbox", headers={"X-Forwarded-For": "198.51.100.7"})
        forwarded = await local.get("/demo/outbox/1", headers={"Forwarded": "for=198.51.100.7"})

    assert refused.status_code == 403
    assert "own machine, or for staff who can see users" in refused.text
    assert "Hi Ada" not in refused.text
    assert relayed.status_code == 403
    assert forwarded.status_code == 403


async def test_a_demo_served_to_the_network_opens_the_outbox_to_staff_only(
    settings: Settings, database_url: URL, db: AsyncSession
) -> None:
    network = demo_settings(settings, host="0.0.0.0")  # noqa: S104
    async with demo_panel(network, database_url, db) as app, people_for(app, db) as people:
        outbox = outbox_of(app)
        await deliver(outbox, app.state.settings, to="ada@example.com", subject="Hello", text="Hi Ada")
        support = await people.sign_in(UserRole.SUPPORT)
        customer = await people.sign_in(UserRole.CUSTOMER)
        async with client_for(app) as anonymous_local:
            anonymous = await anonymous_local.get("/demo/outbox")
        staff = await support.client.get("/demo/outbox/1")
        refused = await customer.client.get("/demo/outbox")

    assert anonymous.status_code == 403
    assert refused.status_code == 403
    assert staff.status_code == 200
    assert "Hi Ada" in staff.text


# ---------------------------------------------------------------- what a message shows


async def test_a_message_is_escaped_and_only_links_to_the_panel_are_clickable(demo_app: FastAPI) -> None:
    settings: Settings = demo_app.state.settings
    text = (
        "<script>alert('x')</script>\n"
        "Yours: https://panel.test/verify?token=abc-123.\n"
        "Not ours: https://panel.test.evil.example/verify https://panel.test@evil.example/x "
        "http://evil.example/\n"
    )
    await deliver(outbox_of(demo_app), settings, to="ada@example.com", subject="Links <i>here</i>", text=text)
    async with client_for(demo_app) as client:
        listing = await client.get("/demo/outbox")
        page = await client.get("/demo/outbox/1")

    assert "Links &lt;i&gt;here&lt;/i&gt;" in listing.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    assert "<script>alert" not in page.text
    body = page.text.split('data-testid="message-text">', 1)[1].split("</pre>", 1)[0]
    assert re.findall(r'<a href="([^"]*)"', body) == ["https://panel.test/verify?token=abc-123"]
    assert "https://panel.test.evil.example/verify" in body
    assert "https://panel.test@evil.example/x" in body


async def test_an_unknown_or_forgotten_message_is_a_404(demo_app: FastAPI) -> None:
    async with client_for(demo_app) as client:
        missing = await client.get("/demo/outbox/7")
        empty = await client.get("/demo/outbox")

    assert missing.status_code == 404
    assert "keeps the last 200" in missing.text
    assert 'data-testid="outbox-empty"' in empty.text
