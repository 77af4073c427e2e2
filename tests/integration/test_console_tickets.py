"""Console tickets: the page issues one (hashed, 60 s, bound to user and server) only for the
owner's active server, and a ticket is good for exactly one connection of that user to that server."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.principal import Principal
from corral.auth.secrets import secret_hash
from corral.consoles.errors import CLOSE_CONFLICT, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, ConsoleRefused
from corral.consoles.service import consoles
from corral.kit.clock import utcnow
from corral.models.audit import AuditEvent
from corral.models.consoles import ConsoleTicket
from corral.models.servers import Server
from corral.models.users import User
from corral.rbac.permissions import permissions_for
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import create_node
from tests.factories.users import create_user
from tests.support.admin import people_for

_TICKET = re.compile(r'data-ticket="([^"]+)"')


def principal_of(user: User) -> Principal:
    return Principal.of(user, permissions_for(user.role))


async def active_server(db: AsyncSession, user: User, **overrides: object) -> Server:
    location = await create_location(db)
    node = await create_node(db, location=location)
    values: dict[str, object] = {"status": "active", "node_id": node.id, "external_id": f"corral-{node.id}"}
    values.update(overrides)
    return await create_server(db, user=user, location=location, **values)


async def test_a_ticket_opens_once_and_is_audited(db: AsyncSession) -> None:
    owner = await create_user(db)
    server = await active_server(db, owner)
    issued = await consoles.issue(db, principal_of(owner), server.id)

    stored = (await db.scalars(select(ConsoleTicket).where(ConsoleTicket.server_id == server.id))).one()
    assert stored.ticket_hash == secret_hash(issued.ticket) != issued.ticket
    assert len(issued.ticket) >= 43  # 256 bits, url-safe base64
    assert stored.user_id == owner.id
    assert stored.used_at is None
    lifetime = stored.expires_at - utcnow()
    assert timedelta(seconds=50) < lifetime <= timedelta(seconds=60)

    assert (await consoles.redeem(db, principal_of(owner), server.id, issued.ticket)).id == server.id
    await db.refresh(stored)
    assert stored.used_at is not None
    opened = (await db.scalars(select(AuditEvent).where(AuditEvent.action == "server.console.open"))).all()
    assert [(event.target_type, event.target_id) for event in opened] == [("server", str(server.id))]

    with pytest.raises(ConsoleRefused) as again:
        await consoles.redeem(db, principal_of(owner), server.id, issued.ticket)
    assert (again.value.close_code, again.value.reason) == (CLOSE_FORBIDDEN, "ticket_used")


async def test_an_expired_ticket_is_refused(db: AsyncSession) -> None:
    owner = await create_user(db)
    server = await active_server(db, owner)
    issued = await consoles.issue(db, principal_of(owner), server.id)
    await db.execute(
        update(ConsoleTicket)
        .where(ConsoleTicket.ticket_hash == secret_hash(issued.ticket))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    with pytest.raises(ConsoleRefused) as refused:
        await consoles.redeem(db, principal_of(owner), server.id, issued.ticket)
    assert refused.value.reason == "ticket_expired"


async def test_a_ticket_is_bound_to_its_user_and_server(db: AsyncSession) -> None:
    owner = await create_user(db)
    other = await create_user(db)
    server = await active_server(db, owner)
    second = await active_server(db, owner)
    others_server = await active_server(db, other)
    issued = await consoles.issue(db, principal_of(owner), server.id)

    # Another customer cannot use it, neither for the owner's server (not theirs: not found) nor
    # for their own server (the ticket is someone else's).
    with pytest.raises(ConsoleRefused) as not_theirs:
        await consoles.redeem(db, principal_of(other), server.id, issued.ticket)
    assert (not_theirs.value.close_code, not_theirs.value.reason) == (CLOSE_NOT_FOUND, "server_not_found")
    with pytest.raises(ConsoleRefused) as other_user:
        await consoles.redeem(db, principal_of(other), others_server.id, issued.ticket)
    assert other_user.value.reason == "ticket_other_user"
    # The owner cannot point it at another of their servers.
    with pytest.raises(ConsoleRefused) as other_server:
        await consoles.redeem(db, principal_of(owner), second.id, issued.ticket)
    assert other_server.value.reason == "ticket_other_server"
    with pytest.raises(ConsoleRefused) as unknown:
        await consoles.redeem(db, principal_of(owner), server.id, "not-a-ticket")
    assert unknown.value.reason == "ticket_unknown"

    # None of the refusals spent it.
    assert (await consoles.redeem(db, principal_of(owner), server.id, issued.ticket)).id == server.id


async def test_a_closed_console_refuses_a_ticket_issued_before(db: AsyncSession) -> None:
    owner = await create_user(db)
    server = await active_server(db, owner)
    issued = await consoles.issue(db, principal_of(owner), server.id)
    server.suspended_at = utcnow()
    await db.flush()
    with pytest.raises(ConsoleRefused) as refused:
        await consoles.redeem(db, principal_of(owner), server.id, issued.ticket)
    assert (refused.value.close_code, refused.value.reason) == (CLOSE_CONFLICT, "server_unavailable")


async def test_the_page_issues_a_ticket_for_the_owner_only(app: FastAPI, db: AsyncSession) -> None:
    async with people_for(app, db) as people:
        owner = await people.sign_in()
        stranger = await people.sign_in()
        server = await active_server(db, owner.user, name="web-1")

        page = await owner.client.get(f"/servers/{server.id}/console")
        assert page.status_code == 200, page.text[:300]
        assert page.headers["cache-control"] == "no-store"
        match = _TICKET.search(page.text)
        assert match is not None
        assert f'data-socket-path="/servers/{server.id}/console/ws"' in page.text
        stored = (await db.scalars(select(ConsoleTicket).where(ConsoleTicket.server_id == server.id))).one()
        assert stored.ticket_hash == secret_hash(match.group(1))
        assert stored.user_id == owner.user.id

        # Another customer's server, and a server that does not exist, are both simply not found.
        assert (await stranger.client.get(f"/servers/{server.id}/console")).status_code == 404
        assert (await owner.client.get("/servers/999999999/console")).status_code == 404
        assert (await stranger.client.get(f"/servers/{server.id}/console")).status_code == 404

        anonymous = await people.client()
        response = await anonymous.get(f"/servers/{server.id}/console")
        assert response.status_code in (303, 401)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"suspended_at": utcnow(), "suspended_reason": "abuse"}, "suspended"),
        ({"cancel_mode": "immediate", "cancel_requested_at": utcnow()}, "being cancelled"),
        ({"status": "provisioning"}, "once the server is active"),
        ({"status": "awaiting_setup", "node_id": None, "external_id": None}, "once the server is active"),
    ],
)
async def test_the_page_refuses_a_closed_console_with_a_clear_409(
    app: FastAPI, db: AsyncSession, overrides: dict[str, object], says: str
) -> None:
    async with people_for(app, db) as people:
        owner = await people.sign_in()
        server = await active_server(db, owner.user, **overrides)
        response = await owner.client.get(f"/servers/{server.id}/console")
        assert response.status_code == 409
        assert says in response.text
        assert "data-ticket" not in response.text
        tickets = await db.scalars(select(ConsoleTicket).where(ConsoleTicket.server_id == server.id))
        assert tickets.all() == []


async def test_a_grace_cancellation_keeps_the_console_open(app: FastAPI, db: AsyncSession) -> None:
    async with people_for(app, db) as people:
        owner = await people.sign_in()
        server = await active_server(db, owner.user, cancel_mode="grace", cancel_requested_at=utcnow())
        assert (await owner.client.get(f"/servers/{server.id}/console")).status_code == 200
