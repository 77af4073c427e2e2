"""Bytes between the browser's noVNC (over a WebSocket) and the server's VNC (over TCP).

The proxy, not the browser, authenticates to the VNC server, so the VNC password never reaches a
browser (seed 001's rule: no hypervisor secret in the client). It speaks RFB twice:

- to the VNC server as a client: version, then "VNC Authentication" (a DES challenge-response
  with the password) or "None" when the server asks for nothing;
- to the browser as a server: the same version, offering only "None", since the browser already
  proved who it is with its session and a single-use ticket.

From the ClientInit message on, both directions are copied unchanged (binary frames) until either
side closes. RFB 3.3, 3.7 and 3.8 servers are understood; the browser is always offered 3.8.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from starlette.websockets import WebSocket, WebSocketDisconnect

from corral.consoles.errors import VncHandshakeFailed
from corral.consoles.schemas import ConsoleTarget

RFB_38 = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2
CONNECT_TIMEOUT_S = 10.0
HANDSHAKE_TIMEOUT_S = 15.0
READ_CHUNK = 64 * 1024
_VERSION = re.compile(rb"^RFB (\d{3})\.(\d{3})\n$")


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """RFB's VNC Authentication: the 16-byte challenge DES-encrypted (ECB) with the password,
    truncated or zero-padded to 8 bytes and with each byte's bits mirrored (a quirk of the
    original implementation that every server expects)."""
    if len(challenge) != 16:
        raise ValueError("a VNC challenge is 16 bytes")
    key = bytes(_reverse_bits(b) for b in password.encode("latin-1", "replace")[:8].ljust(8, b"\0"))
    # Three equal keys make TripleDES exactly single DES; ECB is what the protocol prescribes.
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(challenge) + encryptor.finalize()


class BrowserStream:
    """Exact-length reads over WebSocket binary messages, which need not align with RFB messages."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.buffer = bytearray()

    async def read_message(self) -> bytes:
        """The next message's bytes; text frames are not part of RFB and end the session."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data = message.get("bytes")
        if data is None:
            raise VncHandshakeFailed("the browser sent a text frame")
        return bytes(data)

    async def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer.extend(await self.read_message())
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def take_buffered(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


async def _read_reason(reader: asyncio.StreamReader) -> str:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    return (await reader.readexactly(min(length, 1024))).decode("utf-8", "replace")


async def authenticate_upstream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, password: str | None
) -> None:
    """Act as the VNC client up to (not including) ClientInit."""
    banner = await reader.readexactly(12)
    match = _VERSION.match(banner)
    if match is None:
        raise VncHandshakeFailed("the console did not answer with an RFB version")
    version = (int(match[1]), int(match[2]))
    if version >= (3, 8):
        ours = (3, 8)
    elif version >= (3, 7):
        ours = (3, 7)
    else:
        ours = (3, 3)
    writer.write(f"RFB {ours[0]:03d}.{ours[1]:03d}\n".encode())
    await writer.drain()

    if ours == (3, 3):
        # The server picks: 0 failed (with a reason), 1 None, 2 VNC Authentication.
        (chosen,) = struct.unpack(">I", await reader.readexactly(4))
        if chosen == 0:
            raise VncHandshakeFailed(f"the console refused the connection: {await _read_reason(reader)}")
    else:
        (count,) = struct.unpack(">B", await reader.readexactly(1))
        if count == 0:
            raise VncHandshakeFailed(f"the console refused the connection: {await _read_reason(reader)}")
        offered = set(await reader.readexactly(count))
        if password is not None and SECURITY_VNC_AUTH in offered:
            chosen = SECURITY_VNC_AUTH
        elif SECURITY_NONE in offered:
            chosen = SECURITY_NONE
        elif SECURITY_VNC_AUTH in offered:
            raise VncHandshakeFailed("the console wants a password the node did not give")
        else:
            raise VncHandshakeFailed(f"the console offers no security type we speak: {sorted(offered)}")
        writer.write(bytes([chosen]))
        await writer.drain()

    if chosen == SECURITY_VNC_AUTH:
        if password is None:
            raise VncHandshakeFailed("the console wants a password the node did not give")
        challenge = await reader.readexactly(16)
        writer.write(vnc_auth_response(password, challenge))
        await writer.drain()
    elif chosen != SECURITY_NONE:
        raise VncHandshakeFailed(f"the console chose an unknown security type {chosen}")
    # 3.8 always reports the result; older versions only after VNC Authentication.
    if chosen == SECURITY_VNC_AUTH or ours == (3, 8):
        (result,) = struct.unpack(">I", await reader.readexactly(4))
        if result != 0:
            detail = await _read_reason(reader) if ours == (3, 8) else "authentication failed"
            raise VncHandshakeFailed(f"the console refused the password: {detail}")


async def greet_browser(websocket: WebSocket, stream: BrowserStream) -> None:
    """Act as a VNC server offering only "None" security, up to (not including) ClientInit."""
    await websocket.send_bytes(RFB_38)
    version = await stream.read_exactly(12)
    if version != RFB_38:
        # noVNC always speaks 3.8; anything else is not our page.
        await websocket.send_bytes(struct.pack(">B", 0) + _reason("RFB 3.8 is required"))
        raise VncHandshakeFailed(f"the browser asked for {version!r}")
    await websocket.send_bytes(bytes([1, SECURITY_NONE]))
    chosen = await stream.read_exactly(1)
    if chosen != bytes([SECURITY_NONE]):
        await websocket.send_bytes(struct.pack(">I", 1) + _reason("only security type None is offered"))
        raise VncHandshakeFailed("the browser chose a security type we did not offer")
    await websocket.send_bytes(struct.pack(">I", 0))


def _reason(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">I", len(data)) + data


async def connect(target: ConsoleTarget) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the TCP connection to the VNC server and authenticate; raises OSError, TimeoutError,
    VncHandshakeFailed or asyncio.IncompleteReadError."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(target.host, target.port), CONNECT_TIMEOUT_S
    )
    try:
        await asyncio.wait_for(authenticate_upstream(reader, writer, target.password), HANDSHAKE_TIMEOUT_S)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def pump(
    websocket: WebSocket, stream: BrowserStream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Copy bytes both ways until either side closes; then close the other."""

    async def browser_to_vnc() -> None:
        leftover = stream.take_buffered()
        if leftover:
            writer.write(leftover)
        while True:
            writer.write(await stream.read_message())
            await writer.drain()

    async def vnc_to_browser() -> None:
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                return
            await websocket.send_bytes(data)

    tasks = [asyncio.create_task(browser_to_vnc()), asyncio.create_task(vnc_to_browser())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(
                error, WebSocketDisconnect | ConnectionError | VncHandshakeFailed | RuntimeError
            ):
                raise error
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
