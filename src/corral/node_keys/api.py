"""Node SSH keys as JSON, under /api/v1/admin/node-keys. Same service as the pages.

The private half of a key never comes out. Errors are ``{"code", "message", "request_id"}``: 404
``node_key_not_found``; 409 ``node_key_name_taken``, ``node_key_in_use``; 422 ``validation_failed``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Response

from corral.auth.api import api_router
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ErrorRead
from corral.node_keys.schemas import MAX_ID, NodeKeyCreate, NodeKeyRead
from corral.node_keys.service import node_keys
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession

_ERROR: dict[str, Any] = {"model": ErrorRead}
router = api_router("/api/v1/admin/node-keys", tag="node-keys", operation_prefix="node_keys")

KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.NODES_READ)]
Manager = Annotated[Principal, require(Permission.NODES_MANAGE)]


@router.get("", response_model=list[NodeKeyRead])
async def list_node_keys(session: DbSession, principal: Reader) -> list[NodeKeyRead]:
    """Every SSH key the panel keeps for nodes, with the number of nodes using it."""
    return await node_keys.list(session, principal)


@router.post("", response_model=NodeKeyRead, status_code=201, responses={409: _ERROR})
async def create_node_key(session: DbSession, principal: Manager, data: NodeKeyCreate) -> NodeKeyRead:
    """Make a new Ed25519 key pair. Add `public_key` to the node login's `authorized_keys`."""
    return await node_keys.create(session, principal, data)


@router.delete("/{key_id}", status_code=204, responses={404: _ERROR, 409: _ERROR})
async def delete_node_key(session: DbSession, principal: Manager, key_id: KeyId) -> Response:
    """Delete a key no node uses (409 `node_key_in_use` otherwise)."""
    await node_keys.delete(session, principal, key_id)
    return Response(status_code=204)
