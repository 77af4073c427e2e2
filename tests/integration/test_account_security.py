"""The account security page: sessions and API tokens, through HTML and HTMX as a browser sends them."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import audit
from corral.auth.schemas import describe_device
from corral.auth.security_views import ago
from corral.kit.clock import utcnow
from corral.models.auth import ApiToken, UserSession
from corral.models.users import User, UserRole
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, page_token, passkey_sign_in, sign_in

PAGE = "/account/security"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
_SECRET = re.compile(r"crl_[A-Za-z0-9_-]{43}")


def browser(client: httpx.AsyncClient, user_agent: str) -> httpx.AsyncClient:
    """Another browser on the same app, with its own cookie jar."""
    return httpx.AsyncClient(
        transport=client._transport, base_url="https://panel.test", headers={"User-Agent": user_agent}
    )


async def signed_in(client: httpx.AsyncClient, db: AsyncSession, **overrides: str) -> User:
    user = await create_user(db, **overrides)
    assert (await sign_in(client, user.email, DEFAULT_PASSWORD)).status_code == 303
    return user


def htmx(csrf: str) -> dict[str, str]:
    return {**ORIGIN, "HX-Request": "true", "X-CSRF-Token": csrf}


async def session_ids(db: AsyncSession, user: User) -> list[int]:
    statement = select(UserSession.id).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    return list((await db.execute(statement.order_by(UserSession.id))).scalars())


async def test_the_page_lists_sessions_in_plain_words(client: httpx.AsyncClient, db: AsyncSession) -> None:
    client.headers["User-Agent"] = FIREFOX
    user = await signed_in(client, db)
    async with browser(client, IPHONE) as phone:
        assert (await sign_in(phone, user.email, DEFAULT_PASSWORD)).status_code == 303

    page = await client.get(PAGE)

    assert page.status_code == 200
    assert "Firefox on Windows" in page.text
    assert "Safari on iPhone" in page.text
    assert page.text.count("This device") == 1
    assert "Sign out everywhere else" in page.text
    assert 'hx-post="/account/security/sessions/' in page.text


async def test_anonymous_visitors_are_sent_to_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get(PAGE)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Faccount%2Fsecurity"


async def test_revoking_a_session_signs_that_browser_out(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user = await signed_in(client, db)
    async with browser(client, IPHONE) as phone:
        assert (await sign_in(phone, user.email, DEFAULT_PASSWORD)).status_code == 303
        mine, theirs = await session_ids(db, user)
        csrf = await page_token(client, PAGE)

        response = await client.post(f"{PAGE}/sessions/{theirs}/revoke", headers=htmx(csrf))

        assert response.status_code == 200
        assert 'id="sessions-panel"' in response.text
        assert "<html" not in response.text  # just the panel, for HTMX to swap
        assert f'data-session-id="{theirs}"' not in response.text
        assert f'data-session-id="{mine}"' in response.text
        assert "corral:toast" in response.headers["hx-trigger"]
        assert (await phone.get("/dashboard")).status_code == 303
    assert (await client.get("/dashboard")).status_code == 200
    assert await session_ids(db, user) == [mine]


async def test_revoking_the_current_session_signs_you_out(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await signed_in(client, db)
    [mine] = await session_ids(db, user)
    csrf = await page_token(client, PAGE)

    response = await client.post(f"{PAGE}/sessions/{mine}/revoke", headers=htmx(csrf))

    assert response.status_code == 200
    assert response.headers["hx-redirect"] == "/login?signed_out=1"
    assert client.cookies.get("__Host-corral_session") is None
    assert (await client.get("/dashboard")).status_code == 303


async def test_sign_out_everywhere_else_keeps_this_browser(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await signed_in(client, db)
    others = [browser(client, IPHONE), browser(client, FIREFOX)]
    for other in others:
        assert (await sign_in(other, user.email, DEFAULT_PASSWORD)).status_code == 303
    csrf = await page_token(client, PAGE)

    response = await client.post(f"{PAGE}/sessions/revoke-others", headers=htmx(csrf))

    assert response.status_code == 200
    assert "Signed out 2 other session(s)." in response.headers["hx-trigger"]
    for other in others:
        assert (await other.get("/dashboard")).status_code == 303
        await other.aclose()
    assert (await client.get("/dashboard")).status_code == 200
    assert len(await session_ids(db, user)) == 1
    [event] = await audit.list(db, action="auth.sign_out_others")
    assert event.payload == {"sessions_ended": 2}


async def test_without_htmx_actions_redirect_back_to_the_page(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await signed_in(client, db)
    async with browser(client, IPHONE) as phone:
        await sign_in(phone, user.email, DEFAULT_PASSWORD)
    _, theirs = await session_ids(db, user)
    csrf = await page_token(client, PAGE)

    response = await client.post(
        f"{PAGE}/sessions/{theirs}/revoke", data={"csrf_token": csrf}, headers=ORIGIN
    )

    assert response.status_code == 303
    assert response.headers["location"] == PAGE


async def test_another_users_session_is_not_found(client: httpx.AsyncClient, db: AsyncSession) -> None:
    owner = await create_user(db)
    async with browser(client, IPHONE) as theirs:
        await sign_in(theirs, owner.email, DEFAULT_PASSWORD)
        [their_session] = await session_ids(db, owner)
        await signed_in(client, db)
        csrf = await page_token(client, PAGE)

        response = await client.post(f"{PAGE}/sessions/{their_session}/revoke", headers=htmx(csrf))

        assert response.status_code == 404
        assert response.headers["hx-reswap"] == "none"
        assert (await theirs.get("/dashboard")).status_code == 200


async def test_the_page_refuses_a_post_without_the_csrf_token(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await signed_in(client, db)
    response = await client.post(f"{PAGE}/sessions/revoke-others", headers=ORIGIN)
    assert response.status_code == 403


async def test_a_token_made_on_the_page_is_shown_once(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await signed_in(client, db)
    csrf = await page_token(client, PAGE)

    response = await client.post(
        f"{PAGE}/tokens",
        data={
            "name": "Deploy bot",
            "scopes": ["account:read", "sessions:manage"],
            "expires_in_days": "never",
        },
        headers=htmx(csrf),
    )

    assert response.status_code == 200
    assert 'id="tokens-panel"' in response.text
    assert response.headers["cache-control"] == "no-store"
    [secret] = set(_SECRET.findall(response.text))
    assert "Deploy bot" in response.text
    assert "corral:toast" in response.headers["hx-trigger"]
    row = (await db.execute(select(ApiToken))).scalar_one()
    assert row.scopes == ["account:read", "sessions:manage"]
    assert row.expires_at is None
    assert row.token_hash != secret
    # The page never shows it again, only the prefix.
    again = await client.get(PAGE)
    assert secret not in again.text
    assert f"{row.prefix}…" in again.text
    assert _SECRET.search(again.text) is None
    # And it works.
    api = await client.get("/api/v1/account/sessions", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 200


async def test_the_form_offers_only_the_scopes_the_role_holds(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await signed_in(client, db)
    customer_page = (await client.get(PAGE)).text
    assert 'value="tokens:manage"' in customer_page
    assert 'value="users:read"' not in customer_page

    async with browser(client, FIREFOX) as admin_browser:
        admin = await create_user(db, role=UserRole.SUPER_ADMIN.value)
        # A password session of a super-admin acts as a customer: it is offered customer scopes.
        assert (await sign_in(admin_browser, admin.email, DEFAULT_PASSWORD)).status_code == 303
        assert 'value="users:read"' not in (await admin_browser.get(PAGE)).text
        admin_browser.cookies.clear()
        await passkey_sign_in(admin_browser, db, admin)
        admin_page = (await admin_browser.get(PAGE)).text
    assert 'value="users:read"' in admin_page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "scopes": ["account:read"]}, "Give the token a name"),
        ({"name": "no scopes"}, "Choose at least one permission"),
        ({"name": "forged", "scopes": ["users:block"]}, "does not hold users:block"),
        ({"name": "bad expiry", "scopes": ["account:read"], "expires_in_days": "9999"}, "Choose when"),
    ],
)
async def test_an_invalid_token_form_comes_back_with_the_error(
    client: httpx.AsyncClient, db: AsyncSession, data: dict[str, object], message: str
) -> None:
    await signed_in(client, db)
    csrf = await page_token(client, PAGE)

    fragment = await client.post(f"{PAGE}/tokens", data=data, headers=htmx(csrf))
    full_page = await client.post(f"{PAGE}/tokens", data={**data, "csrf_token": csrf}, headers=ORIGIN)

    assert fragment.status_code == 200  # htmx swaps only 2xx answers
    assert message in fragment.text
    assert 'aria-invalid="true"' in fragment.text or "field--error" in fragment.text
    assert full_page.status_code == 422
    assert message in full_page.text
    assert "<html" in full_page.text
    assert (await db.execute(select(ApiToken))).first() is None


async def test_a_duplicate_name_is_reported_next_to_the_field(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await signed_in(client, db)
    csrf = await page_token(client, PAGE)
    data = {"name": "CI", "scopes": ["account:read"], "expires_in_days": "30"}
    assert (await client.post(f"{PAGE}/tokens", data=data, headers=htmx(csrf))).status_code == 200

    again = await client.post(f"{PAGE}/tokens", data=data, headers=htmx(csrf))

    assert "already have a token with that name" in again.text
    assert 'id="token-name-error"' in again.text
    assert len((await db.execute(select(ApiToken))).scalars().all()) == 1


async def test_revoking_a_token_on_the_page(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await signed_in(client, db)
    csrf = await page_token(client, PAGE)
    made = await client.post(
        f"{PAGE}/tokens", data={"name": "old", "scopes": ["account:read"]}, headers=htmx(csrf)
    )
    [secret] = set(_SECRET.findall(made.text))
    token_id = (await db.execute(select(ApiToken.id))).scalar_one()

    response = await client.post(f"{PAGE}/tokens/{token_id}/revoke", headers=htmx(csrf))

    assert response.status_code == 200
    assert f'data-token-id="{token_id}"' not in response.text
    assert "You have no API tokens yet." in response.text
    assert (
        await client.get("/api/v1/account/tokens", headers={"Authorization": f"Bearer {secret}"})
    ).status_code == 401
    [event] = await audit.list(db, action="auth.token.revoke")
    assert event.payload["name"] == "old"


async def test_another_users_token_cannot_be_revoked_from_the_page(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    async with browser(client, IPHONE) as owner_browser:
        await signed_in(owner_browser, db)
        owner_csrf = await page_token(owner_browser, PAGE)
        await owner_browser.post(
            f"{PAGE}/tokens", data={"name": "theirs", "scopes": ["account:read"]}, headers=htmx(owner_csrf)
        )
    token_id = (await db.execute(select(ApiToken.id))).scalar_one()
    await signed_in(client, db)
    csrf = await page_token(client, PAGE)

    response = await client.post(f"{PAGE}/tokens/{token_id}/revoke", headers=htmx(csrf))

    assert response.status_code == 404
    assert (await db.execute(select(ApiToken.revoked_at))).scalar_one() is None


@pytest.mark.parametrize(
    ("agent", "words"),
    [
        (FIREFOX, "Firefox on Windows"),
        (IPHONE, "Safari on iPhone"),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0 Safari/537.36",
            "Chrome on Linux",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0 Safari/537.36 Edg/126.0",
            "Edge on macOS",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile",
            "Chrome on Android",
        ),
        ("curl/8.5.0", "curl"),
        ("python-httpx/0.28.1", "python-httpx"),
        ("Mozilla/5.0 (compatible; SomethingOdd)", "Web browser"),
        ("", "Unknown device"),
        (None, "Unknown device"),
    ],
)
def test_user_agents_in_plain_words(agent: str | None, words: str) -> None:
    assert describe_device(agent) == words


def test_times_read_like_speech() -> None:
    now = utcnow()
    from datetime import timedelta

    assert ago(now, now) == "just now"
    assert ago(now - timedelta(minutes=1), now) == "1 minute ago"
    assert ago(now - timedelta(hours=5, minutes=3), now) == "5 hours ago"
    assert ago(now + timedelta(days=30), now) == "in 30 days"
    assert ago(None, now) == "Never"
