"""The hash chain's arithmetic: canonical form, HMACs, key fingerprints, payload normalisation.

Pure functions only (no database), so the exact bytes that are signed can be unit-tested.

    hash = HMAC-SHA256(key, canonical(row) || prev_hash)        (hex)

``canonical(row)`` is sorted-key compact JSON of every column except ``hash``. Values are put in
the form PostgreSQL hands back when the row is read again: timestamps as UTC ISO-8601 with
microseconds, the IP in PostgreSQL's ``inet`` output form, the payload as jsonb returns it. That
way a row recomputed from the database matches the row computed at write time, bit for bit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from corral.audit.errors import AuditKeyUnusable, InvalidAuditEvent

# prev_hash of the first row.
GENESIS_HASH = "0" * 64
# Domain separation: the fingerprint of a key is not an HMAC made with it, so it cannot be
# confused with (or help forge) a row hash.
_KEY_ID_PREFIX = b"corral.audit.key-id\x00"
KEY_ID_LENGTH = 16


@dataclass(frozen=True)
class ChainRow:
    """Every hashed column of one audit row, in the form used for hashing.

    Must name every column of ``audit_events`` except ``hash``; a unit test enforces that, so a
    column added later cannot silently escape the chain.
    """

    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: int | None
    actor_label: str
    # The actor's role when they acted; a later role change must not rewrite history.
    actor_role: str | None
    action: str
    target_type: str | None
    target_id: str | None
    payload: dict[str, Any]
    result: str
    ip: str | None  # PostgreSQL's text form, e.g. "::ffff:192.0.2.1", never Python's "::ffff:c000:201"
    reason: str | None
    request_id: str | None
    key_id: str
    prev_hash: str


CHAINED_COLUMNS: tuple[str, ...] = tuple(field.name for field in fields(ChainRow))


def timestamp_text(moment: datetime) -> str:
    """UTC, ISO-8601, always with microseconds (PostgreSQL's timestamptz precision)."""
    if moment.tzinfo is None:
        raise InvalidAuditEvent("audit timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical(row: ChainRow) -> bytes:
    """The deterministic byte form of a row that its hash covers."""
    data = asdict(row)
    data["occurred_at"] = timestamp_text(row.occurred_at)
    return _dumps(data).encode("ascii")


def _hmac_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def row_hash(key: bytes, row: ChainRow) -> str:
    # prev_hash is inside canonical(row) too; appending it again follows the documented formula.
    # It is encoded as UTF-8 (not ASCII) so a tampered, non-hex value is reported, not raised.
    return _hmac_hex(key, canonical(row) + row.prev_hash.encode("utf-8"))


def checkpoint_signature(key: bytes, seq: int, head_hash: str, created_at: datetime) -> str:
    message = f"{seq}|{head_hash}|{timestamp_text(created_at)}"
    return _hmac_hex(key, message.encode("utf-8"))


def same_digest(left: str, right: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


def key_fingerprint(key: bytes) -> str:
    """A short, stable id for a key that reveals nothing useful about it."""
    return hashlib.sha256(_KEY_ID_PREFIX + key).hexdigest()[:KEY_ID_LENGTH]


@dataclass(frozen=True)
class Keyring:
    """The audit keys verification accepts, by key id. Rows name the key that signed them.

    Today there is one key (``CORRAL_SECURITY__AUDIT_KEY``); the lookup by id is what lets a
    later rotation keep old rows verifiable.
    """

    current_id: str
    keys: Mapping[str, bytes]

    @classmethod
    def single(cls, secret: str | SecretStr) -> Keyring:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not value.strip():
            raise AuditKeyUnusable()
        key = value.encode("utf-8")
        key_id = key_fingerprint(key)
        return cls(current_id=key_id, keys={key_id: key})

    @property
    def current(self) -> bytes:
        return self.keys[self.current_id]

    def get(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)


# ---------------------------------------------------------------------------------------------
# Payload normalisation: make the dict we hash identical to the one jsonb gives back.


def _normalise_number(value: float) -> float | int:
    # PostgreSQL stores JSON numbers as `numeric`, which has no negative zero and never prints an
    # exponent: 1e+20 comes back as the integer 100000000000000000000 and -0.0 as 0.0. Small
    # exponents (1e-07) come back as 0.0000001, which Python reads as the same float.
    if value == 0:
        return 0.0
    text = repr(value)
    if "e+" in text:
        return int(Decimal(text))
    return value


def _check_text(text: str, where: str) -> None:
    # jsonb refuses NUL (\u0000) and unpaired surrogates; catch them here so a bad payload is a
    # clear error instead of a database error that aborts the caller's transaction.
    if "\x00" in text:
        raise InvalidAuditEvent(f"audit payload {where} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidAuditEvent(f"audit payload {where} is not valid Unicode") from error


def _normalise(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            _check_text(key, "key")
            result[key] = _normalise(item, f"[{key!r}]")
        return result
    if isinstance(value, list):
        return [_normalise(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, str):
        _check_text(value, where or "value")
        return value
    if isinstance(value, float):
        return _normalise_number(value)
    return value  # int, bool, None


def normalise_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload as PostgreSQL's jsonb will return it, or InvalidAuditEvent.

    One JSON round trip turns tuples into lists, non-string keys into strings and refuses what
    JSON cannot hold (NaN, infinity, sets, objects); then numbers and text get jsonb's rules.
    """
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise InvalidAuditEvent("audit payload must be a mapping")
    try:
        round_tripped = json.loads(json.dumps(dict(payload), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidAuditEvent(f"audit payload is not JSON-serialisable: {error}") from error
    normalised: dict[str, Any] = _normalise(round_tripped, "")
    return normalised
