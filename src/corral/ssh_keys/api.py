"""A person's SSH keys as JSON, under /api/v1/account/ssh-keys. Same service as the page.

Errors are ``{"code", "message", "request_id"}``: 404 ``ssh_key_not_found``, 409
``ssh_key_duplicate`` / ``too_many_ssh_keys``, 422 ``invalid_ssh_key`` (the message says what is
wrong with the pasted key), ``invalid_ssh_key_name`` or ``validation_failed``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Response, status

from corral.auth.api import api_router
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ErrorRead
from corral.rbac.permissions import Permission
from corral.ssh_keys.schemas import MAX_ID, SshKeyCreate, SshKeyRead
from corral.ssh_keys.service import ssh_keys
from corral.web.deps import DbSession

_ERROR: dict[str, Any] = {"model": ErrorRead}
router = api_router("/api/v1/account/ssh-keys", tag="ssh-keys", operation_prefix="ssh_keys")

KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]
Manager = Annotated[Principal, require(Permission.SSH_KEYS_MANAGE)]


@router.get("", response_model=list[SshKeyRead])
async def list_ssh_keys(session: DbSession, principal: Manager) -> list[SshKeyRead]:
    """Your SSH public keys, newest first."""
    return [SshKeyRead.model_validate(key) for key in await ssh_keys.list(session, principal)]


@router.post(
    "",
    response_model=SshKeyRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        409: {**_ERROR, "description": "The key is already on your account, or you have 50 keys."},
        422: {**_ERROR, "description": "Not one acceptable OpenSSH public key line, or a bad name."},
    },
)
async def add_ssh_key(session: DbSession, principal: Manager, body: SshKeyCreate) -> SshKeyRead:
    """Add one public key (ed25519, ECDSA, RSA of 2048 bits or more, or a security key).
    An empty name takes the key's comment."""
    return SshKeyRead.model_validate(await ssh_keys.add(session, principal, body.name, body.public_key))


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {**_ERROR, "description": "No such key on your account."}},
)
async def delete_ssh_key(session: DbSession, principal: Manager, key_id: KeyId) -> Response:
    """Remove a key from your account; servers that already have it keep it."""
    await ssh_keys.delete(session, principal, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
