"""Every unsafe method needs the session's CSRF token and a request from our own origin."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.secrets import new_secret, secret_hash
from corral.kit.clock import utcnow
from corral.models.auth import ApiToken, UserSession
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, form_token, page_token, sign_in


async def signed_in(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user = await create_user(db)
    assert (await sign_in(client, user.email, DEFAULT_PASSWORD)).status_code == 303


async def still_signed_in(db: AsyncSession) -> bool:
    row = (await db.execute(select(UserSession))).scalar_one()
    return row.revoked_at is None


async def test_a_post_without_a_token_is_refused(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await signed_in(client, db)
    response = await client.post("/logout", headers=ORIGIN)
    assert response.status_code == 403
    assert await still_signed_in(db)


async def test_a_wrong_token_is_refused(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await signed_in(client, db)
    response = await client.post("/logout", data={"csrf_token": "0" * 64}, headers=ORIGIN)
    assert response.status_code == 403
    assert await still_signed_in(db)


async def test_a_foreign_origin_is_refused_even_with_the_token(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await signed_in(client, db)
    token = await page_token(client)
    for headers in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/page"}, {}):
        response = await client.post("/logout", data={"csrf_token": token}, headers=headers)
        assert response.status_code == 403, headers
    assert await still_signed_in(db)


async def test_the_right_token_from_our_origin_is_accepted(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await signed_in(client, db)
    token = await page_token(client)
    response = await client.post("/logout", headers={**ORIGIN, "X-CSRF-Token": token})
    assert response.status_code == 303
    assert not await still_signed_in(db)


async def test_the_sign_in_form_is_protected_too(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user = await create_user(db)
    data = {"email": user.email, "password": DEFAULT_PASSWORD}
    assert (await client.post("/login", data=data, headers=ORIGIN)).status_code == 403
    token = await form_token(client, "/login")
    assert (
        await client.post("/login", data={**data, "csrf_token": token}, headers=ORIGIN)
    ).status_code == 303


async def test_a_token_from_another_browser_does_not_work(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await create_user(db)
    token = await form_token(client, "/login")
    other = httpx.AsyncClient(transport=client._transport, base_url="https://panel.test")
    async with other:
        await other.get("/login")
        data = {"email": user.email, "password": DEFAULT_PASSWORD, "csrf_token": token}
        assert (await other.post("/login", data=data, headers=ORIGIN)).status_code == 403


async def test_bearer_tokens_need_no_csrf_token(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user = await create_user(db)
    secret = new_secret()
    db.add(
        ApiToken(
            user_id=user.id,
            name="ci",
            prefix=secret[:8],
            token_hash=secret_hash(secret),
            scopes=["sessions:manage"],
            created_at=utcnow(),
        )
    )
    await db.flush()
    # No cookie, no Origin, no CSRF token: a bearer token is not sent by a browser on its own.
    response = await client.post("/logout", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 303
