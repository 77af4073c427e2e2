"""Server-side sessions: expiry, regeneration, sign-out, and nothing taken from client input."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import audit
from corral.auth.errors import SessionNotFound
from corral.auth.principal import Principal
from corral.auth.service import auth
from corral.kit.clock import utcnow
from corral.models.auth import AuthMethod, UserSession
from corral.models.users import User
from corral.rbac.permissions import permissions_for
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, page_token, sign_in

SESSION_COOKIE = "__Host-corral_session"


async def signed_in(client: httpx.AsyncClient, db: AsyncSession) -> User:
    user = await create_user(db)
    response = await sign_in(client, user.email, DEFAULT_PASSWORD)
    assert response.status_code == 303
    return user


async def test_idle_session_expires_after_fifteen_minutes(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await signed_in(client, db)
    assert (await client.get("/dashboard")).status_code == 200
    await db.execute(update(UserSession).values(last_seen_at=utcnow() - timedelta(minutes=15, seconds=1)))
    response = await client.get("/dashboard")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fdashboard"


async def test_activity_keeps_a_session_alive(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await signed_in(client, db)
    await db.execute(update(UserSession).values(last_seen_at=utcnow() - timedelta(minutes=14)))
    assert (await client.get("/dashboard")).status_code == 200
    seen = (await db.execute(select(UserSession.last_seen_at))).scalar_one()
    assert utcnow() - seen < timedelta(seconds=5)


async def test_session_ends_seven_days_after_sign_in_whatever_the_activity(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await signed_in(client, db)
    row = (await db.execute(select(UserSession))).scalar_one()
    assert timedelta(days=7) - (row.expires_at - row.created_at) < timedelta(seconds=1)
    await db.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await client.get("/dashboard")).status_code == 303


async def test_signing_in_never_keeps_a_session_id_the_browser_already_had(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await create_user(db)
    planted = "attacker-chosen-session-id-attacker-chosen-id"
    client.cookies.set(SESSION_COOKIE, planted, domain="panel.test")
    await sign_in(client, user.email, DEFAULT_PASSWORD)
    issued = client.cookies.get(SESSION_COOKIE)
    assert issued is not None
    assert issued != planted
    # Signing in again from a signed-in browser also starts a new session.
    token = await page_token(client)
    data = {"email": user.email, "password": DEFAULT_PASSWORD, "csrf_token": token}
    assert (await client.post("/login", data=data, headers=ORIGIN)).status_code == 303
    assert client.cookies.get(SESSION_COOKIE) not in (issued, planted)


async def test_a_privilege_change_gives_the_session_a_new_id(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await signed_in(client, db)
    before = client.cookies.get(SESSION_COOKIE)
    user.role = "support"
    await auth.privileges_changed(db, user.id)
    response = await client.get("/dashboard")
    assert response.status_code == 200
    after = client.cookies.get(SESSION_COOKIE)
    assert after is not None
    assert after != before
    # The old id is dead.
    stale = httpx.AsyncClient(transport=client._transport, base_url="https://panel.test")
    stale.cookies.set(SESSION_COOKIE, before or "", domain="panel.test")
    async with stale:
        assert (await stale.get("/dashboard")).status_code == 303


async def test_sign_out_ends_the_session_on_the_server(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await signed_in(client, db)
    cookie = client.cookies.get(SESSION_COOKIE)
    token = await page_token(client)
    response = await client.post("/logout", data={"csrf_token": token}, headers=ORIGIN)
    assert response.status_code == 303
    assert client.cookies.get(SESSION_COOKIE) is None
    row = (await db.execute(select(UserSession))).scalar_one()
    assert row.revoked_reason == "signed_out"
    replay = httpx.AsyncClient(transport=client._transport, base_url="https://panel.test")
    replay.cookies.set(SESSION_COOKIE, cookie or "", domain="panel.test")
    async with replay:
        assert (await replay.get("/dashboard")).status_code == 303
    assert [event.action for event in await audit.list(db, action="auth.sign_out")] == ["auth.sign_out"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x",
        "a" * 5000,
        "abc\r\nSet-Cookie: evil=1",
        "'; DROP TABLE user_sessions; --",
        "%C3%BCn%C3%AFc%C3%B8d%C3%A9",
    ],
)
async def test_a_garbage_cookie_is_just_an_anonymous_visitor(
    client: httpx.AsyncClient, db: AsyncSession, value: str
) -> None:
    response = await client.get("/dashboard", headers={"Cookie": f"{SESSION_COOKIE}={value}"})
    assert response.status_code == 303
    assert "evil" not in response.headers.get("set-cookie", "")


async def _principal(db: AsyncSession, user: User) -> Principal:
    return Principal.of(user, permissions_for(user.role))


async def test_sign_out_everywhere_ends_every_session(db: AsyncSession) -> None:
    user = await create_user(db)
    for _ in range(3):
        await auth.start_session(db, user, ip="192.0.2.1", user_agent="pytest", method=AuthMethod.PASSWORD)
    principal = await _principal(db, user)
    assert len(await auth.list_sessions(db, principal)) == 3
    assert await auth.sign_out_everywhere(db, principal) == 3
    assert await auth.list_sessions(db, principal) == []


async def test_nobody_can_revoke_another_users_session(db: AsyncSession) -> None:
    owner = await create_user(db)
    other = await create_user(db)
    await auth.start_session(db, owner, ip=None, user_agent=None, method=AuthMethod.PASSWORD)
    [theirs] = await auth.list_sessions(db, await _principal(db, owner))
    with pytest.raises(SessionNotFound):
        await auth.revoke_session(db, await _principal(db, other), theirs.id)
    assert (await db.get(UserSession, theirs.id)) is not None
    assert (await auth.list_sessions(db, await _principal(db, owner)))[0].revoked_at is None
