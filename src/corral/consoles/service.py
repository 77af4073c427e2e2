"""The console: a page that issues a ticket, and the proxy's side that redeems it.

A ticket is 256 random bits stored as its SHA-256, valid for 60 seconds, for one user and one
server, and good for one connection: the proxy marks it used in the same statement that checks it.
The page is the only place the secret exists, so a leaked log or database dump is no way in, and a
ticket copied out of a page is useless to anyone else (it is bound to the owner's session too).

Every redeemed ticket writes ``server.console.open``; every refusal of a signed-in user writes
``server.console.refused`` with the reason. Refusals of anonymous connections are only logged, so
strangers cannot grow the audit log. An open console is checked again every few seconds
(consoles/watch.py); when the right to it has gone, it is closed and ``server.console.closed``
records why.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.auth.secrets import new_secret, secret_hash
from corral.consoles import repository
from corral.consoles.errors import (
    CLOSE_CONFLICT,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    CLOSE_UNREACHABLE,
    ConsoleRefused,
    ConsoleUnavailable,
)
from corral.consoles.schemas import TICKET_LIFETIME_S, ConsoleTarget, IssuedTicket
from corral.drivers.base import DriverError
from corral.jobs.errors import PermanentJobError
from corral.kit.clock import utcnow
from corral.kit.logging import get_logger
from corral.models.servers import CancelMode, Server, ServerStatus
from corral.rbac.permissions import Permission
from corral.servers.cancellation import locked_for_deletion
from corral.servers.errors import ServerNotFound
from corral.servers.hypervisor import open_driver

MANAGE = Permission.SERVERS_MANAGE

log = get_logger("corral.consoles")


def unavailable_because(server: Server) -> str | None:
    """Why the console of ``server`` cannot be opened now, or None when it can."""
    if server.suspended_at is not None:
        return "This server is suspended, so its console is closed."
    if server.cancel_mode == CancelMode.IMMEDIATE.value:
        return "This server is being cancelled, so its console is closed."
    if server.status != ServerStatus.ACTIVE.value:
        return f"The console opens once the server is active; it is {server.status.replace('_', ' ')}."
    if server.node_id is None or server.external_id is None:
        return "This server has no instance on a node yet."
    return None


def _target(server_id: int) -> Target:
    return Target(type="server", id=server_id)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class ConsoleService:
    async def issue(self, session: AsyncSession, principal: Principal, server_id: int) -> IssuedTicket:
        """A fresh ticket for the caller's own, active server (404 for anyone else's, 409 when the
        console is closed)."""
        if not principal.can(MANAGE):
            raise MissingPermission()
        server = await repository.owned_server(session, principal.user_id, server_id)
        if server is None:
            raise ServerNotFound()
        reason = unavailable_because(server)
        if reason is not None:
            raise ConsoleUnavailable(reason)
        await repository.forget_expired(session, principal.user_id)
        ticket = new_secret()
        expires_at = utcnow() + timedelta(seconds=TICKET_LIFETIME_S)
        await repository.add_ticket(
            session,
            ticket_hash=secret_hash(ticket),
            user_id=principal.user_id,
            server_id=server.id,
            expires_at=expires_at,
        )
        return IssuedTicket(server=server, ticket=ticket, expires_at=expires_at)

    async def redeem(
        self, session: AsyncSession, principal: Principal, server_id: int, ticket: str
    ) -> Server:
        """Use the ticket up for this principal and server, or raise :class:`ConsoleRefused`.

        Writes ``server.console.open``; the caller commits before it connects anywhere, so a
        second connection with the same ticket is refused even while the first is still starting.
        """
        if not principal.can(MANAGE):
            raise ConsoleRefused(CLOSE_FORBIDDEN, "missing_permission", "You may not open consoles.")
        server = await repository.owned_server(session, principal.user_id, server_id)
        if server is None:
            raise ConsoleRefused(CLOSE_NOT_FOUND, "server_not_found", "That server does not exist.")
        closed = unavailable_because(server)
        if closed is not None:
            raise ConsoleRefused(CLOSE_CONFLICT, "server_unavailable", closed)
        ticket_hash = secret_hash(ticket)
        ticket_id = await repository.consume(
            session, ticket_hash=ticket_hash, user_id=principal.user_id, server_id=server_id
        )
        if ticket_id is None:
            raise await self._ticket_refusal(session, principal, server_id, ticket_hash)
        await audit.record(
            session,
            principal.actor,
            "server.console.open",
            target=_target(server_id),
            payload={"ticket_id": ticket_id},
        )
        return server

    async def _ticket_refusal(
        self, session: AsyncSession, principal: Principal, server_id: int, ticket_hash: str
    ) -> ConsoleRefused:
        found = await repository.ticket_state(session, ticket_hash)
        reload = "reload the console page for a new one."
        if found is None:
            return ConsoleRefused(CLOSE_FORBIDDEN, "ticket_unknown", f"Unknown console ticket: {reload}")
        row, expired = found
        if row.user_id != principal.user_id:
            return ConsoleRefused(CLOSE_FORBIDDEN, "ticket_other_user", "This console ticket is not yours.")
        if row.server_id != server_id:
            return ConsoleRefused(
                CLOSE_FORBIDDEN, "ticket_other_server", "This console ticket is for another server."
            )
        if row.used_at is not None:
            return ConsoleRefused(CLOSE_FORBIDDEN, "ticket_used", f"This console ticket was used: {reload}")
        if expired:
            return ConsoleRefused(CLOSE_FORBIDDEN, "ticket_expired", f"The console ticket expired: {reload}")
        return ConsoleRefused(CLOSE_FORBIDDEN, "ticket_refused", f"The console ticket was refused: {reload}")

    async def record_refusal(
        self, session: AsyncSession, principal: Principal | None, server_id: int, refusal: ConsoleRefused
    ) -> None:
        """Audit a refused connection of a signed-in user (in the caller's transaction)."""
        log.info(
            "console_refused",
            server_id=server_id,
            reason=refusal.reason,
            user_id=principal and principal.user_id,
        )
        if principal is None:
            return
        await audit.record(
            session,
            principal.actor,
            "server.console.refused",
            target=_target(server_id),
            result="failure",
            reason=refusal.reason,
            payload={"close_code": refusal.close_code},
        )

    async def recheck(
        self, session: AsyncSession, principal: Principal, session_id: int, server_id: int
    ) -> ConsoleRefused | None:
        """Why an open console must close now, or None while it may stay open: the sign-in session
        ended (signed out, revoked, expired, user blocked), or the server stopped being the user's,
        active and unlocked. A closure is audited as ``server.console.closed`` (caller commits)."""
        closure = await self._closure(session, principal, session_id, server_id)
        if closure is not None:
            log.info("console_closed_by_recheck", server_id=server_id, reason=closure.reason)
            await audit.record(
                session,
                principal.actor,
                "server.console.closed",
                target=_target(server_id),
                reason=closure.reason,
                payload={"close_code": closure.close_code},
            )
        return closure

    async def _closure(
        self, session: AsyncSession, principal: Principal, session_id: int, server_id: int
    ) -> ConsoleRefused | None:
        if not await repository.session_is_live(session, session_id):
            return ConsoleRefused(CLOSE_UNAUTHENTICATED, "session_ended", "Your session ended.")
        server = await repository.owned_server(session, principal.user_id, server_id)
        if server is None:
            return ConsoleRefused(CLOSE_NOT_FOUND, "server_not_found", "The server is no longer yours.")
        if server.suspended_at is not None:
            return ConsoleRefused(CLOSE_CONFLICT, "server_suspended", "The server was suspended.")
        if locked_for_deletion(server):
            return ConsoleRefused(CLOSE_CONFLICT, "server_deleting", "The server is being deleted.")
        if server.status != ServerStatus.ACTIVE.value:
            return ConsoleRefused(CLOSE_CONFLICT, "server_inactive", "The server is no longer active.")
        return None

    async def target(self, session: AsyncSession, server: Server) -> ConsoleTarget:
        """Ask the server's node where its VNC listens. The answer (and its password) stays here."""
        assert server.external_id is not None  # redeem() refused servers without an instance
        try:
            async with open_driver(session, server.node_id) as driver:
                endpoint = await driver.console(server.external_id)
        except (DriverError, PermanentJobError) as error:
            message = getattr(error, "message", str(error))
            raise ConsoleRefused(CLOSE_UNREACHABLE, "driver_error", f"The node said: {message}") from error
        host = endpoint.host
        if endpoint.tunnel_host is not None:
            if _is_loopback(host):
                # VNC listens on the remote node's loopback: reaching it needs an SSH tunnel, which
                # the panel does not open yet. Listening on a private address avoids the tunnel.
                raise ConsoleRefused(
                    CLOSE_UNREACHABLE,
                    "node_remote_loopback",
                    "This node's VNC listens on its loopback only; set its vnc_listen to a private address.",
                )
            if _is_wildcard(host):
                host = endpoint.tunnel_host
        return ConsoleTarget(server_id=server.id, host=host, port=endpoint.port, password=endpoint.password)


consoles = ConsoleService()
