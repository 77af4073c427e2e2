"""Issue 10 point 2: no redirect target taken from a request can send a browser to another site.

Browsers parse a Location (or a ``location.assign`` argument) as a WHATWG URL: tabs and newlines
vanish, leading/trailing controls and spaces are trimmed, ``\\`` is ``/``. Every vector below
reads as another host to a browser; the panel must fall back to its own default instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.passkeys import passkeys
from corral.auth.principal import Principal
from corral.models.users import UserRole
from corral.rbac.permissions import permissions_for
from corral.web.redirects import local_path, path_of_url, safe_redirect
from corral.web.rendering import redirect
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.admin import People, people_for
from tests.support.auth import ORIGIN, form_token
from tests.support.authenticator import SoftwareAuthenticator

# Each of these is "another host" once a browser has parsed it.
OFF_SITE = [
    "/\t/evil.example",  # next=/%09/evil.example, decoded: the reported bypass
    "/\n/evil.example",
    "/\r/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    "/\t\t/evil.example/path?x=1",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "/\t\\evil.example",
    "//evil.example",
    "///evil.example",
    " //evil.example",
    "\x00//evil.example",
    "\x1f/\t/evil.example",
    "//evil.example ",
    "https://evil.example",
    "http:evil.example",
    "HTTPS://evil.example/",
    "javascript:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "./evil",
    "",
    "/ok\x00path",  # not off-site, but a control character has no place in a link
    "/ok\x7fpath",
]
# Paths on this site stay exactly what was asked for.
ON_SITE = ["/dashboard", "/servers/12?done=setup", "/account/security#passkeys", "/a/b/../c", "/%2F%2Fevil"]


@pytest.mark.parametrize("target", OFF_SITE)
def test_off_site_targets_fall_back_to_the_default(target: str) -> None:
    assert local_path(target) is None
    assert safe_redirect(target) == "/dashboard"
    assert safe_redirect(target, default="/login") == "/login"


@pytest.mark.parametrize("target", ON_SITE)
def test_paths_on_this_site_are_kept(target: str) -> None:
    assert safe_redirect(target) == target


def test_a_tab_inside_an_on_site_path_is_dropped_as_a_browser_would() -> None:
    assert safe_redirect("/serv\ters/1") == "/servers/1"
    assert safe_redirect("  /servers/1\n") == "/servers/1"


def test_a_referer_gives_only_a_local_path() -> None:
    assert path_of_url("https://panel.test/servers/1?x=2") == "/servers/1?x=2"
    # The host is dropped on purpose; a path that reads as a host is refused.
    assert path_of_url("https://other.example/servers/1") == "/servers/1"
    assert path_of_url("https://panel.test//evil.example/x") is None
    assert path_of_url("https://panel.test/\\evil.example") is None
    assert path_of_url(None) is None


@pytest.mark.parametrize("target", ["//evil.example", "/\t/evil.example", "https://evil.example"])
def test_the_shared_redirect_helper_never_leaves_the_site(target: str) -> None:
    from starlette.requests import Request

    plain = Request({"type": "http", "headers": [], "method": "POST", "path": "/"})
    htmx = Request({"type": "http", "headers": [(b"hx-request", b"true")], "method": "POST", "path": "/"})
    assert redirect(plain, target).headers["location"] == "/dashboard"
    assert redirect(htmx, target).headers["hx-redirect"] == "/dashboard"


# ---------------------------------------------------------------- over HTTP

HTTP_VECTORS = [
    "/\t/evil.example",
    "/\\evil.example",
    "\\/evil.example",
    " //evil.example",
    "/\n/evil.example",
]


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as found:
        yield found


def _no_evil(text: str) -> None:
    assert "evil.example" not in text


@pytest.mark.parametrize("target", HTTP_VECTORS)
async def test_password_sign_in_never_redirects_off_site(
    client: httpx.AsyncClient, db: AsyncSession, target: str
) -> None:
    user = await create_user(db)
    token = await form_token(client, f"/login?{urlencode({'next': target})}")
    response = await client.post(
        "/login",
        data={"email": user.email, "password": DEFAULT_PASSWORD, "csrf_token": token, "next": target},
        headers=ORIGIN,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    # Already signed in: the sign-in page sends the browser on, to this site only.
    again = await client.get("/login", params={"next": target})
    assert again.status_code == 303
    assert again.headers["location"] == "/dashboard"


async def test_the_sign_in_form_does_not_carry_an_off_site_target(client: httpx.AsyncClient) -> None:
    page = await client.get("/login", params={"next": "/\t/evil.example"})
    assert page.status_code == 200
    _no_evil(page.text)
    assert 'name="next" value="/dashboard"' in page.text


@pytest.mark.parametrize("target", HTTP_VECTORS)
async def test_passkey_sign_in_answers_only_an_on_site_redirect(
    client: httpx.AsyncClient, db: AsyncSession, target: str
) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    principal = Principal.of(user, permissions_for(user.role))
    options = await passkeys.registration_options(db, principal)
    await passkeys.finish_registration(db, principal, authenticator.create(options), name="Key")
    token = await form_token(client, "/login")
    headers = {**ORIGIN, "X-CSRF-Token": token}
    challenge = await client.post("/login/passkey/options", json={}, headers=headers)
    signed_in = await client.post(
        "/login/passkey",
        json={"credential": authenticator.get(challenge.json()), "next": target},
        headers=headers,
    )
    assert signed_in.status_code == 200, signed_in.text
    # The passkeys script navigates to exactly this value.
    assert signed_in.json() == {"redirect": "/dashboard"}


@pytest.mark.parametrize("target", HTTP_VECTORS)
async def test_the_step_up_page_never_points_off_site(people: People, target: str) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    page = await customer.client.get("/step-up", params={"next": target})
    assert page.status_code == 200
    _no_evil(page.text)
    # The passkey button's data-next (used by location.assign), the forms' next and Cancel.
    assert 'data-next="/dashboard"' in page.text
    assert 'href="/dashboard">Cancel' in page.text

    # Completing the prompt with the password returns to the same safe place.
    done = await customer.client.post(
        "/step-up/password",
        data={"password": DEFAULT_PASSWORD, "next": target, "csrf_token": customer.csrf},
        headers=ORIGIN,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/dashboard"


async def test_a_page_behind_sign_in_never_offers_an_off_site_next(client: httpx.AsyncClient) -> None:
    # A request for //evil.example/x on this host is a path to the server, but as a "next" it
    # would read as a host; the sign-in redirect drops it.
    response = await client.get("https://panel.test//evil.example/dashboard")
    assert response.status_code in (303, 404)
    if response.status_code == 303:
        _no_evil(response.headers["location"])
