"""Node SSH keys: make one, list them, delete an unused one, open one to connect, rotate them all.

The panel makes the key pair itself (Ed25519) so that an operator never types a key path or pastes
a private key into a form: a node's connection names one of these keys, and the driver gets the
private half only in memory when it connects. The public half is shown for the node's
``authorized_keys``. Private halves are sealed with AES-GCM, bound to their row
(``node-key:<id>:private``), and never logged, returned, rendered or audited.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.db.session import settings_of
from corral.kit.crypto import DecryptionFailed, Keyring, KeyringError
from corral.models.nodes import NodeSshKey
from corral.node_keys import repository
from corral.node_keys.errors import NodeKeyInUse, NodeKeyNameTaken, NodeKeyNotFound, NodeKeyUnreadable
from corral.node_keys.schemas import NodeKeyCreate, NodeKeyRead
from corral.rbac.permissions import Permission

READ = Permission.NODES_READ
MANAGE = Permission.NODES_MANAGE


def _need(principal: Principal, permission: Permission) -> None:
    if not principal.can(permission):
        raise MissingPermission()


def context_for(key_id: int) -> str:
    return f"node-key:{key_id}:private"


def keyring_of(session: AsyncSession) -> Keyring:
    try:
        return Keyring.parse(settings_of(session).security.encryption_keys.get_secret_value())
    except KeyringError as error:
        raise NodeKeyUnreadable(f"CORRAL_SECURITY__ENCRYPTION_KEYS is not usable: {error}") from None


@dataclass(frozen=True)
class KeyPair:
    public_key: str
    fingerprint: str
    private_key: str


def make_key_pair(comment: str) -> KeyPair:
    private = Ed25519PrivateKey.generate()
    private_text = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode("ascii")
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = base64.b64decode(public.split(b" ")[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return KeyPair(
        public_key=f"{public.decode('ascii')} {comment}",
        fingerprint=f"SHA256:{digest}",
        private_key=private_text,
    )


def private_key_of(session: AsyncSession, key: NodeSshKey) -> str:
    """The key's private half in the clear, to hand to a driver (never to a page or a log)."""
    try:
        return keyring_of(session).decrypt(key.private_key_encrypted, context=context_for(key.id))
    except DecryptionFailed:
        raise NodeKeyUnreadable() from None


@dataclass(frozen=True)
class KeyRotation:
    rotated: int
    total: int
    unreadable: Sequence[str] = ()


class NodeKeyService:
    async def list(self, session: AsyncSession, principal: Principal) -> list[NodeKeyRead]:
        _need(principal, READ)
        rows = await repository.list_with_use(session)
        return [NodeKeyRead.model_validate(key).model_copy(update={"nodes": used}) for key, used in rows]

    async def choices(self, session: AsyncSession, principal: Principal) -> builtins.list[tuple[int, str]]:
        """(id, "name (fingerprint)") pairs for the node form's key list."""
        return [(key.id, f"{key.name} ({key.fingerprint})") for key in await self.list(session, principal)]

    async def get(self, session: AsyncSession, principal: Principal, key_id: int) -> NodeSshKey:
        _need(principal, READ)
        key = await repository.get(session, key_id)
        if key is None:
            raise NodeKeyNotFound()
        return key

    async def create(self, session: AsyncSession, principal: Principal, data: NodeKeyCreate) -> NodeKeyRead:
        _need(principal, MANAGE)
        if await repository.get_by_name(session, data.name) is not None:
            raise NodeKeyNameTaken()
        pair = make_key_pair(f"corral-{data.name}")
        keyring = keyring_of(session)
        # The row needs its id before the private half can be sealed to it: a placeholder is
        # written first and replaced in the same transaction.
        key = NodeSshKey(
            name=data.name,
            public_key=pair.public_key,
            fingerprint=pair.fingerprint,
            private_key_encrypted="-",
        )
        try:
            async with session.begin_nested():
                await repository.add(session, key)
        except IntegrityError as error:
            raise NodeKeyNameTaken() from error
        key.private_key_encrypted = keyring.encrypt(pair.private_key, context=context_for(key.id))
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "node_key.create",
            target=Target(type="node_key", id=key.id),
            payload={"name": key.name, "fingerprint": key.fingerprint},
        )
        return NodeKeyRead.model_validate(key)

    async def delete(self, session: AsyncSession, principal: Principal, key_id: int) -> None:
        _need(principal, MANAGE)
        key = await repository.get(session, key_id, for_update=True)
        if key is None:
            raise NodeKeyNotFound()
        if await repository.is_used(session, key_id):
            raise NodeKeyInUse()
        payload = {"name": key.name, "fingerprint": key.fingerprint}
        try:
            async with session.begin_nested():
                await repository.delete(session, key)
        except IntegrityError as error:  # a node chose it meanwhile (the foreign key restricts)
            raise NodeKeyInUse() from error
        await audit.record(
            session,
            principal.actor,
            "node_key.delete",
            target=Target(type="node_key", id=key_id),
            payload=payload,
        )


async def rotate_all(session: AsyncSession, keyring: Keyring) -> KeyRotation:
    """Re-seal every key's private half under the keyring's current key (rows locked, in the
    caller's transaction); all or nothing, like the node credentials' rotation."""
    keys = await repository.all_for_update(session)
    unreadable: list[str] = []
    plaintexts: list[tuple[NodeSshKey, str]] = []
    for key in keys:
        if not keyring.needs_rotation(key.private_key_encrypted):
            continue
        try:
            plaintexts.append((key, keyring.decrypt(key.private_key_encrypted, context=context_for(key.id))))
        except DecryptionFailed as error:
            unreadable.append(f"node SSH key {key.id} ({key.name}): {error}")
    if unreadable:
        return KeyRotation(rotated=0, total=len(keys), unreadable=unreadable)
    for key, plain in plaintexts:
        key.private_key_encrypted = keyring.encrypt(plain, context=context_for(key.id))
    await session.flush()
    return KeyRotation(rotated=len(plaintexts), total=len(keys))


node_keys = NodeKeyService()
