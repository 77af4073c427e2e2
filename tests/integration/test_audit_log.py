"""Recording audit events: transactions, request context, redaction, immutability, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import AuditChainBusy, InvalidAuditEvent, Target, audit
from corral.audit.chain import GENESIS_HASH, key_fingerprint
from corral.config import Settings
from corral.db.session import create_engine, create_session_factory, transaction
from corral.kit.actors import Actor
from corral.kit.context import RequestContext, reset_request, set_request
from corral.kit.logging import REDACTED
from corral.models.audit import AuditEvent
from tests.factories.audit import OPERATOR, AuditDatabase, audit_database, record_events

SYSTEM = Actor.system("billing.charge")


async def stored_payload(session: AsyncSession, seq: int) -> Any:
    """The payload exactly as PostgreSQL returns it, bypassing the ORM's identity map."""
    return (
        await session.execute(text("SELECT payload FROM audit_events WHERE seq = :seq"), {"seq": seq})
    ).scalar_one()


async def test_events_are_chained_in_order(db: AsyncSession, settings: Settings) -> None:
    first, second, third = await record_events(db, 3)
    assert [second.seq, third.seq] == [first.seq + 1, first.seq + 2]
    assert first.seq == 1
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    key_id = key_fingerprint(settings.security.audit_key.get_secret_value().encode())
    assert {event.key_id for event in (first, second, third)} == {key_id}
    assert first.target_type == "server"
    assert first.target_id == "100"
    report = await audit.verify(db)
    assert report.ok, report.summary()
    assert report.rows_checked == 3


async def test_record_flushes_in_the_callers_transaction_and_never_commits(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with audit_database(fresh_database(), settings) as chain:
        async with chain.factory() as session:
            event = await audit.record(session, OPERATOR, "server.power.stop")
            assert event.seq == 1
            assert await chain.count() == 0  # flushed, but invisible to everyone else
            await session.rollback()
        assert await chain.count() == 0

        # The rolled-back seq is reused: no gap is left behind.
        async with transaction(chain.factory) as session:
            kept = await audit.record(session, OPERATOR, "server.power.start")
        assert kept.seq == 1
        assert await chain.count() == 1
        assert (await chain.verify()).ok


async def test_ip_and_request_id_come_from_the_request_context(db: AsyncSession) -> None:
    token = set_request(RequestContext(request_id="req-context-01", ip="198.51.100.23"))
    try:
        from_context = await audit.record(db, OPERATOR, "user.password.change")
        explicit = await audit.record(
            db, OPERATOR, "user.password.change", ip="2001:db8::1", request_id="req-explicit-1"
        )
    finally:
        reset_request(token)
    outside = await audit.record(db, SYSTEM, "billing.invoice.issue")

    assert (from_context.ip, from_context.request_id) == ("198.51.100.23", "req-context-01")
    assert (explicit.ip, explicit.request_id) == ("2001:db8::1", "req-explicit-1")
    assert (outside.ip, outside.request_id) == (None, None)
    assert outside.actor_type == "system"
    assert outside.actor_id is None
    ips = (await db.execute(text("SELECT host(ip) FROM audit_events ORDER BY seq"))).scalars().all()
    assert ips == ["198.51.100.23", "2001:db8::1", None]


async def test_ip_is_hashed_in_postgresqls_form_and_junk_context_ip_is_dropped(db: AsyncSession) -> None:
    # Python 3.11 prints this address as ::ffff:c000:201, PostgreSQL as ::ffff:192.0.2.1.
    mapped = await audit.record(db, OPERATOR, "server.console.open", ip="::FFFF:192.0.2.1")
    assert mapped.ip == "::ffff:192.0.2.1"
    token = set_request(RequestContext(request_id="req-context-02", ip="testclient"))
    try:
        junk = await audit.record(db, OPERATOR, "server.console.open")
    finally:
        reset_request(token)
    assert junk.ip is None
    assert junk.request_id == "req-context-02"
    report = await audit.verify(db)
    assert report.ok, report.summary()


async def test_secrets_in_the_payload_are_redacted(db: AsyncSession) -> None:
    event = await audit.record(
        db,
        OPERATOR,
        "node.credentials.update",
        target=Target(type="node", id=3),
        payload={
            "password": "hunter2-hunter2",
            "nested": {"api_key": "sk_live_123", "hostname": "kvm1"},
            "items": [{"token": "t0k3n"}],
            "dsn": "postgresql://corral:s3cret@db.internal/corral",
            "port": 8006,
        },
    )
    stored = await stored_payload(db, event.seq)
    assert stored == {
        "password": REDACTED,
        "nested": {"api_key": REDACTED, "hostname": "kvm1"},
        "items": [{"token": REDACTED}],
        "dsn": f"postgresql://corral:{REDACTED}@db.internal/corral",
        "port": 8006,
    }
    assert event.payload == stored
    assert "hunter2" not in str(stored)


async def test_payload_is_hashed_exactly_as_jsonb_gives_it_back(db: AsyncSession) -> None:
    payload: dict[Any, Any] = {
        "huge": 1e20,
        "negative_zero": -0.0,
        "tiny": 1e-07,
        "fraction": 0.1 + 0.2,
        "big_int": 2**70,
        "tuple": (1, "two"),
        "text": 'é \u2028 ✓ "quoted" \\ /',
        "nested": {"b": [None, True, False], "a": {}},
        7: "int key",
    }
    event = await audit.record(db, OPERATOR, "plan.limits.update", payload=payload)
    assert await stored_payload(db, event.seq) == event.payload
    report = await audit.verify(db)
    assert report.ok, report.summary()


@pytest.mark.parametrize(
    ("action", "options"),
    [
        ("Server.Power.Stop", {}),
        ("server", {}),
        ("server..stop", {}),
        ("server.stop ", {}),
        ("server.stop-now", {}),
        ("a." * 60 + "b", {}),
        ("server.power.stop", {"result": "ok"}),
        ("server.power.stop", {"payload": {"ratio": float("nan")}}),
        ("server.power.stop", {"payload": {"ids": {1, 2}}}),
        ("server.power.stop", {"ip": "not-an-ip"}),
        ("server.power.stop", {"ip": "10.0.0.0/8"}),
        ("server.power.stop", {"ip": "fe80::1%eth0"}),
        ("server.power.stop", {"request_id": "r" * 65}),
    ],
)
async def test_bad_calls_are_refused_before_any_sql(
    db: AsyncSession, action: str, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidAuditEvent):
        await audit.record(db, OPERATOR, action, **options)
    # The caller's transaction is untouched and still usable.
    assert (await db.execute(text("SELECT 1"))).scalar_one() == 1
    assert await db.scalar(select(func.count()).select_from(AuditEvent)) == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET reason = 'rewritten'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE audit_checkpoints SET seq = 1",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_checkpoints",
    ],
)
async def test_the_database_refuses_to_change_audit_rows(db: AsyncSession, statement: str) -> None:
    await record_events(db, 2)
    assert await audit.checkpoint(db) is not None
    with pytest.raises(DBAPIError) as refused:
        async with db.begin_nested():
            await db.execute(text(statement))
    assert getattr(refused.value.orig, "sqlstate", None) == "42501"  # insufficient_privilege
    assert "append-only" in str(refused.value)
    assert await db.scalar(select(func.count()).select_from(AuditEvent)) == 2
    assert (await audit.verify(db)).ok


async def test_record_refuses_a_snapshot_that_predates_the_lock(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with audit_database(fresh_database(), settings) as chain, chain.factory() as session:
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        with pytest.raises(AuditChainBusy):
            await audit.record(session, OPERATOR, "server.power.stop")


async def test_a_second_writer_waits_for_the_first_to_commit(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    async with audit_database(fresh_database(), settings) as chain:
        async with chain.factory() as first_session, chain.factory() as second_session:
            first = await audit.record(first_session, OPERATOR, "server.power.stop")
            second_task = asyncio.create_task(audit.record(second_session, SYSTEM, "server.power.start"))
            try:
                await wait_until_blocked_on_advisory_lock(chain, second_task)
                await first_session.commit()
                second = await second_task
            finally:
                second_task.cancel()
            await second_session.commit()
        assert (first.seq, second.seq) == (1, 2)
        assert second.prev_hash == first.hash
        assert (await chain.verify()).ok


async def wait_until_blocked_on_advisory_lock(chain: AuditDatabase, task: asyncio.Task[Any]) -> None:
    """Return once some session waits for an advisory lock (polls pg_locks; no sleeping)."""
    query = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    async with asyncio.timeout(10), chain.engine.connect() as connection:
        # pg_locks is live state, not an MVCC snapshot: each query sees the present.
        while not (await connection.execute(query)).scalar_one():
            assert not task.done(), "the second writer went ahead without waiting for the chain lock"


async def test_concurrent_writers_never_fork_the_chain(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    url = fresh_database()
    writers, transactions, events_per_transaction = 6, 4, 3
    engines = [create_engine(url, settings) for _ in range(writers)]
    start = asyncio.Barrier(writers)

    async def writer(index: int) -> list[list[int]]:
        factory = create_session_factory(engines[index], settings)
        committed = []
        await start.wait()
        for number in range(transactions):
            async with transaction(factory) as session:
                seqs = []
                for _ in range(events_per_transaction):
                    event = await audit.record(
                        session,
                        Actor.system(f"writer.{index}"),
                        "server.power.stop",
                        payload={"writer": index, "transaction": number},
                    )
                    seqs.append(event.seq)
            committed.append(seqs)
        return committed

    try:
        results = await asyncio.gather(*(writer(index) for index in range(writers)))
    finally:
        for engine in engines:
            await engine.dispose()

    groups = [seqs for result in results for seqs in result]
    total = writers * transactions * events_per_transaction
    assert sorted(seq for seqs in groups for seq in seqs) == list(range(1, total + 1))
    # The lock is held until commit, so one transaction's events are contiguous.
    for seqs in groups:
        assert seqs == list(range(seqs[0], seqs[0] + events_per_transaction))
    async with audit_database(url, settings) as chain:
        report = await chain.verify(batch_size=7)
    assert report.ok, report.summary()
    assert report.rows_checked == total


async def test_checkpoint_records_the_signed_head(db: AsyncSession) -> None:
    assert await audit.checkpoint(db) is None  # nothing to checkpoint yet
    events = await record_events(db, 3)
    checkpoint = await audit.checkpoint(db)
    assert checkpoint is not None
    assert (checkpoint.seq, checkpoint.hash) == (events[-1].seq, events[-1].hash)
    assert checkpoint.key_id == events[-1].key_id
    assert len(checkpoint.signature) == 64
    report = await audit.verify(db)
    assert report.ok, report.summary()
    assert report.checkpoints_checked == 1


async def test_list_filters_newest_first(db: AsyncSession) -> None:
    alice = Actor.user(11, "alice@example.test", "customer")
    bob = Actor.user(12, "bob@example.test", "customer")
    await audit.record(db, alice, "server.power.stop", target=Target(type="server", id=1))
    await audit.record(db, bob, "server.power.start", target=Target(type="server", id=2))
    await audit.record(db, alice, "user.credit.adjust", target=Target(type="user", id=11))
    await audit.record(db, alice, "server.power.start", target=Target(type="server", id=1))
    await audit.record(db, bob, "user_x.thing.done")
    await audit.record(db, bob, "userax.thing.done")

    def seqs(events: Any) -> list[int]:
        return [event.seq for event in events]

    assert seqs(await audit.list(db)) == [6, 5, 4, 3, 2, 1]
    assert seqs(await audit.list(db, action="server.power.start")) == [4, 2]
    assert seqs(await audit.list(db, action="server.*")) == [4, 2, 1]
    assert seqs(await audit.list(db, action="user.*")) == [3]
    assert seqs(await audit.list(db, action="user_x.*")) == [5]  # "_" is escaped, not a LIKE wildcard
    assert seqs(await audit.list(db, actor_id=11)) == [4, 3, 1]
    assert seqs(await audit.list(db, target=Target(type="server", id=1))) == [4, 1]
    assert seqs(await audit.list(db, target=Target(type="server"))) == [4, 2, 1]
    assert seqs(await audit.list(db, before_seq=4, limit=2)) == [3, 2]
    assert seqs(await audit.list(db, actor_id=11, action="server.*", before_seq=4)) == [1]
