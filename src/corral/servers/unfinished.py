"""Unfinished orders: a server still awaiting its setup is released after a panel setting.

An order reserves a node's room and an IP address (phase one); until the customer finishes the
setup wizard (phase two) nothing runs there, yet both stay held. After ``unfinished_order_days``
(panel settings, default 7) the order is released through the same path as a deletion
(``servers.destroy``: the ``server.destroy`` job returns the addresses to their pool and marks the
server deleted, which frees its room on the node).

The owner is emailed first, once: the reminder goes out ``reminder_lead`` before the deadline
(24 hours, or half the period when that is shorter), and an order is never released sooner than
that after its reminder, even when the deadline has passed (workers were down, or the setting was
lowered), so nobody loses a server without the warning. ``setup_reminder_sent_at`` is set in the
transaction that queues the email, so the email exists once and only if the mark does.

The periodic job (``servers.release_unfinished``, hourly) calls :meth:`UnfinishedOrders.sweep` with
the time to act at; tests hand in their own. Rows are taken with ``FOR UPDATE SKIP LOCKED`` (an
overlapping run takes the others), each server in its own savepoint so one failure neither undoes
nor stops the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.db.session import settings_of
from corral.kit.actors import Actor
from corral.kit.logging import get_logger
from corral.models.servers import Server
from corral.notifications.service import absolute_url, mailer
from corral.panel_settings.service import panel_settings
from corral.servers import repository
from corral.servers.service import servers

SWEEPER = Actor.system("servers.release_unfinished")
# Servers taken per step and run; the rest wait for the next run.
BATCH = 100
REMINDER_LEAD = timedelta(hours=24)

log = get_logger("corral.servers.unfinished")


def reminder_lead(window: timedelta) -> timedelta:
    """How long before the release the owner is told: a day, or half a shorter period."""
    return min(REMINDER_LEAD, window / 2)


@dataclass
class Sweep:
    """What one run did: server ids reminded, released, and those that failed (left for later)."""

    reminded: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def _target(server: Server) -> Target:
    return Target(type="server", id=server.id)


class UnfinishedOrders:
    async def window(self, session: AsyncSession) -> timedelta:
        """How long an order may wait for its setup (the panel setting)."""
        return timedelta(days=(await panel_settings.current(session)).unfinished_order_days)

    async def release_at(self, session: AsyncSession, server: Server) -> datetime:
        """When the order of a server awaiting setup is released, as things stand now."""
        window = await self.window(session)
        due = server.created_at + window
        if server.setup_reminder_sent_at is not None:
            due = max(due, server.setup_reminder_sent_at + reminder_lead(window))
        return due

    async def sweep(self, session: AsyncSession, now: datetime, *, limit: int = BATCH) -> Sweep:
        """Remind the owners of orders nearing their deadline, then release the orders past it."""
        window = await self.window(session)
        lead = reminder_lead(window)
        done = Sweep()
        for server, email, name in await repository.unfinished_to_remind(
            session, now - (window - lead), limit=limit
        ):
            # Read before the savepoint: after a rollback the row's attributes are expired.
            server_id, release_at = server.id, max(server.created_at + window, now + lead)
            try:
                async with session.begin_nested():
                    await self._remind(session, server, email, name, now, release_at)
            except Exception:  # one owner's unusable address must not hold up everyone else
                log.exception("unfinished_order_remind_failed", server_id=server_id)
                done.failed.append(server_id)
            else:
                done.reminded.append(server_id)
        for server in await repository.unfinished_to_release(session, now - window, now - lead, limit=limit):
            server_id = server.id
            try:
                async with session.begin_nested():
                    await self._release(session, server, window)
            except Exception:
                log.exception("unfinished_order_release_failed", server_id=server_id)
                done.failed.append(server_id)
            else:
                done.released.append(server_id)
        return done

    async def _remind(
        self,
        session: AsyncSession,
        server: Server,
        email: str,
        name: str,
        now: datetime,
        release_at: datetime,
    ) -> None:
        server.setup_reminder_sent_at = now
        link = absolute_url(settings_of(session), f"/servers/{server.id}/setup")
        await mailer.queue(
            session,
            to=email,
            template="unfinished_order",
            context={
                "link": link,
                "name": name,
                "server_name": server.name,
                "ordered_at": server.created_at.isoformat(),
                "release_at": release_at.isoformat(),
            },
        )
        await session.flush()
        await audit.record(
            session,
            SWEEPER,
            "server.order.remind",
            target=_target(server),
            payload={"release_at": release_at.isoformat()},
        )

    async def _release(self, session: AsyncSession, server: Server, window: timedelta) -> None:
        job_id = await servers.destroy(
            session, SWEEPER, server.id, reason=f"setup not finished within {window.days} day(s) of the order"
        )
        await audit.record(
            session,
            SWEEPER,
            "server.order.release",
            target=_target(server),
            payload={
                "ordered_at": server.created_at.isoformat(),
                "reminded_at": server.setup_reminder_sent_at.isoformat()
                if server.setup_reminder_sent_at
                else None,
                "job_id": job_id,
            },
        )


unfinished_orders = UnfinishedOrders()
