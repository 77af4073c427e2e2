"""Registration, email verification and verification resends, through the real pages."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import audit
from corral.auth.secrets import secret_hash
from corral.config import Settings
from corral.kit.clock import utcnow
from corral.models.auth import UserToken
from corral.models.email import EmailMessage
from corral.models.users import AccountRequest, User, UserStatus
from corral.users.passwords import verify_password
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, form_token, sign_in

PASSWORD = "violet anchor drifts north"


async def register(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    data = {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        **fields,
    }
    data["csrf_token"] = await form_token(client, "/register")
    return await client.post("/register", data=data, headers=ORIGIN)


async def emails_to(db: AsyncSession, address: str) -> list[EmailMessage]:
    statement = select(EmailMessage).where(EmailMessage.to_address == address).order_by(EmailMessage.id)
    return list((await db.execute(statement)).scalars())


def token_of(message: EmailMessage) -> str:
    link = str(message.context["link"])
    [token] = parse_qs(urlsplit(link).query)["token"]
    return token


async def count(db: AsyncSession, model: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model)) or 0)


# ---------------------------------------------------------------- registration


async def test_registration_creates_an_unverified_account_and_emails_a_link(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    response = await register(client)

    assert response.status_code == 200
    assert "Check your email" in response.text
    user = (await db.execute(select(User).where(User.email == "ada@example.com"))).scalar_one()
    assert user.status == UserStatus.PENDING_VERIFICATION
    assert user.email_verified_at is None
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, PASSWORD)
    [message] = await emails_to(db, "ada@example.com")
    assert message.template == "verify_email"
    assert message.context["name"] == "Ada Lovelace"
    assert message.context["valid_minutes"] == 24 * 60
    assert str(message.context["link"]).startswith("https://panel.test/verify?token=")
    [event] = await audit.list(db, action="user.register")
    assert event.result == "success"
    assert event.target_id == str(user.id)


async def test_the_token_is_stored_only_as_its_hash_and_lasts_24_hours(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await register(client)
    [message] = await emails_to(db, "ada@example.com")
    secret = token_of(message)
    [row] = (await db.execute(select(UserToken))).scalars().all()
    assert row.token_hash == secret_hash(secret)
    assert secret not in {row.token_hash, row.email}
    assert row.purpose == "verify_email"
    assert abs((row.expires_at - row.created_at) - timedelta(hours=24)) < timedelta(seconds=1)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"email": "not-an-address"}, "email", "Enter an email address such as name@example.com."),
        ({"email": ""}, "email", "Enter your email address."),
        ({"name": "  "}, "name", "Enter your name."),
        ({"password": "too short", "password_confirm": "too short"}, "password", "Use at least 12"),
        ({"password": "x" * 129, "password_confirm": "x" * 129}, "password", "Use at most 128"),
        (
            {"password": "1qaz2wsx3edc", "password_confirm": "1qaz2wsx3edc"},
            "password",
            "commonly used passwords",
        ),
        (
            {"password": "Ada is my name, ok?", "password_confirm": "Ada is my name, ok?"},
            "password",
            "name part of your email address",
        ),
        ({"password_confirm": PASSWORD + "!"}, "password_confirm", "The two passwords do not match."),
    ],
)
async def test_bad_input_redisplays_the_form_with_the_error_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, fields: dict[str, str], field: str, message: str
) -> None:
    response = await register(client, **fields)

    assert response.status_code == 422
    error = re.search(rf'data-field-error="{field}">([^<]*)<', response.text)
    assert error is not None, response.text
    assert message in error.group(1)
    assert 'aria-invalid="true"' in response.text
    # What was typed comes back, except passwords.
    if fields.get("email", "ada@example.com"):
        assert f'value="{fields.get("email", "ada@example.com")}"' in response.text
    assert PASSWORD not in response.text
    for model in (User, UserToken, EmailMessage, AccountRequest):
        assert await count(db, model) == 0
    assert await audit.list(db, action="user.register") == []


async def test_a_taken_email_looks_like_a_new_registration_and_emails_the_owner(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    owner = await create_user(db, email="ada@example.com", name="The Real Ada")
    fresh = await register(client, email="new@example.com")
    taken = await register(client, email="ADA@example.com")

    assert taken.status_code == fresh.status_code == 200
    strip = re.compile(
        r"new@example\.com|ADA@example\.com|" + r'name="csrf_token" value="[^"]*"|content="[^"]*"'
    )
    assert strip.sub("", taken.text) == strip.sub("", fresh.text)
    assert await count(db, User) == 2
    # The owner, who is verified, gets a way back in rather than a second account.
    [notice] = await emails_to(db, "ada@example.com")
    assert notice.template == "reset_password"
    assert notice.context["name"] == "The Real Ada"
    failures = [event for event in await audit.list(db, action="user.register") if event.result == "failure"]
    assert [(event.target_id, event.reason) for event in failures] == [(str(owner.id), "email_taken")]
    assert owner.password_hash is not None
    assert verify_password(owner.password_hash, DEFAULT_PASSWORD)


async def test_a_taken_unverified_email_gets_a_new_verification_link(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await register(client)
    await register(client, name="Someone Else")
    first, second = await emails_to(db, "ada@example.com")
    assert first.template == second.template == "verify_email"
    assert second.context["name"] == "Ada Lovelace"
    # Only the newest link works.
    assert (await client.get("/verify", params={"token": token_of(first)})).status_code == 400
    assert (await client.get("/verify", params={"token": token_of(second)})).status_code == 200


async def test_registration_is_rate_limited_per_ip(client: httpx.AsyncClient, db: AsyncSession) -> None:
    for number in range(5):
        assert (await register(client, email=f"user{number}@example.com")).status_code == 200

    response = await register(client, email="one-too-many@example.com")

    assert response.status_code == 429
    assert "Too many sign-ups from your network" in response.text
    assert 0 < int(response.headers["Retry-After"]) <= 300
    assert await count(db, User) == 5
    # The window is five minutes: once the earlier requests are older, registering works again.
    await db.execute(update(AccountRequest).values(created_at=utcnow() - timedelta(minutes=5, seconds=1)))
    assert (await register(client, email="later@example.com")).status_code == 200


async def test_signed_in_users_are_sent_to_the_dashboard(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user = await create_user(db)
    await sign_in(client, user.email, DEFAULT_PASSWORD)
    response = await client.get("/register")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"


async def test_registration_refuses_a_forged_request(client: httpx.AsyncClient, db: AsyncSession) -> None:
    data = {"email": "ada@example.com", "name": "Ada", "password": PASSWORD, "password_confirm": PASSWORD}
    response = await client.post("/register", data=data, headers=ORIGIN)
    assert response.status_code == 403
    assert await count(db, User) == 0


# ---------------------------------------------------------------- verification


async def test_following_the_link_verifies_and_activates_then_sign_in_works(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await register(client)
    refused = await sign_in(client, "ada@example.com", PASSWORD)
    assert refused.status_code == 403
    [message] = await emails_to(db, "ada@example.com")

    response = await client.get("/verify", params={"token": token_of(message)})

    assert response.status_code == 200
    assert "Your email is confirmed" in response.text
    user = (await db.execute(select(User).where(User.email == "ada@example.com"))).scalar_one()
    assert user.status == UserStatus.ACTIVE
    assert user.email_verified_at is not None
    welcome = (await emails_to(db, "ada@example.com"))[-1]
    assert welcome.template == "welcome"
    [event] = await audit.list(db, action="user.email.verify")
    assert event.target_id == str(user.id)
    assert (await sign_in(client, "ada@example.com", PASSWORD)).status_code == 303


async def test_with_admin_approval_the_account_waits_after_verification(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    approval = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"require_admin_approval": True})}
    )
    db.info["settings"] = approval
    try:
        await register(client)
        [message] = await emails_to(db, "ada@example.com")
        response = await client.get("/verify", params={"token": token_of(message)})
    finally:
        db.info["settings"] = settings
    assert response.status_code == 200
    assert "approval" in response.text
    user = (await db.execute(select(User).where(User.email == "ada@example.com"))).scalar_one()
    assert user.status == UserStatus.PENDING_APPROVAL
    assert user.email_verified_at is not None
    assert [m.template for m in await emails_to(db, "ada@example.com")] == ["verify_email"]


async def test_a_verification_link_works_once(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await register(client)
    [message] = await emails_to(db, "ada@example.com")
    assert (await client.get("/verify", params={"token": token_of(message)})).status_code == 200
    again = await client.get("/verify", params={"token": token_of(message)})
    assert again.status_code == 400
    assert "This link no longer works" in again.text
    assert len(await audit.list(db, action="user.email.verify")) == 1


async def test_an_expired_verification_link_is_refused(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await register(client)
    [message] = await emails_to(db, "ada@example.com")
    await db.execute(update(UserToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = await client.get("/verify", params={"token": token_of(message)})
    assert response.status_code == 400
    user = (await db.execute(select(User))).scalar_one()
    assert user.status == UserStatus.PENDING_VERIFICATION


@pytest.mark.parametrize("token", [None, "", "unknown-token", "x" * 5000])
async def test_unknown_verification_links_get_a_clear_page(
    client: httpx.AsyncClient, token: str | None
) -> None:
    response = await client.get("/verify", params={"token": token} if token is not None else None)
    assert response.status_code == 400
    assert "This link no longer works" in response.text
    assert 'href="/verify/resend"' in response.text


# ---------------------------------------------------------------- resending


async def resend(client: httpx.AsyncClient, email: str) -> httpx.Response:
    token = await form_token(client, "/verify/resend")
    return await client.post("/verify/resend", data={"email": email, "csrf_token": token}, headers=ORIGIN)


async def test_resend_sends_a_new_link_and_retires_the_old_one(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await register(client)
    response = await resend(client, "ada@example.com")
    assert response.status_code == 200
    first, second = await emails_to(db, "ada@example.com")
    assert (await client.get("/verify", params={"token": token_of(first)})).status_code == 400
    assert (await client.get("/verify", params={"token": token_of(second)})).status_code == 200


async def test_resend_does_not_reveal_whether_an_account_exists(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await create_user(db, email="active@example.com")
    unknown = await resend(client, "nobody@example.com")
    active = await resend(client, "active@example.com")
    assert unknown.status_code == active.status_code == 200
    strip = re.compile(r"nobody@example\.com|active@example\.com|" + r'value="[^"]*"|content="[^"]*"')
    assert strip.sub("", unknown.text) == strip.sub("", active.text)
    assert await count(db, EmailMessage) == 0


async def test_resend_is_rate_limited_per_address(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await register(client)
    for _ in range(3):
        assert (await resend(client, "ada@example.com")).status_code == 200
    limited = await resend(client, "Ada@Example.com")
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers
    # One at registration and three resends; the refused one sent nothing.
    assert len(await emails_to(db, "ada@example.com")) == 4


async def test_the_check_email_page_offers_a_resend(client: httpx.AsyncClient) -> None:
    response = await register(client)
    assert 'action="/verify/resend"' in response.text
    assert 'name="email" value="ada@example.com"' in response.text
