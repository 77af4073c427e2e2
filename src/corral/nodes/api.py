"""Nodes as JSON, under /api/v1/admin/nodes. Same service as the pages.

Credentials go in and never come out (``credentials_set`` says whether some are stored). Errors
are ``{"code", "message", "request_id"}``: 404 ``node_not_found``; 409 ``node_name_taken``,
``node_in_use``; 422 ``validation_failed`` (field ``errors``), ``node_unreachable`` (the connection
test failed: ``details.error`` has the driver's message; send ``allow_unreachable`` to store the
node offline anyway), ``capacity_unknown``, ``unknown_location``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Response

from corral.auth.api import api_router
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ErrorRead
from corral.models.nodes import NodeStatus
from corral.nodes.schemas import (
    MAX_ID,
    ConnectionTestResult,
    NodeCheckRead,
    NodeConnectionTest,
    NodeCreate,
    NodeDetailRead,
    NodeMaintenance,
    NodeRead,
    NodeUpdate,
)
from corral.nodes.service import nodes, test_result
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession

_ERROR: dict[str, Any] = {"model": ErrorRead}
router = api_router("/api/v1/admin/nodes", tag="nodes", operation_prefix="nodes")

NodeId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.NODES_READ)]
Manager = Annotated[Principal, require(Permission.NODES_MANAGE)]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _ERROR}
_SAVE: dict[int | str, dict[str, Any]] = {404: _ERROR, 409: _ERROR, 422: _ERROR}


@router.get("", response_model=list[NodeRead])
async def list_nodes(session: DbSession, principal: Reader) -> list[NodeRead]:
    """Every node with its status and what its servers use."""
    return [row.read() for row in await nodes.list(session, principal)]


@router.post("", response_model=NodeRead, status_code=201, responses=_SAVE)
async def create_node(session: DbSession, principal: Manager, data: NodeCreate) -> NodeRead:
    """Test the connection, then store the node: online (or in maintenance if asked), or offline
    with the error when the test failed and `allow_unreachable` is set. Capacity left out is
    taken from what the node reports."""
    return NodeRead.of(await nodes.create(session, principal, data))


@router.post("/test-connection", response_model=ConnectionTestResult)
async def test_connection(
    session: DbSession, principal: Manager, data: NodeConnectionTest
) -> ConnectionTestResult:
    """Ask a node for its host information without saving anything. A node that does not answer is
    a normal result (`ok: false` with the driver's message), not an error."""
    return await nodes.test_connection(session, principal, data)


@router.get("/{node_id}", response_model=NodeDetailRead, responses=_NOT_FOUND)
async def get_node(session: DbSession, principal: Reader, node_id: NodeId) -> NodeDetailRead:
    """The node with its usage and the OS templates listed on it."""
    return (await nodes.detail(session, principal, node_id)).read()


@router.patch("/{node_id}", response_model=NodeRead, responses=_SAVE)
async def update_node(session: DbSession, principal: Manager, node_id: NodeId, data: NodeUpdate) -> NodeRead:
    """Change fields; changing how the node is reached tests the connection first."""
    return NodeRead.of(await nodes.update(session, principal, node_id, data))


@router.delete("/{node_id}", status_code=204, responses={404: _ERROR, 409: _ERROR})
async def delete_node(session: DbSession, principal: Manager, node_id: NodeId) -> Response:
    """Delete a node no server has used (409 `node_in_use` otherwise)."""
    await nodes.delete(session, principal, node_id)
    return Response(status_code=204)


@router.post("/{node_id}/maintenance", response_model=NodeRead, responses=_NOT_FOUND)
async def set_maintenance(
    session: DbSession, principal: Manager, node_id: NodeId, data: NodeMaintenance
) -> NodeRead:
    """`enabled: true` puts the node in maintenance; `false` checks it and returns it to online
    (or offline/unhealthy with the reason)."""
    return NodeRead.of(await nodes.set_maintenance(session, principal, node_id, data.enabled))


@router.post("/{node_id}/check", response_model=NodeCheckRead, responses=_NOT_FOUND)
async def check_node(session: DbSession, principal: Manager, node_id: NodeId) -> NodeCheckRead:
    """Run the health check now (it also runs every minute in the background)."""
    outcome = await nodes.check_now(session, principal, node_id)
    return NodeCheckRead(
        node=NodeRead.of(outcome.node),
        previous_status=NodeStatus(outcome.previous_status),
        result=test_result(outcome.result),
    )
