"""The account page (name, email change, password change) and the /api/v1/account API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import audit
from corral.auth.secrets import new_secret, secret_hash
from corral.kit.clock import utcnow
from corral.models.auth import ApiToken, UserSession, UserToken
from corral.models.email import EmailMessage
from corral.models.users import User
from corral.notifications.schemas import TEMPLATES
from corral.users.passwords import verify_password
from corral.users.profile import OLD_ADDRESS_TEMPLATE
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, page_token, sign_in

NEW_PASSWORD = "granite lantern orbit seven"
SESSION_COOKIE = "__Host-corral_session"


@pytest.fixture
async def other_browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://panel.test") as http:
        yield http


@pytest.fixture
async def ada(client: httpx.AsyncClient, db: AsyncSession) -> User:
    user = await create_user(db, email="ada@example.com", name="Ada Lovelace")
    assert (await sign_in(client, user.email, DEFAULT_PASSWORD)).status_code == 303
    return user


async def post(
    client: httpx.AsyncClient, path: str, data: dict[str, str], *, htmx: bool = False
) -> httpx.Response:
    token = await page_token(client, "/account")
    headers = {**ORIGIN, "X-CSRF-Token": token}
    if htmx:
        headers["HX-Request"] = "true"
    return await client.post(path, data=data, headers=headers)


async def messages(db: AsyncSession, template: str) -> list[EmailMessage]:
    statement = select(EmailMessage).where(EmailMessage.template == template).order_by(EmailMessage.id)
    return list((await db.execute(statement)).scalars())


def token_in(message: EmailMessage) -> str:
    [token] = parse_qs(urlsplit(str(message.context["link"])).query)["token"]
    return token


# ---------------------------------------------------------------- the page


async def test_the_account_page_needs_a_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Faccount"
    for path in ("/account/name", "/account/email", "/account/password", "/account/email/cancel"):
        refused = await client.post(path, data={}, headers=ORIGIN)
        assert refused.status_code in (303, 401, 403), path


async def test_the_account_page_shows_the_account(client: httpx.AsyncClient, ada: User) -> None:
    response = await client.get("/account")
    assert response.status_code == 200
    assert "Your account" in response.text
    assert 'data-testid="current-email">ada@example.com<' in response.text
    assert 'value="Ada Lovelace"' in response.text


# ---------------------------------------------------------------- name


async def test_changing_the_name_with_htmx_returns_the_panel_and_a_toast(
    client: httpx.AsyncClient, db: AsyncSession, ada: User
) -> None:
    response = await post(client, "/account/name", {"name": "  Augusta   Ada "}, htmx=True)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="profile-panel"')
    assert "Your name is saved." in response.headers["HX-Trigger"]
    await db.refresh(ada)
    assert ada.name == "Augusta Ada"
    [event] = await audit.list(db, action="user.profile.update")
    assert event.payload == {"name": {"from": "Ada Lovelace", "to": "Augusta Ada"}}


async def test_an_empty_name_is_refused_inline(
    client: httpx.AsyncClient, db: AsyncSession, ada: User
) -> None:
    response = await post(client, "/account/name", {"name": "   "}, htmx=True)
    assert response.status_code == 422
    assert 'data-field-error="name">Enter your name.<' in response.text
    await db.refresh(ada)
    assert ada.name == "Ada Lovelace"


async def test_without_javascript_a_change_redirects_back_with_a_message(
    client: httpx.AsyncClient, ada: User
) -> None:
    response = await post(client, "/account/name", {"name": "Augusta"})
    assert response.status_code == 303
    assert response.headers["location"] == "/account?done=name"
    page = await client.get("/account?done=name")
    assert "Your name is saved." in page.text
    # Only fixed messages: an unknown value shows nothing.
    assert "toast__message" not in (await client.get("/account?done=<b>hi</b>")).text.split("<template")[0]


# ---------------------------------------------------------------- email


async def test_email_changes_only_when_the_link_sent_to_the_new_address_is_followed(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, db: AsyncSession, ada: User
) -> None:
    response = await post(
        client,
        "/account/email",
        {"new_email": "countess@example.org", "current_password": DEFAULT_PASSWORD},
        htmx=True,
    )

    assert response.status_code == 200
    assert 'data-testid="pending-email"' in response.text
    await db.refresh(ada)
    assert ada.email == "ada@example.com"
    [confirm] = await messages(db, "change_email")
    assert confirm.to_address == "countess@example.org"
    assert confirm.context["new_email"] == "countess@example.org"
    assert str(confirm.context["link"]).startswith("https://panel.test/account/email/confirm?token=")
    token = (await db.execute(select(UserToken).where(UserToken.purpose == "change_email"))).scalar_one()
    assert token.token_hash == secret_hash(token_in(confirm))
    assert [e.payload for e in await audit.list(db, action="user.email.change_request")] == [
        {"from": "ada@example.com", "to": "countess@example.org"}
    ]

    # The link works from any browser, signed in or not: it proves the new mailbox.
    done = await other_browser.get("/account/email/confirm", params={"token": token_in(confirm)})

    assert done.status_code == 200
    assert "Your email address is changed" in done.text
    await db.refresh(ada)
    assert ada.email == "countess@example.org"
    assert ada.email_verified_at is not None
    [event] = await audit.list(db, action="user.email.change")
    assert event.payload == {"from": "ada@example.com", "to": "countess@example.org"}
    old_address_notices = [
        m for m in await messages(db, OLD_ADDRESS_TEMPLATE) if m.to_address == "ada@example.com"
    ]
    assert len(old_address_notices) == (1 if OLD_ADDRESS_TEMPLATE in TEMPLATES else 0)
    # Used once; signing in now takes the new address.
    assert (
        await other_browser.get("/account/email/confirm", params={"token": token_in(confirm)})
    ).status_code == 400
    assert (await sign_in(other_browser, "countess@example.org", DEFAULT_PASSWORD)).status_code == 303


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"new_email": "countess@example.org", "current_password": "wrong"},
            "current_password",
            "not your current",
        ),
        (
            {"new_email": "nope", "current_password": DEFAULT_PASSWORD},
            "new_email",
            "such as name@example.com",
        ),
        (
            {"new_email": "ADA@example.com", "current_password": DEFAULT_PASSWORD},
            "new_email",
            "already your email",
        ),
    ],
)
async def test_bad_email_changes_are_refused_inline_and_send_nothing(
    client: httpx.AsyncClient, db: AsyncSession, ada: User, data: dict[str, str], field: str, message: str
) -> None:
    response = await post(client, "/account/email", data, htmx=True)
    assert response.status_code == 422
    assert f'data-field-error="{field}"' in response.text
    assert message in response.text
    assert await messages(db, "change_email") == []
    assert (await db.execute(select(UserToken))).scalars().all() == []


async def test_an_address_taken_in_the_meantime_is_not_applied(
    client: httpx.AsyncClient, db: AsyncSession, ada: User
) -> None:
    await post(
        client, "/account/email", {"new_email": "taken@example.org", "current_password": DEFAULT_PASSWORD}
    )
    [confirm] = await messages(db, "change_email")
    await create_user(db, email="taken@example.org")
    response = await client.get("/account/email/confirm", params={"token": token_in(confirm)})
    assert response.status_code == 409
    assert "belongs to another account" in response.text
    await db.refresh(ada)
    assert ada.email == "ada@example.com"


async def test_a_pending_email_change_can_be_cancelled(
    client: httpx.AsyncClient, db: AsyncSession, ada: User
) -> None:
    await post(
        client, "/account/email", {"new_email": "countess@example.org", "current_password": DEFAULT_PASSWORD}
    )
    [confirm] = await messages(db, "change_email")
    response = await post(client, "/account/email/cancel", {}, htmx=True)
    assert response.status_code == 200
    assert 'data-testid="pending-email"' not in response.text
    assert (
        await client.get("/account/email/confirm", params={"token": token_in(confirm)})
    ).status_code == 400


async def test_an_expired_email_change_link_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, ada: User
) -> None:
    await post(
        client, "/account/email", {"new_email": "countess@example.org", "current_password": DEFAULT_PASSWORD}
    )
    [confirm] = await messages(db, "change_email")
    await db.execute(update(UserToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (
        await client.get("/account/email/confirm", params={"token": token_in(confirm)})
    ).status_code == 400
    await db.refresh(ada)
    assert ada.email == "ada@example.com"


# ---------------------------------------------------------------- password


async def test_changing_the_password_ends_other_sessions_and_keeps_this_one(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, db: AsyncSession, ada: User
) -> None:
    assert (await sign_in(other_browser, ada.email, DEFAULT_PASSWORD)).status_code == 303
    before = client.cookies.get(SESSION_COOKIE)

    response = await post(
        client,
        "/account/password",
        {"current_password": DEFAULT_PASSWORD, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        htmx=True,
    )

    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/account?done=password"
    await db.refresh(ada)
    assert ada.password_hash is not None
    assert verify_password(ada.password_hash, NEW_PASSWORD)
    # This browser continues on a brand-new session; the other one is signed out.
    assert client.cookies.get(SESSION_COOKIE) not in (None, before)
    assert (await client.get("/account")).status_code == 200
    assert (await other_browser.get("/dashboard")).status_code == 303
    live = (
        (
            await db.execute(
                select(UserSession).where(UserSession.user_id == ada.id, UserSession.revoked_at.is_(None))
            )
        )
        .scalars()
        .all()
    )
    assert len(live) == 1
    [notice] = await messages(db, "password_changed")
    assert notice.to_address == ada.email
    [event] = await audit.list(db, action="user.password.change")
    assert event.payload == {"others_signed_out": 1}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"current_password": "wrong", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
            "current_password",
        ),
        (
            {"current_password": DEFAULT_PASSWORD, "password": "short", "password_confirm": "short"},
            "password",
        ),
        (
            {
                "current_password": DEFAULT_PASSWORD,
                "password": "qwerty123456",
                "password_confirm": "qwerty123456",
            },
            "password",
        ),
        (
            {"current_password": DEFAULT_PASSWORD, "password": NEW_PASSWORD, "password_confirm": "different"},
            "password_confirm",
        ),
        (
            {
                "current_password": DEFAULT_PASSWORD,
                "password": DEFAULT_PASSWORD,
                "password_confirm": DEFAULT_PASSWORD,
            },
            "password",
        ),
    ],
)
async def test_bad_password_changes_are_refused_inline(
    client: httpx.AsyncClient, db: AsyncSession, ada: User, data: dict[str, str], field: str
) -> None:
    response = await post(client, "/account/password", data, htmx=True)
    assert response.status_code == 422
    assert response.text.lstrip().startswith('<section id="password-panel"')
    assert f'data-field-error="{field}"' in response.text
    await db.refresh(ada)
    assert ada.password_hash is not None
    assert verify_password(ada.password_hash, DEFAULT_PASSWORD)
    assert await messages(db, "password_changed") == []
    assert await audit.list(db, action="user.password.change") == []


# ---------------------------------------------------------------- JSON API


async def api_token(db: AsyncSession, user: User, scopes: list[str]) -> dict[str, str]:
    secret = new_secret()
    db.add(
        ApiToken(
            user_id=user.id, name="test", prefix=secret[:8], token_hash=secret_hash(secret), scopes=scopes
        )
    )
    await db.flush()
    return {"Authorization": f"Bearer {secret}"}


async def test_api_reads_and_updates_the_account_with_a_scoped_token(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await create_user(db, email="ada@example.com", name="Ada")
    headers = await api_token(db, user, ["account:read", "account:update"])

    read = await client.get("/api/v1/account", headers=headers)
    assert read.status_code == 200
    body = read.json()
    assert body["email"] == "ada@example.com"
    assert body["name"] == "Ada"
    assert body["pending_email"] is None
    assert "password_hash" not in body

    patched = await client.patch("/api/v1/account", json={"name": " Countess "}, headers=headers)
    assert patched.status_code == 200
    assert patched.json()["name"] == "Countess"
    [event] = await audit.list(db, action="user.profile.update")
    assert event.actor_type == "api_token"


async def test_api_refuses_missing_scopes_and_unknown_fields(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await create_user(db)
    read_only = await api_token(db, user, ["account:read"])
    assert (await client.get("/api/v1/account", headers=read_only)).status_code == 200
    assert (await client.patch("/api/v1/account", json={"name": "X"}, headers=read_only)).status_code == 403
    assert (await client.get("/api/v1/account")).status_code == 401
    writer = await api_token(db, user, ["account:update"])
    refused = await client.patch("/api/v1/account", json={"email": "x@example.com"}, headers=writer)
    assert refused.status_code == 422
    assert (await client.patch("/api/v1/account", json={"name": ""}, headers=writer)).status_code == 422


async def test_the_api_is_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/v1/openapi.json")).json()
    operations = spec["paths"]["/api/v1/account"]
    assert set(operations) == {"get", "patch"}
    assert {"AccountRead", "AccountUpdate"} <= set(spec["components"]["schemas"])
