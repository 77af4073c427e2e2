"""Signing in through the real pages with httpx, as a browser would."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth import repository as auth_repository
from corral.auth.enrolment import passkey_enrolment
from corral.auth.passkeys import passkeys
from corral.auth.principal import Principal
from corral.kit.actors import Actor
from corral.models.mfa import EnrolmentDelivery
from corral.models.users import User
from corral.rbac.permissions import PASSKEY_ONLY_ROLES, permissions_for
from tests.factories.users import DEFAULT_PASSWORD
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
        if user.role in PASSKEY_ONLY_ROLES and not await auth_repository.passkey_count(db, user.id):
            # An operator's or super-admin's first passkey comes only through an enrolment link.
            await enrol_with_link(client, db, user, authenticator)
        else:
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


async def enrol_with_link(
    client: httpx.AsyncClient,
    db: AsyncSession,
    user: User,
    authenticator: SoftwareAuthenticator,
    *,
    password: str = DEFAULT_PASSWORD,
) -> str:
    """A staff account's first passkey, the only way the panel allows it: a link issued as the CLI
    does, then the link's page and endpoints in a session signed in with the password. Returns the
    link (spent)."""
    issued = await passkey_enrolment.issue(db, Actor.cli("tests"), user, EnrolmentDelivery.CLI)
    assert (await sign_in(client, user.email, password)).status_code == 303
    await register_through_link(client, issued.link, authenticator)
    # As the page says: sign out, then sign in with the new passkey.
    signed_out = await client.post("/logout", headers={**ORIGIN, "X-CSRF-Token": await page_token(client)})
    assert signed_out.status_code in (200, 303), signed_out.text[:300]
    return issued.link


async def register_through_link(
    client: httpx.AsyncClient, link: str, authenticator: SoftwareAuthenticator, name: str = "Test key"
) -> httpx.Response:
    """Open an enrolment link in a signed-in client and answer its ceremony; returns the last answer."""
    page = await client.get(link)
    assert page.status_code == 200, page.text[:300]
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match is not None
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None, "the enrolment page offers no form"
    headers = {**ORIGIN, "X-CSRF-Token": match.group(1)}
    options = await client.post(
        "/account/security/passkeys/enrol/options", json={"token": token.group(1)}, headers=headers
    )
    assert options.status_code == 200, options.text[:300]
    finished = await client.post(
        "/account/security/passkeys/enrol",
        json={"token": token.group(1), "credential": authenticator.create(options.json()), "name": name},
        headers=headers,
    )
    assert finished.status_code == 201, finished.text[:300]
    return finished
