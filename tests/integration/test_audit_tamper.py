"""Verification catches every way a database superuser can rewrite history.

Each test commits a real chain to a database of its own, then tampers with it the way an attacker
with database access would: ``session_replication_role = replica`` switches the append-only
triggers off, then plain UPDATE / DELETE / INSERT. None of them has the audit key.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy.engine import URL

from corral.audit.chain import GENESIS_HASH
from corral.config import Settings
from tests.factories.audit import ACTIONS, AuditDatabase, audit_database

ROWS = 5


@pytest.fixture
async def chain(fresh_database: Callable[[], URL], settings: Settings) -> AsyncIterator[AuditDatabase]:
    """Five committed rows, no checkpoint yet."""
    async with audit_database(fresh_database(), settings) as database:
        await database.record(ROWS)
        yield database


@pytest.mark.parametrize("batch_size", [1000, 2])
async def test_an_intact_chain_verifies(chain: AuditDatabase, batch_size: int) -> None:
    assert await chain.checkpoint() is not None
    await chain.record(2)
    assert await chain.checkpoint() is not None

    report = await chain.verify(batch_size=batch_size)

    assert report.ok, report.summary()
    assert (report.rows_checked, report.head_seq, report.checkpoints_checked) == (7, 7, 2)
    assert report.first_bad_seq is None
    assert report.reason is None


async def test_an_empty_chain_verifies(fresh_database: Callable[[], URL], settings: Settings) -> None:
    async with audit_database(fresh_database(), settings) as database:
        report = await database.verify()
    assert report.ok
    assert (report.rows_checked, report.head_seq) == (0, None)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("payload", """'{"index": 2, "note": "event 2", "amount": 1}'::jsonb"""),
        ("actor_label", "'someone.else@example.test'"),
        ("actor_id", "NULL"),
        ("occurred_at", "occurred_at + interval '1 microsecond'"),
        ("ip", "'203.0.113.8'"),
        ("result", "'failure'"),
        ("reason", "'nothing to see'"),
        ("target_id", "'999'"),
        ("hash", "md5('x') || md5('y')"),
    ],
)
async def test_an_edited_row_is_found(chain: AuditDatabase, column: str, value: str) -> None:
    # Trusted test input: column names and SQL literals from the parameter list above.
    await chain.tamper(f"UPDATE audit_events SET {column} = {value} WHERE seq = 3")

    report = await chain.verify()

    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.reason is not None
    assert "edited" in report.reason
    assert report.bad_event is not None
    assert report.bad_event.seq == 3
    assert report.bad_event.action == ACTIONS[2]
    assert report.rows_checked == 2


@pytest.mark.parametrize("batch_size", [1000, 2])
async def test_a_deleted_middle_row_is_found(chain: AuditDatabase, batch_size: int) -> None:
    await chain.tamper("DELETE FROM audit_events WHERE seq = 3")

    report = await chain.verify(batch_size=batch_size)

    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.reason is not None
    assert "seq 3 is missing" in report.reason
    assert report.bad_event is not None
    assert report.bad_event.seq == 4  # the row found in its place


async def test_a_deleted_first_row_is_found(chain: AuditDatabase) -> None:
    await chain.tamper("DELETE FROM audit_events WHERE seq = 1")

    report = await chain.verify()

    assert not report.ok
    assert report.first_bad_seq == 1
    assert report.reason is not None
    assert "starts at seq 2" in report.reason


async def test_reordered_rows_are_found(chain: AuditDatabase) -> None:
    # Swap rows 2 and 3 through a spare seq (the primary key forbids a direct swap).
    await chain.tamper(
        "UPDATE audit_events SET seq = 1000 WHERE seq = 2",
        "UPDATE audit_events SET seq = 2 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 1000",
    )

    report = await chain.verify()

    assert not report.ok
    assert report.first_bad_seq == 2
    assert report.reason is not None
    assert "reordered" in report.reason
    assert report.bad_event is not None
    assert report.bad_event.action == ACTIONS[2]  # the old row 3, now at seq 2


async def test_a_replaced_first_link_is_found(chain: AuditDatabase) -> None:
    await chain.tamper("UPDATE audit_events SET prev_hash = :fake WHERE seq = 1", params={"fake": "f" * 64})

    report = await chain.verify()

    assert not report.ok
    assert report.first_bad_seq == 1
    assert report.reason is not None
    assert "genesis" in report.reason
    assert GENESIS_HASH not in report.reason


async def test_a_truncated_tail_is_found_against_the_checkpoint(chain: AuditDatabase) -> None:
    checkpoint = await chain.checkpoint()
    assert checkpoint is not None
    assert checkpoint.seq == ROWS
    await chain.tamper("DELETE FROM audit_events WHERE seq > 3")

    report = await chain.verify()

    assert not report.ok
    assert report.first_bad_seq == 4
    assert report.bad_checkpoint_id == checkpoint.id
    assert report.reason is not None
    assert "truncated" in report.reason
    assert "recorded head seq 5" in report.reason
    assert report.rows_checked == 3


async def test_a_truncated_then_regrown_chain_disagrees_with_the_checkpoint(chain: AuditDatabase) -> None:
    checkpoint = await chain.checkpoint()
    assert checkpoint is not None
    await chain.tamper("DELETE FROM audit_events WHERE seq > 3")
    await chain.record(4)  # new, correctly signed rows 4..7 reuse seq 4 and 5

    report = await chain.verify()

    assert not report.ok
    assert report.first_bad_seq == ROWS
    assert report.bad_checkpoint_id == checkpoint.id
    assert report.reason is not None
    assert "disagrees with checkpoint" in report.reason


async def test_a_forged_checkpoint_is_found(chain: AuditDatabase) -> None:
    # The attacker cuts the tail and lowers the checkpoint to the new head, without the key.
    checkpoint = await chain.checkpoint()
    assert checkpoint is not None
    await chain.tamper(
        "DELETE FROM audit_events WHERE seq > 3",
        "UPDATE audit_checkpoints SET seq = 3, hash = (SELECT hash FROM audit_events WHERE seq = 3)",
    )

    report = await chain.verify()

    assert not report.ok
    assert report.bad_checkpoint_id == checkpoint.id
    assert report.first_bad_seq == 3
    assert report.reason is not None
    assert "invalid signature" in report.reason


async def test_an_inserted_checkpoint_is_found(chain: AuditDatabase) -> None:
    # INSERT is allowed by the triggers; the signature is what makes a checkpoint count.
    await chain.tamper(
        "INSERT INTO audit_checkpoints (seq, hash, created_at, key_id, signature)"
        " SELECT seq, hash, now(), key_id, :signature FROM audit_events WHERE seq = 2",
        params={"signature": secrets.token_hex(32)},
    )

    report = await chain.verify()

    assert not report.ok
    assert report.first_bad_seq == 2
    assert report.reason is not None
    assert "forged" in report.reason


async def test_rows_signed_with_another_key_are_found(chain: AuditDatabase) -> None:
    report = await chain.verify(key=secrets.token_urlsafe(48))

    assert not report.ok
    assert report.first_bad_seq == 1
    assert report.reason is not None
    assert "unknown key id" in report.reason


async def test_a_row_claiming_an_unknown_key_is_found(chain: AuditDatabase) -> None:
    await chain.tamper("UPDATE audit_events SET key_id = 'deadbeefdeadbeef' WHERE seq = 4")

    report = await chain.verify()

    assert not report.ok
    assert report.first_bad_seq == 4
    assert report.reason is not None
    assert "unknown key id 'deadbeefdeadbeef'" in report.reason


async def test_the_earliest_problem_is_reported(chain: AuditDatabase) -> None:
    assert await chain.checkpoint() is not None
    await chain.tamper(
        "DELETE FROM audit_events WHERE seq = 5",
        "UPDATE audit_events SET reason = 'edited' WHERE seq = 2",
    )

    report = await chain.verify()

    assert report.first_bad_seq == 2
    assert report.reason is not None
    assert "edited" in report.reason
