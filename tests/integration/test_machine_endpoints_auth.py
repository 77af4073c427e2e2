"""Issue 10 point 5: a junk bearer token never starts an endless sign-in redirect.

Before the fix every route answered ``Authorization: Bearer <junk>`` with ``303 /login?next=…``,
and /login itself did the same, forever. Probes ignore the header; pages say 401; the API says
401 in JSON.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

JUNK = {"Authorization": "Bearer crl_not-a-real-token"}


@pytest.fixture
async def browser(app: FastAPI) -> httpx.AsyncClient:
    """A client that follows redirects, as a browser or a monitoring agent would."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(
        transport=transport, base_url="https://panel.test", follow_redirects=True, max_redirects=5
    )


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
async def test_probes_ignore_the_authorization_header(browser: httpx.AsyncClient, path: str) -> None:
    async with browser:
        response = await browser.get(path, headers=JUNK)
    assert response.status_code == 200, response.text[:200]
    assert response.history == []
    assert "www-authenticate" not in response.headers


async def test_probes_ignore_a_junk_session_cookie_too(browser: httpx.AsyncClient) -> None:
    async with browser:
        response = await browser.get("/health", headers={**JUNK, "Cookie": "__Host-corral_session=junk"})
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("path", ["/dashboard", "/login", "/servers", "/account/security"])
async def test_a_page_answers_a_junk_token_with_a_plain_401(browser: httpx.AsyncClient, path: str) -> None:
    async with browser:
        response = await browser.get(path, headers={**JUNK, "Accept": "text/html"})
    assert response.status_code == 401
    assert response.history == []  # no redirect at all, let alone a loop
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "The API token is invalid, expired or revoked." in response.text
    assert response.headers["content-type"].startswith("text/html")


async def test_an_htmx_request_with_a_junk_token_is_not_sent_to_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/dashboard", headers={**JUNK, "HX-Request": "true"})
    assert response.status_code == 401
    assert "hx-redirect" not in response.headers


async def test_the_api_answers_a_junk_token_with_a_401_in_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/servers", headers=JUNK)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_without_a_token_a_page_still_sends_a_person_to_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/dashboard")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fdashboard"
    api = await client.get("/api/v1/servers")
    assert api.status_code == 401
    assert api.json()["code"] == "not_authenticated"
