"""Shared helpers for the IP pool page and API tests (no tests of its own); people are signed in
with :class:`Staff`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.users import User, UserRole
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, page_token, sign_in

BASE_URL = "https://panel.test"


@dataclass
class Person:
    user: User
    client: httpx.AsyncClient
    csrf: str

    def headers(self, **extra: str) -> dict[str, str]:
        """What the page's own scripts send: Origin and the CSRF header."""
        return {**ORIGIN, "X-CSRF-Token": self.csrf, **extra}

    async def post_form(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        """A plain form post, with the token in the form as the page renders it."""
        return await self.client.post(path, data={**(data or {}), "csrf_token": self.csrf}, headers=ORIGIN)

    async def send_json(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.client.request(method, path, json=body, headers=self.headers())


@dataclass
class Staff:
    app: FastAPI
    db: AsyncSession
    stack: AsyncExitStack

    async def sign_in(self, role: UserRole | str) -> Person:
        user = await create_user(self.db, role=str(role))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL)
        client = await self.stack.enter_async_context(client)
        response = await sign_in(client, user.email, DEFAULT_PASSWORD)
        assert response.status_code == 303, response.text[:300]
        return Person(user=user, client=client, csrf=await page_token(client))


@asynccontextmanager
async def staff_for(app: FastAPI, db: AsyncSession) -> AsyncIterator[Staff]:
    async with AsyncExitStack() as stack:
        yield Staff(app=app, db=db, stack=stack)
