"""Signing in through the real pages with httpx, as a browser would."""

from __future__ import annotations

import re

import httpx

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
