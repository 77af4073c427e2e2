"""Signing in through the real pages with httpx, as a browser would."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.passkeys import passkeys
from corral.auth.principal import Principal
from corral.models.users import User
from corral.rbac.permissions import permissions_for
from tests.support.authenticator import SoftwareAuthenticator

ORIGIN = {"Origin": "https://panel.test"}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)


async def form_token(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text[:300]
    return csrf_from(page.text)


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    token = await form_token(client, "/login")
    return await client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token, "next": "/dashboard"},
        headers=ORIGIN,
    )


async def page_token(client: httpx.AsyncClient, path: str = "/dashboard") -> str:
    """The CSRF token a signed-in page carries (from its meta tag or forms)."""
    page = await client.get(path)
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match is not None, f"no csrf meta tag on {path}"
    return match.group(1)


async def passkey_sign_in(
    client: httpx.AsyncClient,
    db: AsyncSession,
    user: User,
    authenticator: SoftwareAuthenticator | None = None,
) -> SoftwareAuthenticator:
    """Give ``user`` a passkey on a software authenticator and sign in with it through the pages'
    own endpoints, as the passkeys script does; the session is a passkey one with a fresh step-up."""
    authenticator = authenticator or SoftwareAuthenticator()
    if not authenticator.credentials:
        principal = Principal.of(user, permissions_for(user.role))
        options = await passkeys.registration_options(db, principal)
        await passkeys.finish_registration(db, principal, authenticator.create(options), name="Test key")
    token = await form_token(client, "/login")
    headers = {**ORIGIN, "X-CSRF-Token": token}
    options_response = await client.post("/login/passkey/options", json={}, headers=headers)
    assert options_response.status_code == 200, options_response.text[:300]
    assertion = authenticator.get(options_response.json())
    signed_in = await client.post(
        "/login/passkey", json={"credential": assertion, "next": "/dashboard"}, headers=headers
    )
    assert signed_in.status_code == 200, signed_in.text[:300]
    return authenticator
