"""The reconciler takes the audit log's lock last, so it cannot deadlock with a request.

Request paths lock a server row, change it, then append to the audit chain (whose advisory lock is
held until commit). The reconciler used to audit new drift first and update server rows after:
with a request holding one of those rows, each waited for the other. This reproduces that
interleaving: it deadlocked (PostgreSQL aborts one side) before the reconciler was reordered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from corral.audit import Target, audit
from corral.config import Settings
from corral.db.session import create_session_factory, transaction
from corral.drivers.base import InstanceRef, InstanceState
from corral.kit.actors import Actor
from corral.models.servers import ServerStatus
from corral.servers import fleet_repository
from corral.servers.reconciler import reconcile
from tests.integration.test_servers_placement import make_location, make_node
from tests.integration.test_servers_reconciler import server_on


async def test_reconcile_and_a_request_on_the_same_server_do_not_deadlock(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    engine = create_async_engine(fresh_database())
    factory = create_session_factory(engine, settings)
    try:
        async with transaction(factory) as session:
            location = await make_location(session)
            node = await make_node(session, location)
            server = await server_on(session, node.id, location.id, "a", ServerStatus.ACTIVE)
            node_id, server_id = node.id, server.id
        async with factory() as request, factory() as worker:
            # The request path: lock the server row first...
            assert await fleet_repository.for_update(request, server_id) is not None
            pid = await request.scalar(text("SELECT pg_backend_pid()"))

            async def run_reconcile() -> None:
                await reconcile(
                    worker,
                    node_id,
                    [
                        InstanceRef(
                            external_id="stranger", name="x", server_id=None, state=InstanceState.RUNNING
                        ),
                        InstanceRef(external_id="a", name="a", server_id=None, state=InstanceState.RUNNING),
                    ],
                )
                await worker.commit()

            job = asyncio.create_task(run_reconcile())
            # Wait (5 s at most) until the worker's transaction blocks on the row the request holds.
            blocked = 0
            async with factory() as watcher:
                for _ in range(100):
                    blocked = await watcher.scalar(
                        text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
                        {"pid": pid},
                    )
                    if blocked or job.done():
                        break
                    await asyncio.sleep(0.05)
            assert blocked, "the reconciler never waited for the locked server row"
            # ...then audit, as cancellations.request does.
            await audit.record(
                request, Actor.cli("t"), "server.cancel.request", target=Target(type="server", id=server_id)
            )
            await request.commit()
            await job
    finally:
        await engine.dispose()
