"""Node credentials at rest: sealed per row with AES-GCM, opened only to build a driver connection.

The ciphertext is bound to its row (``node:<id>:credentials`` is the associated data), so a value
copied into another node's row fails to decrypt instead of lending that node someone else's login.
The plaintext is a small JSON object (``username``, ``password``) that is never logged, returned by
the API, rendered in a page or written to the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.db.session import settings_of
from corral.kit.crypto import DecryptionFailed, Keyring, KeyringError
from corral.models.nodes import Node
from corral.nodes import repository
from corral.nodes.errors import EncryptionNotConfigured
from corral.nodes.schemas import NodeCredentials


class CredentialsUnreadable(Exception):
    """The stored credentials cannot be decrypted (key removed, value altered). Safe to show."""


def context_for(node_id: int) -> str:
    return f"node:{node_id}:credentials"


def keyring_of(session: AsyncSession) -> Keyring:
    try:
        return Keyring.parse(settings_of(session).security.encryption_keys.get_secret_value())
    except KeyringError as error:
        raise EncryptionNotConfigured() from error


def seal(keyring: Keyring, node_id: int, credentials: NodeCredentials) -> str:
    return keyring.encrypt(json.dumps(credentials.plain(), sort_keys=True), context=context_for(node_id))


def unseal(keyring: Keyring, node_id: int, token: str) -> NodeCredentials:
    try:
        plain = keyring.decrypt(token, context=context_for(node_id))
        return NodeCredentials.model_validate(json.loads(plain))
    except DecryptionFailed as error:
        raise CredentialsUnreadable(f"the stored credentials cannot be decrypted: {error}") from None
    except (ValueError, ValidationError):
        # ValidationError is a ValueError too; either way the message could quote the plaintext.
        raise CredentialsUnreadable("the stored credentials are not in the expected form") from None


def credentials_of(session: AsyncSession, node: Node) -> NodeCredentials | None:
    """The node's credentials in the clear, or None when it has none."""
    if node.credentials_encrypted is None:
        return None
    return unseal(keyring_of(session), node.id, node.credentials_encrypted)


def store(session: AsyncSession, node: Node, credentials: NodeCredentials | None) -> None:
    """Seal ``credentials`` into the row (the node must have its id: flush a new node first)."""
    if credentials is None or credentials.is_empty():
        node.credentials_encrypted = None
        return
    node.credentials_encrypted = seal(keyring_of(session), node.id, credentials)


@dataclass(frozen=True)
class RotationReport:
    rotated: int
    total: int
    key_id: str
    unreadable: Sequence[str] = ()


async def rotate_all(session: AsyncSession, keyring: Keyring) -> RotationReport:
    """Re-encrypt every node's credentials under the keyring's current key, in the caller's
    transaction, with the rows locked. Values already under the current key are left alone, so a
    second run rotates nothing. If any value cannot be decrypted nothing is changed and the report
    names the nodes."""
    nodes = await repository.with_credentials_for_update(session)
    unreadable: list[str] = []
    plaintexts: list[tuple[Node, str]] = []
    for node in nodes:
        token = node.credentials_encrypted
        if token is None or not keyring.needs_rotation(token):
            continue
        try:
            plaintexts.append((node, keyring.decrypt(token, context=context_for(node.id))))
        except DecryptionFailed as error:
            unreadable.append(f"node {node.id} ({node.name}): {error}")
    if unreadable:
        # All or nothing: no row is touched, so a rerun with the missing key configured finishes it.
        return RotationReport(rotated=0, total=len(nodes), key_id=keyring.current_id, unreadable=unreadable)
    for node, plain in plaintexts:
        node.credentials_encrypted = keyring.encrypt(plain, context=context_for(node.id))
    await session.flush()
    return RotationReport(rotated=len(plaintexts), total=len(nodes), key_id=keyring.current_id)
