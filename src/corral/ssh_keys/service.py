"""A person's SSH keys: list, add, delete; and the keys another domain may put on a server.

Every query goes through the owner's id, so another person's key answers exactly as a missing
one does (404). Adds and deletes are audited in the request's transaction. A key is parsed and
checked before anything is written (see ``parsing.py``), and the per-account limit and the
duplicate check run under a per-owner lock, so a refusal never leaves a row behind.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.models.ssh_keys import SshKey
from corral.rbac.permissions import Permission
from corral.ssh_keys import repository
from corral.ssh_keys.errors import (
    MAX_KEYS_PER_ACCOUNT,
    InvalidSshKeyName,
    SshKeyDuplicate,
    SshKeyNotFound,
    TooManySshKeys,
)
from corral.ssh_keys.parsing import clean_comment, parse_public_key
from corral.ssh_keys.schemas import MAX_ID, MAX_NAME

MANAGE = Permission.SSH_KEYS_MANAGE


def _need(principal: Principal) -> None:
    if not principal.can(MANAGE):
        raise MissingPermission()


def _duplicate(existing: SshKey) -> SshKeyDuplicate:
    return SshKeyDuplicate(
        f"This key is already on your account as “{existing.name}”.",
        details={"field": "public_key", "ssh_key_id": existing.id},
    )


def _summary(key: SshKey) -> dict[str, str]:
    return {"name": key.name, "key_type": key.key_type, "fingerprint": key.fingerprint}


class SshKeyService:
    async def list(self, session: AsyncSession, principal: Principal) -> Sequence[SshKey]:
        """The person's own keys, newest first."""
        _need(principal)
        return await repository.own_keys(session, principal.user_id)

    async def add(self, session: AsyncSession, principal: Principal, name: str, text: str) -> SshKey:
        """Check and store one public key. ``name`` may be empty: the key's comment is used then."""
        _need(principal)
        parsed = parse_public_key(text)
        # Same cleaning as a comment: a name is shown in lists and in the wizard, never with
        # control characters in it.
        label = clean_comment(name) or parsed.comment
        if not label:
            raise InvalidSshKeyName("Give the key a name (the key has no comment to use instead).")
        if len(name.strip()) > MAX_NAME:
            raise InvalidSshKeyName()
        await repository.lock_owner(session, principal.user_id)
        existing = await repository.by_fingerprint(session, principal.user_id, parsed.fingerprint)
        if existing is not None:
            raise _duplicate(existing)
        if await repository.count(session, principal.user_id) >= MAX_KEYS_PER_ACCOUNT:
            raise TooManySshKeys()
        key = SshKey(
            user_id=principal.user_id,
            name=label,
            public_key=parsed.public_key,
            key_type=parsed.key_type,
            fingerprint=parsed.fingerprint,
        )
        try:
            # A savepoint: should the unique index still refuse it, only this insert is undone.
            async with session.begin_nested():
                await repository.add(session, key)
        except IntegrityError as error:
            found = await repository.by_fingerprint(session, principal.user_id, parsed.fingerprint)
            raise (_duplicate(found) if found is not None else SshKeyDuplicate()) from error
        await audit.record(
            session,
            principal.actor,
            "ssh_key.add",
            target=Target(type="ssh_key", id=key.id),
            payload=_summary(key),
        )
        return key

    async def delete(self, session: AsyncSession, principal: Principal, key_id: int) -> None:
        _need(principal)
        key = await repository.own_key(session, principal.user_id, key_id)
        if key is None:
            raise SshKeyNotFound()
        summary = _summary(key)
        await repository.delete(session, key)
        await audit.record(
            session,
            principal.actor,
            "ssh_key.delete",
            target=Target(type="ssh_key", id=key_id),
            payload=summary,
        )

    async def owned(self, session: AsyncSession, user_id: int, ids: Sequence[int]) -> builtins.list[SshKey]:
        """The keys ``ids`` names, in that order (repeats dropped), all belonging to ``user_id``.

        For other domains (the server wizard) that take key ids from a form: any id that is not
        this person's key is a 404, so nothing is installed from a half-valid list.
        """
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        if any(not 1 <= key_id <= MAX_ID for key_id in wanted):
            # Outside BIGINT no row can have it; asking PostgreSQL would be an error, not a 404.
            raise SshKeyNotFound("One of the chosen SSH keys does not exist on your account.")
        found = {key.id: key for key in await repository.own_keys_by_id(session, user_id, wanted)}
        if len(found) != len(wanted):
            raise SshKeyNotFound("One of the chosen SSH keys does not exist on your account.")
        return [found[key_id] for key_id in wanted]


ssh_keys = SshKeyService()
