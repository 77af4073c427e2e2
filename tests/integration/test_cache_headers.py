"""Issue 10 point 6a: no page or API answer may be kept by a browser or proxy cache; static assets
keep their long cache."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.deps import PUBLIC
from corral.auth.principal import Principal
from corral.auth.schemas import ApiTokenCreate
from corral.auth.tokens import api_tokens
from corral.models.users import UserRole
from corral.rbac.permissions import Permission, permissions_for
from corral.web.rendering import static_url
from tests.support.admin import People, people_for

NO_STORE = "no-store"


@pytest.fixture
async def app(app: FastAPI) -> FastAPI:
    @app.get("/test/cacheable", dependencies=[PUBLIC])
    async def cacheable() -> PlainTextResponse:
        # A public route that chose its own caching (none of the panel's do today).
        return PlainTextResponse("same for everyone", headers={"Cache-Control": "public, max-age=60"})

    return app


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as found:
        yield found


async def test_signed_in_pages_and_api_answers_are_never_stored(people: People) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    for path in ["/dashboard", "/servers", "/account/security", "/api/v1/account", "/api/v1/servers"]:
        response = await customer.client.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == NO_STORE, path
    # Errors and redirects too.
    missing = await customer.client.get("/servers/999999999")
    assert missing.status_code == 404
    assert missing.headers["cache-control"] == NO_STORE
    refused = await customer.client.get("/admin/users")
    assert refused.status_code == 403
    assert refused.headers["cache-control"] == NO_STORE


async def test_answers_to_a_bearer_token_are_never_stored(people: People, db: AsyncSession) -> None:
    user = await people.user(UserRole.CUSTOMER)
    principal = Principal.of(user, permissions_for(user.role))
    token = await api_tokens.create(
        db, principal, ApiTokenCreate(name="ci", scopes=[Permission.ACCOUNT_READ], expires_in_days=30)
    )
    client = await people.client()
    response = await client.get("/api/v1/account", headers={"Authorization": f"Bearer {token.secret}"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == NO_STORE


async def test_anonymous_pages_api_and_probes_are_not_stored_either(client: httpx.AsyncClient) -> None:
    for path in ["/login", "/register", "/health", "/api/v1/openapi.json", "/api/v1/servers", "/dashboard"]:
        response = await client.get(path)
        assert response.headers["cache-control"] == NO_STORE, (path, response.status_code)


async def test_a_route_s_own_cache_policy_stands_only_for_anonymous_requests(
    client: httpx.AsyncClient,
) -> None:
    anonymous = await client.get("/test/cacheable")
    assert anonymous.headers["cache-control"] == "public, max-age=60"
    with_cookie = await client.get("/test/cacheable", headers={"Cookie": "__Host-corral_session=x"})
    assert with_cookie.headers["cache-control"] == NO_STORE
    with_token = await client.get("/test/cacheable", headers={"Authorization": "Basic eDp5"})
    assert with_token.headers["cache-control"] == NO_STORE


async def test_static_assets_keep_their_long_cache_even_for_signed_in_browsers(people: People) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    asset = await customer.client.get(static_url("css/corral.css"))
    assert asset.status_code == 200
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    unversioned = await customer.client.get("/static/css/corral.css")
    assert unversioned.headers["cache-control"] == "no-cache"
