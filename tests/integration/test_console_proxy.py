"""The console WebSocket over a real uvicorn: a browser-side RFB client (websockets) talks to a
tiny VNC server in this test through the panel's proxy.

The fake VNC server demands "VNC Authentication" with a password only the driver knows; the proxy
must answer the DES challenge itself and offer the browser "None", then copy bytes both ways.
Refusals (no session, foreign Origin, used, unknown or foreign tickets) close with 44xx codes and
are audited, and so does an open console once its session ends or its server is suspended or
locked for deletion (the periodic re-check of consoles/watch.py). The driver is replaced by one
that reports the fake server's address; the real driver's console endpoint is exercised by
tests/e2e/test_console_qemu.py.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import Executable, func, select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin, Subprotocol

from corral.auth.secrets import secret_hash
from corral.auth.service import auth
from corral.config import Settings
from corral.consoles import service as console_service
from corral.consoles import watch as console_watch
from corral.consoles.errors import CLOSE_MESSAGES, MAX_CLOSE_REASON_BYTES, ConsoleRefused
from corral.consoles.proxy import RFB_38, vnc_auth_response
from corral.consoles.service import consoles
from corral.drivers.base import ConsoleEndpoint, PermanentDriverError
from corral.models.audit import AuditEvent
from corral.models.auth import AuthMethod, UserSession
from corral.models.servers import Server
from corral.models.users import User
from tests.e2e.conftest import serving
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import create_node
from tests.factories.users import create_user

VNC_PASSWORD = "s3cret!"
DEADLINE_S = 10.0
_TICKET = re.compile(r'data-ticket="([^"]+)"')
SESSION_COOKIE = "__Host-corral_session"


def test_vnc_authentication_matches_novnc() -> None:
    """The DES response equals what noVNC's own implementation (core/crypto/des.js) computes."""
    challenge = bytes((i * 37 + 11) & 255 for i in range(16))
    assert vnc_auth_response(VNC_PASSWORD, challenge).hex() == "04ea780d8dee43a3352fd93a5d046bf8"


@dataclass
class FakeVnc:
    """An RFB 3.8 server demanding VNC Authentication, then echoing what it is sent."""

    password: str
    port: int = 0
    challenge: bytes = bytes(range(16))
    server: asyncio.Server | None = None
    client_inits: list[bytes] = field(default_factory=list)
    # Connections that ended (the proxy closed its side, or the server refused the password).
    ended: int = 0
    # Open connections, so a test can hang up on the proxy as a guest powering off would.
    connections: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(writer)
        try:
            writer.write(RFB_38)
            assert await reader.readexactly(12) == RFB_38
            writer.write(bytes([1, 2]))  # one type: VNC Authentication
            assert await reader.readexactly(1) == b"\x02"
            writer.write(self.challenge)
            if await reader.readexactly(16) != vnc_auth_response(self.password, self.challenge):
                reason = b"bad password"
                writer.write(struct.pack(">II", 1, len(reason)) + reason)
                return
            writer.write(struct.pack(">I", 0))
            self.client_inits.append(await reader.readexactly(1))
            name = b"fake-vnc"
            writer.write(struct.pack(">HH", 640, 480) + bytes(16) + struct.pack(">I", len(name)) + name)
            while data := await reader.read(4096):
                writer.write(b"echo:" + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.ended += 1
            writer.close()

    async def __aenter__(self) -> FakeVnc:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


@dataclass
class FakeDriver:
    endpoint: ConsoleEndpoint

    async def console(self, external_id: str) -> ConsoleEndpoint:
        return self.endpoint


@dataclass
class Seeded:
    url: str
    owner_cookie: str
    other_cookie: str
    server_id: int
    second_server_id: int
    database_url: URL


@pytest.fixture
def live_database(fresh_database: Callable[[], URL]) -> URL:
    return fresh_database()


@pytest.fixture
def live(settings: Settings, live_database: URL) -> Iterator[str]:
    with serving(settings, live_database) as url:
        yield url


async def _sessions(database_url: URL, settings: Settings) -> tuple[str, str, int, int]:
    engine = create_async_engine(database_url)
    try:
        async with AsyncSession(engine, expire_on_commit=False, info={"settings": settings}) as session:
            owner: User = await create_user(session)
            other: User = await create_user(session)
            location = await create_location(session)
            node = await create_node(session, location=location)
            servers = [
                await create_server(
                    session, user=owner, location=location, status="active", node_id=node.id, external_id=name
                )
                for name in ("corral-a", "corral-b")
            ]
            secrets = [
                await auth.start_session(
                    session, user, ip=None, user_agent="test", method=AuthMethod.PASSWORD
                )
                for user in (owner, other)
            ]
            await session.commit()
            return secrets[0], secrets[1], servers[0].id, servers[1].id
    finally:
        await engine.dispose()


@pytest.fixture
async def seeded(
    live: str, live_database: URL, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Seeded, FakeVnc]]:
    owner, other, server_id, second_id = await _sessions(live_database, settings)
    async with FakeVnc(VNC_PASSWORD) as vnc:
        endpoint = ConsoleEndpoint(protocol="vnc", host="127.0.0.1", port=vnc.port, password=VNC_PASSWORD)

        @asynccontextmanager
        async def fake_open_driver(session: AsyncSession, node_id: int | None) -> AsyncIterator[Any]:
            yield FakeDriver(endpoint)

        monkeypatch.setattr(console_service, "open_driver", fake_open_driver)
        yield Seeded(live, owner, other, server_id, second_id, live_database), vnc


async def ticket_for(base: str, cookie: str, server_id: int) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as http:
        page = await http.get(
            f"/servers/{server_id}/console", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}
        )
    assert page.status_code == 200, page.text[:300]
    match = _TICKET.search(page.text)
    assert match is not None
    return match.group(1)


@asynccontextmanager
async def open_socket(
    base: str, server_id: int, ticket: str, *, cookie: str | None, origin: str | None = None
) -> AsyncIterator[ClientConnection]:
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {}
    url = base.replace("http://", "ws://") + f"/servers/{server_id}/console/ws?ticket={ticket}"
    async with connect(
        url,
        additional_headers=headers,
        origin=Origin(origin or base),
        subprotocols=[Subprotocol("binary")],
        open_timeout=DEADLINE_S,
    ) as socket:
        yield socket


async def recv(socket: ClientConnection, size: int) -> bytes:
    """Exactly ``size`` bytes from binary messages (the proxy may split or join RFB messages)."""
    data = b""
    while len(data) < size:
        message = await asyncio.wait_for(socket.recv(), DEADLINE_S)
        assert isinstance(message, bytes)
        data += message
    assert len(data) == size, data
    return data


async def closed_with(socket: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(socket.recv(), DEADLINE_S)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def audit_actions(database_url: URL) -> list[tuple[str, str | None, str | None]]:
    engine = create_async_engine(database_url)
    try:
        async with AsyncSession(engine) as session:
            rows = await session.scalars(
                select(AuditEvent).where(AuditEvent.action.like("server.console.%")).order_by(AuditEvent.seq)
            )
            return [(row.action, row.target_id, row.reason) for row in rows]
    finally:
        await engine.dispose()


async def test_the_proxy_authenticates_to_vnc_and_pumps_bytes(seeded: tuple[Seeded, FakeVnc]) -> None:
    panel, vnc = seeded
    ticket = await ticket_for(panel.url, panel.owner_cookie, panel.server_id)
    async with open_socket(panel.url, panel.server_id, ticket, cookie=panel.owner_cookie) as socket:
        assert socket.subprotocol == "binary"
        # The browser is offered RFB 3.8 with security type None only: no password reaches it.
        assert await recv(socket, 12) == RFB_38
        await socket.send(RFB_38)
        assert await recv(socket, 2) == bytes([1, 1])
        await socket.send(b"\x01")
        assert await recv(socket, 4) == b"\x00\x00\x00\x00"
        # From ClientInit on, bytes go through unchanged (the ServerInit is the fake's).
        await socket.send(b"\x01")
        server_init = await recv(socket, 24 + len(b"fake-vnc"))
        assert server_init.endswith(b"fake-vnc")
        await socket.send(b"hello vnc")
        assert await recv(socket, len(b"echo:hello vnc")) == b"echo:hello vnc"
    assert vnc.client_inits == [b"\x01"]

    # The same ticket again: refused, and audited.
    async with open_socket(panel.url, panel.server_id, ticket, cookie=panel.owner_cookie) as socket:
        code, reason = await closed_with(socket)
    assert code == 4403
    assert "used" in reason
    actions = await audit_actions(panel.database_url)
    assert actions == [
        ("server.console.open", str(panel.server_id), None),
        ("server.console.refused", str(panel.server_id), "ticket_used"),
    ]


async def test_refusals_close_with_a_code_and_a_reason(seeded: tuple[Seeded, FakeVnc]) -> None:
    panel, _ = seeded
    ticket = await ticket_for(panel.url, panel.owner_cookie, panel.server_id)
    cases: list[tuple[int, str | None, str | None, int, str]] = [
        # (server, cookie, origin, code, words in the reason)
        (panel.server_id, None, None, 4401, "Sign in"),
        (panel.server_id, panel.owner_cookie, "https://evil.example", 4403, "panel's own pages"),
        # Another customer with the owner's ticket: the server is not theirs.
        (panel.server_id, panel.other_cookie, None, 4404, "does not exist"),
        # The owner's ticket for another of the owner's servers.
        (panel.second_server_id, panel.owner_cookie, None, 4403, "another server"),
    ]
    for server_id, cookie, origin, expected_code, words in cases:
        async with open_socket(panel.url, server_id, ticket, cookie=cookie, origin=origin) as socket:
            code, reason = await closed_with(socket)
        assert (code, words in reason) == (expected_code, True), (server_id, cookie, origin, reason)
    async with open_socket(panel.url, panel.server_id, "forged", cookie=panel.owner_cookie) as socket:
        assert (await closed_with(socket))[0] == 4403

    # None of that spent the ticket: its owner still gets in, once.
    async with open_socket(panel.url, panel.server_id, ticket, cookie=panel.owner_cookie) as socket:
        assert await recv(socket, 12) == RFB_38
    reasons = [reason for action, _, reason in await audit_actions(panel.database_url)]
    # The anonymous attempt is logged, not audited; the signed-in ones are.
    assert reasons == ["bad_origin", "server_not_found", "ticket_other_server", "ticket_unknown", None]


async def execute(database_url: URL, statement: Executable) -> None:
    engine = create_async_engine(database_url)
    try:
        async with AsyncSession(engine) as session:
            await session.execute(statement)
            await session.commit()
    finally:
        await engine.dispose()


async def through_handshake(socket: ClientConnection) -> None:
    """Play noVNC up to the ServerInit, so the proxy is pumping bytes."""
    assert await recv(socket, 12) == RFB_38
    await socket.send(RFB_38)
    assert await recv(socket, 2) == bytes([1, 1])
    await socket.send(b"\x01")
    assert await recv(socket, 4) == b"\x00\x00\x00\x00"
    await socket.send(b"\x01")
    assert (await recv(socket, 24 + len(b"fake-vnc"))).endswith(b"fake-vnc")


@pytest.fixture
def rechecks(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Check open consoles every 50 ms, and list each check's outcome (a reason, or None)."""
    monkeypatch.setattr(console_watch, "CONSOLE_RECHECK_SECONDS", 0.05)
    outcomes: list[str | None] = []
    recheck = consoles.recheck

    async def counted(*args: Any) -> ConsoleRefused | None:
        closure = await recheck(*args)
        outcomes.append(closure.reason if closure is not None else None)
        return closure

    monkeypatch.setattr(consoles, "recheck", counted)
    return outcomes


async def until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_suspended_server_closes_its_open_console(
    seeded: tuple[Seeded, FakeVnc], rechecks: list[str | None]
) -> None:
    panel, vnc = seeded
    ticket = await ticket_for(panel.url, panel.owner_cookie, panel.server_id)
    async with open_socket(panel.url, panel.server_id, ticket, cookie=panel.owner_cookie) as socket:
        await through_handshake(socket)
        # Checks that pass leave the console working.
        await until(lambda: len(rechecks) >= 2)
        await socket.send(b"still here")
        assert await recv(socket, len(b"echo:still here")) == b"echo:still here"
        assert set(rechecks) == {None}

        await execute(
            panel.database_url,
            update(Server).where(Server.id == panel.server_id).values(suspended_at=func.now()),
        )
        code, reason = await closed_with(socket)
    assert (code, reason) == (4409, "The server was suspended.")
    assert rechecks[-1] == "server_suspended"
    # The proxy hung up on the VNC server too.
    await until(lambda: vnc.ended == 1)
    assert await audit_actions(panel.database_url) == [
        ("server.console.open", str(panel.server_id), None),
        ("server.console.closed", str(panel.server_id), "server_suspended"),
    ]


async def test_a_revoked_session_closes_its_open_console(
    seeded: tuple[Seeded, FakeVnc], rechecks: list[str | None]
) -> None:
    panel, _ = seeded
    ticket = await ticket_for(panel.url, panel.owner_cookie, panel.server_id)
    async with open_socket(panel.url, panel.server_id, ticket, cookie=panel.owner_cookie) as socket:
        await through_handshake(socket)
        await execute(
            panel.database_url,
            update(UserSession)
            .where(UserSession.token_hash == secret_hash(panel.owner_cookie))
            .values(revoked_at=func.now(), revoked_reason="sign_out"),
        )
        code, reason = await closed_with(socket)
    assert (code, reason) == (4401, "Your session ended.")
    actions = await audit_actions(panel.database_url)
    assert actions[-1] == ("server.console.closed", str(panel.server_id), "session_ended")


async def test_a_server_locked_for_deletion_closes_its_open_console(
    seeded: tuple[Seeded, FakeVnc], rechecks: list[str | None]
) -> None:
    panel, _ = seeded
    ticket = await ticket_for(panel.url, panel.owner_cookie, panel.server_id)
    async with open_socket(panel.url, panel.server_id, ticket, cookie=panel.owner_cookie) as socket:
        await through_handshake(socket)
        await execute(
            panel.database_url,
            update(Server).where(Server.id == panel.server_id).values(status="deleting"),
        )
        code, reason = await closed_with(socket)
    assert (code, reason) == (4409, "The server is being deleted.")
    actions = await audit_actions(panel.database_url)
    assert actions[-1] == ("server.console.closed", str(panel.server_id), "server_deleting")


# --- every close says why (issue 10, point 11) -----------------------------------------------------


@dataclass
class BrokenDriver:
    """A node whose driver refuses the console, as libvirt does for a guest without graphics."""

    message: str

    async def console(self, external_id: str) -> ConsoleEndpoint:
        raise PermanentDriverError(self.message)


def driver_that_raises(monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    @asynccontextmanager
    async def broken_open_driver(session: AsyncSession, node_id: int | None) -> AsyncIterator[Any]:
        yield BrokenDriver(message)

    monkeypatch.setattr(console_service, "open_driver", broken_open_driver)


async def refusal_of(panel: Seeded) -> tuple[int, str]:
    """Open the owner's console with a fresh ticket; how the socket was closed."""
    ticket = await ticket_for(panel.url, panel.owner_cookie, panel.server_id)
    async with open_socket(panel.url, panel.server_id, ticket, cookie=panel.owner_cookie) as socket:
        return await closed_with(socket)


async def test_a_node_without_a_vnc_console_closes_with_4502_and_the_drivers_reason(
    seeded: tuple[Seeded, FakeVnc], monkeypatch: pytest.MonkeyPatch
) -> None:
    panel, _ = seeded
    driver_that_raises(monkeypatch, "the server has no VNC console")
    assert await refusal_of(panel) == (4502, "The node said: the server has no VNC console")
    assert (await audit_actions(panel.database_url))[-1] == (
        "server.console.refused",
        str(panel.server_id),
        "driver_error",
    )


async def test_a_long_reason_is_cut_to_what_a_close_frame_carries(
    seeded: tuple[Seeded, FakeVnc], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reason over 123 bytes cannot be sent at all (the close would fail and the browser see only
    a dropped connection): it is cut, on a character boundary, however many bytes a character has."""
    panel, _ = seeded
    driver_that_raises(monkeypatch, "é" * 200)
    code, reason = await refusal_of(panel)
    assert code == 4502
    assert reason.startswith("The node said: éé")
    assert len(reason.encode()) in (MAX_CLOSE_REASON_BYTES - 1, MAX_CLOSE_REASON_BYTES)


async def test_an_unreachable_vnc_server_closes_with_4502(
    seeded: tuple[Seeded, FakeVnc], monkeypatch: pytest.MonkeyPatch
) -> None:
    panel, vnc = seeded
    assert vnc.server is not None
    vnc.server.close()
    await vnc.server.wait_closed()  # nothing listens on the port any more
    assert await refusal_of(panel) == (4502, "The server's console did not answer; try again.")


async def test_a_console_closed_before_it_opens_says_why(seeded: tuple[Seeded, FakeVnc]) -> None:
    """The ticket was issued while the server was active; it was suspended before the socket
    opened."""
    panel, _ = seeded
    ticket = await ticket_for(panel.url, panel.owner_cookie, panel.server_id)
    await execute(
        panel.database_url, update(Server).where(Server.id == panel.server_id).values(suspended_at=func.now())
    )
    async with open_socket(panel.url, panel.server_id, ticket, cookie=panel.owner_cookie) as socket:
        code, reason = await closed_with(socket)
    assert (code, reason) == (4409, "This server is suspended, so its console is closed.")


async def test_a_vnc_server_hanging_up_ends_the_session_with_a_reason(seeded: tuple[Seeded, FakeVnc]) -> None:
    panel, vnc = seeded
    ticket = await ticket_for(panel.url, panel.owner_cookie, panel.server_id)
    async with open_socket(panel.url, panel.server_id, ticket, cookie=panel.owner_cookie) as socket:
        await through_handshake(socket)
        for writer in vnc.connections:
            writer.close()
        code, reason = await closed_with(socket)
    assert (code, reason) == (1000, "The server's console closed the connection.")


async def test_the_console_page_carries_a_message_for_every_close_code(
    seeded: tuple[Seeded, FakeVnc],
) -> None:
    panel, _ = seeded
    async with httpx.AsyncClient(base_url=panel.url, timeout=DEADLINE_S) as http:
        page = await http.get(
            f"/servers/{panel.server_id}/console",
            headers={"Cookie": f"{SESSION_COOKIE}={panel.owner_cookie}"},
        )
    match = re.search(r"data-close-messages='([^']+)'", page.text)
    assert match is not None
    carried = json.loads(html.unescape(match.group(1)))
    assert carried == {str(code): message for code, message in CLOSE_MESSAGES.items()} | {
        "fallback": "The connection to the console was lost."
    }
    assert {"1000", "4401", "4403", "4404", "4409", "4502"} <= set(carried)
