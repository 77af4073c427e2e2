"""The chain's arithmetic: the bytes that are signed, and what changes them."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from corral.audit.chain import (
    CHAINED_COLUMNS,
    GENESIS_HASH,
    ChainRow,
    Keyring,
    canonical,
    checkpoint_signature,
    key_fingerprint,
    normalise_payload,
    row_hash,
    timestamp_text,
)
from corral.audit.errors import AuditKeyUnusable, InvalidAuditEvent
from corral.audit.schemas import AuditEventRef, VerifyReport
from corral.models.audit import AuditEvent

KEY = b"k" * 48
ROW = ChainRow(
    seq=42,
    occurred_at=datetime(2026, 11, 22, 9, 30, 5, 120000, tzinfo=UTC),
    actor_type="user",
    actor_id=7,
    actor_label="ops@example.test",
    actor_role="operator",
    action="server.power.stop",
    target_type="server",
    target_id="101",
    payload={"b": [1, 2.5, None], "a": {"z": True, "y": "ü"}},
    result="success",
    ip="::ffff:192.0.2.1",
    reason="customer asked",
    request_id="req-00000001",
    key_id="0123456789abcdef",
    prev_hash="ab" * 32,
)

# Pinned on purpose: if this changes, every chain already written stops verifying.
GOLDEN_CANONICAL = (
    b'{"action":"server.power.stop","actor_id":7,"actor_label":"ops@example.test",'
    b'"actor_role":"operator","actor_type":"user","ip":"::ffff:192.0.2.1","key_id":"0123456789abcdef",'
    b'"occurred_at":"2026-11-22T09:30:05.120000+00:00",'
    b'"payload":{"a":{"y":"\\u00fc","z":true},"b":[1,2.5,null]},'
    b'"prev_hash":"' + b"ab" * 32 + b'","reason":"customer asked","request_id":"req-00000001",'
    b'"result":"success","seq":42,"target_id":"101","target_type":"server"}'
)

# A different value for every field, to show each one is covered by the hash.
ALTERED: dict[str, Any] = {
    "seq": 43,
    "occurred_at": ROW.occurred_at + timedelta(microseconds=1),
    "actor_type": "system",
    "actor_id": 8,
    "actor_label": "ops2@example.test",
    "actor_role": "super_admin",
    "action": "server.power.start",
    "target_type": "plan",
    "target_id": "102",
    "payload": {"b": [1, 2.5, None], "a": {"z": False, "y": "ü"}},
    "result": "failure",
    "ip": "192.0.2.1",
    "reason": "customer asked.",
    "request_id": "req-00000002",
    "key_id": "fedcba9876543210",
    "prev_hash": "ac" * 32,
}


def test_chain_row_names_every_column_except_hash() -> None:
    columns = set(AuditEvent.__table__.columns.keys())
    assert set(CHAINED_COLUMNS) == columns - {"hash"}
    assert set(ALTERED) == set(CHAINED_COLUMNS)


def test_canonical_form_is_pinned_sorted_compact_json() -> None:
    assert canonical(ROW) == GOLDEN_CANONICAL
    assert list(json.loads(canonical(ROW))) == sorted(CHAINED_COLUMNS)


def test_canonical_form_is_deterministic() -> None:
    reordered_payload = {"a": {"y": "ü", "z": True}, "b": [1, 2.5, None]}
    same = dataclasses.replace(ROW, payload=reordered_payload)
    other_zone = dataclasses.replace(
        ROW, occurred_at=ROW.occurred_at.astimezone(timezone(timedelta(hours=-5, minutes=-30)))
    )
    assert canonical(ROW) == canonical(same) == canonical(other_zone)
    assert row_hash(KEY, ROW) == row_hash(KEY, same) == row_hash(KEY, other_zone)


@pytest.mark.parametrize("field", CHAINED_COLUMNS)
def test_changing_any_field_changes_the_hash(field: str) -> None:
    changed = dataclasses.replace(ROW, **{field: ALTERED[field]})
    assert canonical(changed) != canonical(ROW)
    assert row_hash(KEY, changed) != row_hash(KEY, ROW)


def test_hash_is_hmac_of_canonical_and_prev_hash_with_the_key() -> None:
    expected = hmac.new(KEY, GOLDEN_CANONICAL + b"ab" * 32, hashlib.sha256).hexdigest()
    assert row_hash(KEY, ROW) == expected
    assert expected == "d93ca06c7ee875a7c2f74723a14e28b562ecde89726ca92e1669e9254e8e77c2"
    assert row_hash(b"another key" * 4, ROW) != expected
    assert GENESIS_HASH == "0" * 64


def test_timestamps_are_utc_with_microseconds() -> None:
    whole_second = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert timestamp_text(whole_second) == "2026-01-02T01:04:05.000000+00:00"
    with pytest.raises(InvalidAuditEvent):
        timestamp_text(datetime(2026, 1, 2, 3, 4, 5))  # naive: refused


def test_key_id_is_a_short_fingerprint_not_the_key() -> None:
    key_id = key_fingerprint(KEY)
    assert len(key_id) == 16
    assert key_id == key_fingerprint(KEY)
    assert key_id != key_fingerprint(KEY + b"x")
    int(key_id, 16)  # hex digits, derived from (not made of) the key
    ring = Keyring.single("s" * 40)
    assert ring.current_id == key_fingerprint(b"s" * 40)
    assert ring.get(ring.current_id) == b"s" * 40
    assert ring.get("0000000000000000") is None


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(AuditKeyUnusable):
        Keyring.single("   ")


def test_checkpoint_signature_covers_seq_hash_and_time() -> None:
    moment = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    signature = checkpoint_signature(KEY, 5, "ab" * 32, moment)
    assert signature != checkpoint_signature(KEY, 6, "ab" * 32, moment)
    assert signature != checkpoint_signature(KEY, 5, "ac" * 32, moment)
    assert signature != checkpoint_signature(KEY, 5, "ab" * 32, moment + timedelta(microseconds=1))
    assert signature != checkpoint_signature(b"other key" * 4, 5, "ab" * 32, moment)


def test_payload_is_normalised_the_way_jsonb_returns_it() -> None:
    payload: dict[Any, Any] = {
        "tuple": (1, 2),
        3: "int key",
        "huge": 1e20,
        "rounded": 1.2345678901234567e25,
        "negative_zero": -0.0,
        "tiny": 1e-07,
        "plain": 0.1,
        "whole": 1.0,
        "nested": [{"x": 1e16}],
    }
    assert normalise_payload(payload) == {
        "tuple": [1, 2],
        "3": "int key",
        "huge": 100000000000000000000,
        "rounded": 12345678901234566000000000,  # repr() is 1.2345678901234566e+25
        "negative_zero": 0.0,
        "tiny": 1e-07,
        "plain": 0.1,
        "whole": 1.0,
        "nested": [{"x": 10000000000000000}],
    }
    assert json.dumps(normalise_payload({"z": -0.0})) == '{"z": 0.0}'
    assert normalise_payload(None) == {}


@pytest.mark.parametrize(
    "payload",
    [
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": {1, 2}},
        {"x": object()},
        {"x": "nul\x00byte"},
        {"nul\x00key": 1},
        {"x": "lone \ud800 surrogate"},
        ["not", "a", "mapping"],
    ],
)
def test_payload_that_jsonb_cannot_hold_is_refused(payload: Any) -> None:
    with pytest.raises(InvalidAuditEvent):
        normalise_payload(payload)


def test_report_summary_names_the_first_bad_row() -> None:
    occurred = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    broken = VerifyReport(
        ok=False,
        rows_checked=2,
        head_seq=2,
        checkpoints_checked=0,
        first_bad_seq=3,
        reason="the row was edited",
        bad_event=AuditEventRef(seq=3, action="server.power.stop", occurred_at=occurred),
    )
    line = broken.summary()
    assert line == (
        "audit chain BROKEN at seq 3 (server.power.stop at 2026-11-22T09:30:00+00:00): the row was edited"
    )
    deleted = broken.model_copy(update={"first_bad_seq": 2, "reason": "seq 2 is missing"})
    assert deleted.summary().startswith("audit chain BROKEN at seq 2 (next row: seq 3, server.power.stop")
    intact = VerifyReport(ok=True, rows_checked=5, head_seq=5, checkpoints_checked=1)
    assert intact.summary().startswith("audit chain intact: 5 row(s)")
