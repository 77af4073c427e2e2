"""Shared helpers for the admin tests: :class:`People` signs several users in at once, each in
their own cookie jar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.users import User, UserRole, UserStatus
from corral.rbac.permissions import STAFF_ROLES
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, page_token, passkey_sign_in, sign_in
from tests.support.authenticator import SoftwareAuthenticator

BASE_URL = "https://panel.test"
SESSION_COOKIE = "__Host-corral_session"


def route_paths(app: FastAPI) -> dict[str, set[str]]:
    """Every route's full path as documented (``{id}``, not the router's ``{id:int}``) and its
    methods (included routers are walked, not listed flat)."""
    paths: dict[str, set[str]] = {}
    for context in iter_route_contexts(app.routes):
        methods = getattr(context.original_route, "methods", None) or set()
        paths.setdefault(str(context.path_format), set()).update(methods)
    return paths


@dataclass
class Person:
    user: User
    client: httpx.AsyncClient
    csrf: str = ""
    # The software authenticator holding a staff member's passkey (None for customers).
    authenticator: SoftwareAuthenticator | None = None

    def headers(self, *, htmx: bool = False) -> dict[str, str]:
        """What a page's own htmx request or fetch sends: Origin and the CSRF header."""
        headers = {**ORIGIN, "X-CSRF-Token": self.csrf}
        if htmx:
            headers["HX-Request"] = "true"
        return headers

    async def post_form(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        """A plain (no-JavaScript) form post, with the token in the form as the page renders it."""
        return await self.client.post(path, data={**(data or {}), "csrf_token": self.csrf}, headers=ORIGIN)

    async def post_htmx(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(path, data=data or {}, headers=self.headers(htmx=True))

    async def post_json(self, path: str, body: Any = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.headers())

    async def send_json(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.client.request(method, path, json=body, headers=self.headers())


@dataclass
class People:
    app: FastAPI
    db: AsyncSession
    stack: AsyncExitStack
    made: list[Person] = field(default_factory=list)

    async def client(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL)
        return await self.stack.enter_async_context(client)

    async def sign_in(self, role: UserRole | str = UserRole.CUSTOMER, **overrides: Any) -> Person:
        user = await create_user(self.db, role=str(role), **overrides)
        client = await self.client()
        authenticator = None
        if str(role) in STAFF_ROLES:
            # Staff act only from a passkey session with a fresh step-up (issue 4).
            authenticator = await passkey_sign_in(client, self.db, user)
        else:
            response = await sign_in(client, user.email, DEFAULT_PASSWORD)
            assert response.status_code == 303, response.text[:300]
        person = Person(user=user, client=client, csrf=await page_token(client), authenticator=authenticator)
        self.made.append(person)
        return person

    async def user(self, role: UserRole | str = UserRole.CUSTOMER, **overrides: Any) -> User:
        overrides.setdefault("status", UserStatus.ACTIVE.value)
        return await create_user(self.db, role=str(role), **overrides)


@asynccontextmanager
async def people_for(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with AsyncExitStack() as stack:
        yield People(app=app, db=db, stack=stack)
