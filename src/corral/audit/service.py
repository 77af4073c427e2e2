"""The audit log: record events into the hash chain, verify it, checkpoint it, list it.

Recording happens in the caller's transaction (flush only): if the caller rolls back, the event
was never written, and the action it describes never happened either.

Appends are serialised by a transaction-scoped advisory lock, held until the caller commits or
rolls back. That is the price of a gapless, unforkable chain: record audit events near the end of
a transaction, after slow work, so the lock is held briefly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import repository
from corral.audit.chain import (
    CHAINED_COLUMNS,
    GENESIS_HASH,
    ChainRow,
    Keyring,
    checkpoint_signature,
    normalise_payload,
    row_hash,
    same_digest,
    timestamp_text,
)
from corral.audit.errors import AuditChainBusy, InvalidAuditEvent
from corral.audit.repository import StoredRow
from corral.audit.schemas import AuditEventRef, AuditResult, Target, VerifyReport
from corral.db.session import settings_of
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.kit.context import current_request
from corral.kit.logging import redact_mapping
from corral.models.audit import AuditCheckpoint, AuditEvent

# Dotted lowercase words, at least two: "server.power.stop", "user.credit.adjust".
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$")
MAX_ACTION = 120
MAX_ACTOR_LABEL = 400
MAX_REQUEST_ID = 64
RESULTS: frozenset[str] = frozenset(get_args(AuditResult))
VERIFY_BATCH = 1000
LIST_LIMIT_MAX = 500
# Smaller than any seq, so the first verify batch also returns rows a tamperer gave seq <= 0.
_BEFORE_EVERY_SEQ = -(2**63)


def _check_action(action: str) -> None:
    if len(action) > MAX_ACTION or not ACTION_PATTERN.match(action):
        raise InvalidAuditEvent(
            f"audit action {action!r} must be dotted lowercase words, e.g. 'server.power.stop'"
        )


def _ip_text(value: str | None, *, strict: bool) -> str | None:
    """A host address, or None. Invalid input is an error when the caller passed it explicitly;
    from the request context (a proxy header, a test client's "testclient") it is dropped, since
    losing the IP is better than losing the audit event."""
    if value is None or value == "":
        return None
    try:
        if "%" in value:  # IPv6 zone ids: Python accepts them, PostgreSQL's inet does not
            raise ValueError(value)
        return str(ipaddress.ip_address(value))
    except ValueError:
        if strict:
            raise InvalidAuditEvent(f"audit ip {value!r} is not an IP address") from None
        return None


def _ref(row: ChainRow) -> AuditEventRef:
    return AuditEventRef(seq=row.seq, action=row.action, occurred_at=row.occurred_at)


@dataclass(frozen=True)
class _Problem:
    seq: int
    reason: str
    event: AuditEventRef | None = None
    checkpoint_id: int | None = None


@dataclass
class _Walk:
    """State of one pass over the chain."""

    expected_seq: int = 1
    prev_hash: str = GENESIS_HASH
    rows_ok: int = 0
    head_seq: int | None = None
    checkpoints_ok: int = 0
    problem: _Problem | None = None
    trusted: Mapping[int, list[AuditCheckpoint]] = field(default_factory=dict)


def _row_problem(keyring: Keyring, stored: StoredRow, walk: _Walk) -> _Problem | None:
    """What is wrong with the next row of the walk, if anything (also counts checkpoints confirmed)."""
    row = stored.row
    expected = walk.expected_seq
    if row.seq > expected:
        if expected == 1:
            reason = f"the chain starts at seq {row.seq} instead of 1: rows were deleted"
        else:
            reason = (
                f"seq {expected} is missing: the chain jumps from seq {expected - 1} to seq {row.seq} "
                "(rows deleted)"
            )
        return _Problem(seq=expected, reason=reason, event=_ref(row))
    if row.seq < expected:
        return _Problem(
            seq=row.seq, reason=f"unexpected seq {row.seq} (expected {expected})", event=_ref(row)
        )
    key = keyring.get(row.key_id)
    if key is None:
        reason = f"signed with unknown key id {row.key_id!r}, not the configured audit key"
        return _Problem(seq=row.seq, reason=reason, event=_ref(row))
    if not same_digest(row.prev_hash, walk.prev_hash):
        linked_to = "the genesis value" if expected == 1 else f"the hash of seq {expected - 1}"
        reason = f"prev_hash does not match {linked_to}: rows were reordered, replaced or inserted"
        return _Problem(seq=row.seq, reason=reason, event=_ref(row))
    if not same_digest(row_hash(key, row), stored.hash):
        reason = "the row's contents do not match its hash: the row was edited"
        return _Problem(seq=row.seq, reason=reason, event=_ref(row))
    for checkpoint in walk.trusted.get(row.seq, []):
        if not same_digest(checkpoint.hash, stored.hash):
            reason = (
                f"the row disagrees with checkpoint #{checkpoint.id} of "
                f"{timestamp_text(checkpoint.created_at)}: the chain was rewritten after it was signed"
            )
            return _Problem(seq=row.seq, reason=reason, event=_ref(row), checkpoint_id=checkpoint.id)
        walk.checkpoints_ok += 1
    return None


def _checkpoint_problem(keyring: Keyring, checkpoint: AuditCheckpoint) -> _Problem | None:
    key = keyring.get(checkpoint.key_id)
    if key is None:
        reason = f"checkpoint #{checkpoint.id} is signed with unknown key id {checkpoint.key_id!r}"
        return _Problem(seq=checkpoint.seq, reason=reason, checkpoint_id=checkpoint.id)
    expected = checkpoint_signature(key, checkpoint.seq, checkpoint.hash, checkpoint.created_at)
    if not same_digest(expected, checkpoint.signature):
        reason = (
            f"checkpoint #{checkpoint.id} (head seq {checkpoint.seq}) has an invalid signature: "
            "it was forged or altered"
        )
        return _Problem(seq=checkpoint.seq, reason=reason, checkpoint_id=checkpoint.id)
    return None


def _truncation_problem(walk: _Walk) -> _Problem | None:
    """The chain must reach the newest trusted checkpoint; otherwise its tail was cut off."""
    last = walk.head_seq or 0
    beyond = [checkpoint for seq, group in walk.trusted.items() if seq > last for checkpoint in group]
    if not beyond:
        return None
    newest = max(beyond, key=lambda checkpoint: (checkpoint.seq, checkpoint.id))
    reason = (
        f"the chain ends at seq {last}, but checkpoint #{newest.id} of "
        f"{timestamp_text(newest.created_at)} recorded head seq {newest.seq}: "
        f"seq {last + 1}..{newest.seq} were removed (tail truncated)"
    )
    return _Problem(seq=last + 1, reason=reason, checkpoint_id=newest.id)


class AuditService:
    def _keyring(self, session: AsyncSession, key: str | SecretStr | None = None) -> Keyring:
        return Keyring.single(key if key is not None else settings_of(session).security.audit_key)

    async def record(
        self,
        session: AsyncSession,
        actor: Actor,
        action: str,
        *,
        target: Target | None = None,
        payload: Mapping[str, Any] | None = None,
        result: AuditResult = "success",
        ip: str | None = None,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> AuditEvent:
        """Append one event to the chain in the caller's transaction (flushed, not committed).

        ``ip`` and ``request_id`` default to the current request's. Secrets in ``payload`` (keys
        such as password, token, secret) are redacted before the row is written.
        """
        # Everything that can be refused is checked before the lock is taken or SQL is sent, so a
        # bad call never leaves the caller's transaction aborted.
        _check_action(action)
        if result not in RESULTS:
            raise InvalidAuditEvent(f"audit result {result!r} must be one of {sorted(RESULTS)}")
        context = current_request()
        if ip is not None:
            ip = _ip_text(ip, strict=True)
        elif context is not None:
            ip = _ip_text(context.ip, strict=False)
        if request_id is None and context is not None:
            request_id = context.request_id
        if request_id is not None and len(request_id) > MAX_REQUEST_ID:
            raise InvalidAuditEvent(f"audit request_id is longer than {MAX_REQUEST_ID} characters")
        body = redact_mapping(normalise_payload(payload))
        keyring = self._keyring(session)

        lock = await repository.lock_chain(session, ip)
        if lock.isolation != "read committed":
            # Under REPEATABLE READ or SERIALIZABLE the snapshot predates the lock, so the head we
            # would read may be stale; the insert would then fail on a duplicate seq.
            raise AuditChainBusy(
                f"audit.record needs a READ COMMITTED transaction, this one is {lock.isolation}"
            )
        current = await repository.head(session)
        seq, prev_hash = (current[0] + 1, current[1]) if current is not None else (1, GENESIS_HASH)
        row = ChainRow(
            seq=seq,
            # Taken after the lock, so occurred_at never goes backwards along the chain.
            occurred_at=utcnow(),
            actor_type=actor.kind,
            actor_id=actor.id,
            actor_label=actor.label[:MAX_ACTOR_LABEL],
            actor_role=actor.role,
            action=action,
            target_type=target.type if target is not None else None,
            target_id=target.id if target is not None else None,
            payload=body,
            result=result,
            ip=lock.ip_text,
            reason=reason,
            request_id=request_id,
            key_id=keyring.current_id,
            prev_hash=prev_hash,
        )
        columns = {name: getattr(row, name) for name in CHAINED_COLUMNS}
        event = AuditEvent(**columns, hash=row_hash(keyring.current, row))
        await repository.insert_event(session, event)
        return event

    async def verify(
        self,
        session: AsyncSession,
        *,
        key: str | SecretStr | None = None,
        batch_size: int = VERIFY_BATCH,
    ) -> VerifyReport:
        """Walk the whole chain in seq order, batch by batch, and check every checkpoint.

        ``key`` defaults to the configured audit key. The report names the first problem: an
        edited row, a missing seq, a broken prev_hash link (reordering), an unknown key id, a
        forged checkpoint, or a chain that ends before (or disagrees with) a checkpoint.
        """
        keyring = self._keyring(session, key)
        problems: list[_Problem] = []
        trusted: dict[int, list[AuditCheckpoint]] = {}
        # Checkpoints first: rows only ever grow, so every row a checkpoint names is visible to
        # the row reads that follow, even as other transactions keep appending.
        for checkpoint in await repository.checkpoints(session):
            problem = _checkpoint_problem(keyring, checkpoint)
            if problem is not None:
                problems.append(problem)
            else:
                trusted.setdefault(checkpoint.seq, []).append(checkpoint)

        walk = _Walk(trusted=trusted)
        after = _BEFORE_EVERY_SEQ
        while walk.problem is None:
            batch = await repository.chain_batch(session, after, batch_size)
            for stored in batch:
                walk.problem = _row_problem(keyring, stored, walk)
                if walk.problem is not None:
                    break
                walk.rows_ok += 1
                walk.head_seq = stored.row.seq
                walk.prev_hash = stored.hash
                walk.expected_seq = stored.row.seq + 1
            if len(batch) < batch_size:
                break
            after = batch[-1].row.seq
        if walk.problem is not None:
            problems.append(walk.problem)
        else:
            truncated = _truncation_problem(walk)
            if truncated is not None:
                problems.append(truncated)

        report = VerifyReport(
            ok=not problems,
            rows_checked=walk.rows_ok,
            head_seq=walk.head_seq,
            checkpoints_checked=walk.checkpoints_ok,
        )
        if problems:
            # The earliest seq wins; at equal seq a row problem is more specific than a checkpoint's.
            first = min(problems, key=lambda problem: (problem.seq, problem.event is None))
            report.first_bad_seq = first.seq
            report.reason = first.reason
            report.bad_event = first.event
            report.bad_checkpoint_id = first.checkpoint_id
        return report

    async def checkpoint(self, session: AsyncSession) -> AuditCheckpoint | None:
        """Sign the current head (seq, hash), so a later truncation of the tail is detected.

        Returns None when the chain is empty. Run hourly by the jobs engine; flushes only.
        """
        keyring = self._keyring(session)
        current = await repository.head(session)
        if current is None:
            return None
        seq, head_hash = current
        created_at = utcnow()
        checkpoint = AuditCheckpoint(
            seq=seq,
            hash=head_hash,
            created_at=created_at,
            key_id=keyring.current_id,
            signature=checkpoint_signature(keyring.current, seq, head_hash, created_at),
        )
        await repository.insert_checkpoint(session, checkpoint)
        return checkpoint

    # Named `list` for callers' sake; defined last so `list[...]` annotations above mean the builtin.
    async def list(
        self,
        session: AsyncSession,
        *,
        action: str | None = None,
        actor_id: int | None = None,
        target: Target | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> Sequence[AuditEvent]:
        """Events newest first, optionally filtered. Page with ``before_seq`` = the last seq shown.

        ``action`` matches exactly, or as a prefix when it ends in ``.*`` (``"server.*"``).
        """
        limit = max(1, min(limit, LIST_LIMIT_MAX))
        return await repository.list_events(
            session, action=action, actor_id=actor_id, target=target, before_seq=before_seq, limit=limit
        )


audit = AuditService()
