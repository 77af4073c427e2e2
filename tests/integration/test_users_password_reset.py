"""Forgot password and reset through an emailed link."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import audit
from corral.auth.secrets import secret_hash
from corral.kit.clock import utcnow
from corral.models.auth import UserSession, UserToken
from corral.models.email import EmailMessage
from corral.models.users import User
from corral.users.passwords import verify_password
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, form_token, sign_in

NEW_PASSWORD = "granite lantern orbit seven"


@pytest.fixture
async def other_browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser on the same panel, with cookies of its own."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://panel.test") as http:
        yield http


async def forgot(
    client: httpx.AsyncClient, email: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    token = await form_token(client, "/password/forgot")
    return await client.post(
        "/password/forgot", data={"email": email, "csrf_token": token}, headers={**ORIGIN, **(headers or {})}
    )


async def reset_links(db: AsyncSession, address: str) -> list[str]:
    statement = (
        select(EmailMessage)
        .where(EmailMessage.to_address == address, EmailMessage.template == "reset_password")
        .order_by(EmailMessage.id)
    )
    return [str(message.context["link"]) for message in (await db.execute(statement)).scalars()]


def token_in(link: str) -> str:
    [token] = parse_qs(urlsplit(link).query)["token"]
    return token


async def reset(
    client: httpx.AsyncClient, token: str, password: str, confirm: str | None = None
) -> httpx.Response:
    page = await client.get("/password/reset", params={"token": token})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    # An invalid link has no form; any anonymous page's token will do to try the POST anyway.
    csrf_token = csrf.group(1) if csrf else await form_token(client, "/password/forgot")
    data = {
        "token": token,
        "password": password,
        "password_confirm": password if confirm is None else confirm,
        "csrf_token": csrf_token,
    }
    return await client.post("/password/reset", data=data, headers=ORIGIN)


async def test_reset_link_is_built_from_the_public_url_never_the_host_header(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await create_user(db, email="ada@example.com")
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}

    response = await forgot(client, "ada@example.com", headers=forged)

    assert response.status_code == 200
    [link] = await reset_links(db, "ada@example.com")
    assert link.startswith("https://panel.test/password/reset?token=")
    assert "evil" not in link


async def test_the_answer_is_the_same_whether_or_not_the_account_exists(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await create_user(db, email="ada@example.com")
    known = await forgot(client, "ada@example.com")
    unknown = await forgot(client, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    strip = re.compile(r"ada@example\.com|nobody@example\.com|" + r'value="[^"]*"|content="[^"]*"')
    assert strip.sub("", known.text) == strip.sub("", unknown.text)
    assert len(await reset_links(db, "ada@example.com")) == 1
    assert await reset_links(db, "nobody@example.com") == []


async def test_a_malformed_address_is_shown_next_to_the_field(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    response = await forgot(client, "not an address")
    assert response.status_code == 422
    assert 'data-field-error="email"' in response.text
    assert await db.scalar(select(func.count()).select_from(EmailMessage)) == 0


async def test_reset_sets_the_password_ends_every_session_and_notifies(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await create_user(db, email="ada@example.com")
    assert (await sign_in(other_browser, user.email, DEFAULT_PASSWORD)).status_code == 303
    assert (await other_browser.get("/dashboard")).status_code == 200
    await forgot(client, user.email)
    [link] = await reset_links(db, user.email)

    form = await client.get(link.removeprefix("https://panel.test"))
    assert form.status_code == 200
    assert "Choose a new password" in form.text
    response = await reset(client, token_in(link), NEW_PASSWORD)

    assert response.status_code == 200
    assert "Your password is changed" in response.text
    await db.refresh(user)
    assert user.password_hash is not None
    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert user.password_changed_at is not None
    # The other browser was signed out.
    assert (await other_browser.get("/dashboard")).status_code == 303
    sessions = (await db.execute(select(UserSession).where(UserSession.user_id == user.id))).scalars().all()
    assert sessions
    assert all(row.revoked_reason == "password_reset" for row in sessions)
    notice = (
        await db.execute(
            select(EmailMessage).where(EmailMessage.template == "password_changed").order_by(EmailMessage.id)
        )
    ).scalar_one()
    assert notice.to_address == user.email
    [event] = await audit.list(db, action="user.password.reset")
    assert event.target_id == str(user.id)
    assert event.payload["signed_out"] == 1
    # Old password out, new one in.
    assert (await sign_in(client, user.email, DEFAULT_PASSWORD)).status_code == 401
    assert (await sign_in(client, user.email, NEW_PASSWORD)).status_code == 303


async def test_a_reset_link_works_once(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user = await create_user(db, email="ada@example.com")
    await forgot(client, user.email)
    [link] = await reset_links(db, user.email)
    assert (await reset(client, token_in(link), NEW_PASSWORD)).status_code == 200

    page = await client.get("/password/reset", params={"token": token_in(link)})
    assert page.status_code == 400
    assert "This link no longer works" in page.text
    again = await reset(client, token_in(link), "another fine passphrase")
    assert again.status_code == 400
    await db.refresh(user)
    assert user.password_hash is not None
    assert verify_password(user.password_hash, NEW_PASSWORD)


async def test_a_new_request_retires_older_links(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await create_user(db, email="ada@example.com")
    await forgot(client, "ada@example.com")
    await forgot(client, "ada@example.com")
    older, newer = await reset_links(db, "ada@example.com")
    assert (await client.get("/password/reset", params={"token": token_in(older)})).status_code == 400
    assert (await client.get("/password/reset", params={"token": token_in(newer)})).status_code == 200


async def test_an_expired_reset_link_is_refused(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await create_user(db, email="ada@example.com")
    await forgot(client, "ada@example.com")
    [link] = await reset_links(db, "ada@example.com")
    row = (await db.execute(select(UserToken))).scalar_one()
    assert row.token_hash == secret_hash(token_in(link))
    assert abs((row.expires_at - row.created_at) - timedelta(hours=24)) < timedelta(seconds=1)
    await db.execute(update(UserToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await client.get("/password/reset", params={"token": token_in(link)})).status_code == 400
    assert (await reset(client, token_in(link), NEW_PASSWORD)).status_code == 400


@pytest.mark.parametrize(
    ("password", "confirm", "field"),
    [
        ("short", "short", "password"),
        ("qwerty123456", "qwerty123456", "password"),
        ("ada is a lovely name", "ada is a lovely name", "password"),
        (NEW_PASSWORD, NEW_PASSWORD + "?", "password_confirm"),
    ],
)
async def test_a_bad_new_password_keeps_the_link_usable(
    client: httpx.AsyncClient, db: AsyncSession, password: str, confirm: str, field: str
) -> None:
    user = await create_user(db, email="ada@example.com")
    await forgot(client, user.email)
    [link] = await reset_links(db, user.email)

    response = await reset(client, token_in(link), password, confirm)

    assert response.status_code == 422
    assert f'data-field-error="{field}"' in response.text
    assert f'name="token" value="{token_in(link)}"' in response.text
    await db.refresh(user)
    assert user.password_hash is not None
    assert verify_password(user.password_hash, DEFAULT_PASSWORD)
    assert await audit.list(db, action="user.password.reset") == []
    assert (await reset(client, token_in(link), NEW_PASSWORD)).status_code == 200


async def test_reset_requests_are_rate_limited_per_address(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await create_user(db, email="ada@example.com")
    for _ in range(3):
        assert (await forgot(client, "ada@example.com")).status_code == 200
    limited = await forgot(client, "ada@example.com")
    assert limited.status_code == 429
    assert "Too many password resets" in limited.text
    assert len(await reset_links(db, "ada@example.com")) == 3


async def test_blocked_accounts_get_no_reset_link(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await create_user(db, email="ada@example.com", status="blocked")
    assert (await forgot(client, "ada@example.com")).status_code == 200
    assert await reset_links(db, "ada@example.com") == []
    assert await db.scalar(select(func.count()).select_from(User)) == 1
