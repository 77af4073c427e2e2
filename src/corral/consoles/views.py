"""The console page and its WebSocket.

``GET /servers/{id}/console`` issues a ticket and renders noVNC (static/js/console.js), which opens
``/servers/{id}/console/ws?ticket=…`` on the page's own origin, so TLS termination and reverse
proxies in front of the panel need nothing special beyond passing WebSocket upgrades.

The WebSocket is authenticated like a page (the session cookie) plus the ticket, and its Origin
must be one of the panel's own (a WebSocket is not covered by the same-origin policy, so without
this any site could open a signed-in user's console: cross-site WebSocket hijacking). The socket
is accepted first and then closed with a 44xx code and a reason when refused, because a refusal
before the handshake reaches the browser as a bare failure with no reason at all. Once open, the
console is re-checked periodically (consoles/watch.py) and closed the same way when the session
ends or the server is suspended, taken away or locked for deletion.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, WebSocket
from fastapi.responses import HTMLResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from corral.auth.cookies import cookie_names
from corral.auth.deps import ACCESS_ATTRIBUTE, require, same_site_origin
from corral.auth.principal import Principal
from corral.auth.service import auth
from corral.config import Settings
from corral.consoles import proxy, watch
from corral.consoles.errors import (
    CLOSE_FORBIDDEN,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    CLOSE_UNAUTHENTICATED,
    CLOSE_UNREACHABLE,
    ConsoleRefused,
    VncHandshakeFailed,
    close_messages,
)
from corral.consoles.schemas import TICKET_LIFETIME_S
from corral.consoles.service import consoles
from corral.db.session import transaction
from corral.kit.logging import get_logger
from corral.locations.schemas import MAX_ID
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.rendering import render

router = APIRouter(prefix="/servers", include_in_schema=False)

ServerId = Annotated[int, Path(ge=1, le=MAX_ID)]
Manager = Annotated[Principal, require(Permission.SERVERS_MANAGE)]
PAGE_TEMPLATE = "consoles/console.html"
# noVNC asks for this subprotocol when told to; answering with none would make the browser fail.
SUBPROTOCOL = "binary"

log = get_logger("corral.consoles")


@router.get("/{server_id}/console", response_class=HTMLResponse)
async def console_page(
    request: Request, session: DbSession, principal: Manager, server_id: ServerId
) -> HTMLResponse:
    issued = await consoles.issue(session, principal, server_id)
    context = {
        "server": issued.server,
        "ticket": issued.ticket,
        "socket_path": f"/servers/{issued.server.id}/console/ws",
        "ticket_lifetime_s": TICKET_LIFETIME_S,
        # What the page says for each close code (consoles/errors.py has the one table).
        "close_messages": close_messages(),
    }
    response = render(request, PAGE_TEMPLATE, context)
    # The page holds a live ticket: keep it out of every cache and the back-forward cache.
    response.headers["Cache-Control"] = "no-store"
    return response


@dataclass(frozen=True)
class SocketAccess:
    """Who opened the console socket, or why they may not."""

    principal: Principal | None
    refusal: ConsoleRefused | None
    # The sign-in session behind the socket, which the watcher checks again while it is open.
    session_id: int | None = None


async def socket_access(websocket: WebSocket) -> SocketAccess:
    """The WebSocket side of ``require(Permission.SERVERS_MANAGE)``: the session cookie as
    ``resolve_principal`` reads it, and the Origin check ``enforce_csrf`` makes for unsafe methods.
    The permission itself, ownership and the ticket are checked by ``consoles.redeem``."""
    settings: Settings = websocket.app.state.settings
    secret = websocket.cookies.get(cookie_names(settings).session)
    principal: Principal | None = None
    session_id: int | None = None
    if secret:
        async with websocket.app.state.session_factory() as session:
            found = await auth.authenticate_session(session, secret)
            if found is not None and found.rotated_secret is None:
                principal = found.principal
                session_id = principal.session.id if principal.session is not None else None
                await session.commit()  # the session's last-seen time
            else:
                # A session due for a new id cannot get it here (no Set-Cookie on a WebSocket);
                # the page load that follows a refusal rotates it.
                await session.rollback()
    if principal is None:
        refusal = ConsoleRefused(
            CLOSE_UNAUTHENTICATED, "not_signed_in", "Sign in (or reload the page) to open the console."
        )
        return SocketAccess(principal=None, refusal=refusal)
    origin = websocket.headers.get("origin")
    if not same_site_origin(settings, origin):
        refusal = ConsoleRefused(
            CLOSE_FORBIDDEN, "bad_origin", "This console was not opened from this panel's own pages."
        )
        return SocketAccess(principal=principal, refusal=refusal)
    return SocketAccess(principal=principal, refusal=None, session_id=session_id)


setattr(socket_access, ACCESS_ATTRIBUTE, ("permission", Permission.SERVERS_MANAGE))
Access = Annotated[SocketAccess, Depends(socket_access)]


@router.websocket("/{server_id}/console/ws")
async def console_socket(websocket: WebSocket, server_id: ServerId, access: Access) -> None:
    requested = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in requested else None)
    factory = websocket.app.state.session_factory
    principal = access.principal
    try:
        if access.refusal is not None:
            raise access.refusal
        assert principal is not None
        assert access.session_id is not None  # a cookie-authenticated principal has a session
        ticket = websocket.query_params.get("ticket", "")
        async with transaction(factory) as session:
            # Committed before anything is connected: the ticket is spent even if the rest fails.
            server = await consoles.redeem(session, principal, server_id, ticket)
        async with factory() as session:
            target = await consoles.target(session, server)
        try:
            reader, writer = await proxy.connect(target)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, VncHandshakeFailed) as error:
            log.warning("console_vnc_failed", server_id=server_id, error=str(error))
            raise ConsoleRefused(
                CLOSE_UNREACHABLE, "vnc_unreachable", "The server's console did not answer; try again."
            ) from error
    except ConsoleRefused as refusal:
        async with transaction(factory) as session:
            await consoles.record_refusal(session, principal, server_id, refusal)
        await websocket.close(code=refusal.close_code, reason=refusal.message)
        return

    stream = proxy.BrowserStream(websocket)

    async def run_proxy() -> None:
        await proxy.greet_browser(websocket, stream)
        await proxy.pump(websocket, stream, reader, writer)

    # Why the socket closes, said to the browser with every close (not only refusals): by default
    # the session simply ended (the VNC server closed its side, say because the guest powered off).
    closure = ConsoleRefused(CLOSE_NORMAL, "ended", "The server's console closed the connection.")
    try:
        closure = (
            await watch.run_watched(run_proxy(), factory, principal, access.session_id, server_id) or closure
        )
    except VncHandshakeFailed as error:  # the browser did not speak RFB 3.8 (not our page's noVNC)
        log.info("console_closed", server_id=server_id, error=str(error))
        closure = ConsoleRefused(CLOSE_PROTOCOL, "browser_protocol", "The browser did not speak RFB 3.8.")
    except (asyncio.IncompleteReadError, ConnectionError) as error:
        log.info("console_closed", server_id=server_id, error=str(error))
        closure = ConsoleRefused(CLOSE_UNREACHABLE, "vnc_lost", "The server's console stopped answering.")
    except WebSocketDisconnect as error:  # the browser left: nobody to tell
        log.info("console_closed", server_id=server_id, error=str(error))
    finally:
        writer.close()
    if WebSocketState.CONNECTED == websocket.client_state == websocket.application_state:
        with contextlib.suppress(RuntimeError):
            await websocket.close(code=closure.close_code, reason=closure.message)
