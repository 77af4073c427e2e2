"""Issue 10 point 6c: X-Forwarded-For is believed only from configured proxies, and a value that
is not an address is ignored (before the fix uvicorn believed any local client, and "not-an-ip"
reached an INET column: a 500)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import ip_network

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.app import create_app
from corral.cli.main import server_config
from corral.config import Settings, WebSettings
from corral.models.auth import SignInAttempt
from corral.web.client_ip import client_ip
from corral.web.deps import get_db_session
from tests.support.auth import ORIGIN, form_token
from tests.support.processes import free_port

PROXIES = [ip_network("10.0.0.0/8"), ip_network("192.0.2.1/32"), ip_network("2001:db8:ffff::/48")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # Nobody trusted: the header is someone's claim and changes nothing.
        ("198.51.100.4", ["203.0.113.7"], "198.51.100.4"),
        # A trusted proxy: the address it saw.
        ("10.0.0.2", ["203.0.113.7"], "203.0.113.7"),
        ("192.0.2.1", ["203.0.113.7"], "203.0.113.7"),
        # The right-most address that is not ours; what the client wrote to its left is ignored.
        ("10.0.0.2", ["1.1.1.1, 203.0.113.7, 10.9.9.9"], "203.0.113.7"),
        ("10.0.0.2", ["1.1.1.1", "203.0.113.7"], "203.0.113.7"),  # several headers, in order
        # Every hop ours: the farthest one is all we know.
        ("10.0.0.2", ["10.1.1.1, 10.2.2.2"], "10.1.1.1"),
        # Malformed: the chain cannot be read, so the peer.
        ("10.0.0.2", ["not-an-ip"], "10.0.0.2"),
        ("10.0.0.2", ["203.0.113.7, not-an-ip"], "10.0.0.2"),
        ("10.0.0.2", ["203.0.113.7, , 10.0.0.3"], "10.0.0.2"),
        ("10.0.0.2", [""], "10.0.0.2"),
        ("10.0.0.2", ["203.0.113.7\x00"], "10.0.0.2"),
        ("10.0.0.2", ["<script>alert(1)</script>"], "10.0.0.2"),
        # No header at all.
        ("10.0.0.2", [], "10.0.0.2"),
        # Ports and IPv6, as proxies write them.
        ("10.0.0.2", ["203.0.113.7:51234"], "203.0.113.7"),
        ("10.0.0.2", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("2001:db8:ffff::1", ["2001:db8::7"], "2001:db8::7"),
        ("10.0.0.2", ["2001:DB8:0::7"], "2001:db8::7"),  # normalised
        # A peer that is not an address (a Unix socket, a test client's name) is no address.
        ("testclient", ["203.0.113.7"], None),
        (None, ["203.0.113.7"], None),
    ],
)
def test_the_client_address(peer: str | None, forwarded: list[str], expected: str | None) -> None:
    assert client_ip(peer, forwarded, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert client_ip("127.0.0.1", ["203.0.113.7"], []) == "127.0.0.1"


def test_the_setting_takes_comma_separated_addresses_and_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WebSettings().trusted_proxies == []
    monkeypatch.setenv("CORRAL_WEB__TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")
    assert Settings().web.trusted_proxies == [
        ip_network("127.0.0.1"),
        ip_network("10.0.0.0/8"),
        ip_network("::1"),
    ]
    monkeypatch.setenv("CORRAL_WEB__TRUSTED_PROXIES", "")
    assert Settings().web.trusted_proxies == []
    monkeypatch.setenv("CORRAL_WEB__TRUSTED_PROXIES", "10.0.0.1,proxy.example")
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings()


# ------------------------------------------------ over HTTP (the test client's peer is 127.0.0.1)


async def _failed_sign_in(client: httpx.AsyncClient, forwarded: str) -> httpx.Response:
    token = await form_token(client, "/login")
    return await client.post(
        "/login",
        data={"email": "nobody@example.com", "password": "wrong password", "csrf_token": token},
        headers={**ORIGIN, "X-Forwarded-For": forwarded},
    )


async def _recorded_ip(db: AsyncSession) -> str:
    attempt = (await db.scalars(select(SignInAttempt).order_by(SignInAttempt.id.desc()).limit(1))).one()
    return str(attempt.ip)


@asynccontextmanager
async def _app_trusting(
    settings: Settings, database_url: URL, db: AsyncSession, proxies: str
) -> AsyncIterator[FastAPI]:
    web = settings.web.model_copy(update={"trusted_proxies": [ip_network(proxies)]})
    application = create_app(
        settings.model_copy(update={"web": web}), database_url=database_url, run_worker=False
    )

    async def test_session() -> AsyncIterator[AsyncSession]:
        work = await db.begin_nested()
        try:
            yield db
        except BaseException:
            await work.rollback()
            raise
        else:
            await work.commit()

    application.dependency_overrides[get_db_session] = test_session
    async with application.router.lifespan_context(application):
        yield application


async def test_by_default_the_header_is_ignored(client: httpx.AsyncClient, db: AsyncSession) -> None:
    response = await _failed_sign_in(client, "203.0.113.9")
    assert response.status_code == 401
    assert await _recorded_ip(db) == "127.0.0.1"


async def test_a_configured_proxy_s_header_names_the_client(
    settings: Settings, database_url: URL, db: AsyncSession
) -> None:
    async with _app_trusting(settings, database_url, db, "127.0.0.1") as application:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="https://panel.test") as client:
            believed = await _failed_sign_in(client, "198.51.100.1, 203.0.113.9")
            assert believed.status_code == 401
            assert await _recorded_ip(db) == "203.0.113.9"

            junk = await _failed_sign_in(client, "not-an-ip")
            assert junk.status_code == 401
            assert await _recorded_ip(db) == "127.0.0.1"


async def test_uvicorn_as_the_panel_runs_it_never_believes_a_local_client(
    settings: Settings, fresh_database: Callable[[], URL]
) -> None:
    """The served stack (``corral serve``'s uvicorn settings): a client on 127.0.0.1 sending a junk
    X-Forwarded-For used to become client "not-an-ip" and a 500 when its sign-in was recorded."""
    url = fresh_database()
    port = free_port()
    web = WebSettings(
        host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}", secure_cookies=False
    )
    served = settings.model_copy(update={"web": web})
    server = uvicorn.Server(server_config(create_app(served, database_url=url, run_worker=False), served))
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert not task.done(), "uvicorn stopped"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            token = await form_token(client, "/login")
            response = await client.post(
                "/login",
                data={"email": "nobody@example.com", "password": "wrong password", "csrf_token": token},
                headers={"Origin": f"http://127.0.0.1:{port}", "X-Forwarded-For": "not-an-ip"},
            )
        assert response.status_code == 401, response.text[:300]
    finally:
        server.should_exit = True
        await task
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            recorded = (await connection.execute(select(SignInAttempt.ip))).scalars().all()
    finally:
        await engine.dispose()
    assert [str(ip) for ip in recorded] == ["127.0.0.1"]
