"""OS templates as JSON, under /api/v1/admin/os-templates. Same service as the pages.

Errors are ``{"code", "message", "request_id"}``: 404 ``template_not_found`` /
``template_not_on_node``; 409 ``template_slug_taken``, ``template_in_use``,
``template_already_on_node``; 422 ``validation_failed`` (field ``errors``), ``unknown_node``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Response

from corral.auth.api import api_router
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ErrorRead
from corral.rbac.permissions import Permission
from corral.templates.schemas import (
    MAX_ID,
    NodeTemplateCreate,
    OsTemplateCreate,
    OsTemplateDetailRead,
    OsTemplateRead,
    OsTemplateUpdate,
    TemplateNodeRead,
)
from corral.templates.service import templates
from corral.web.deps import DbSession

_ERROR: dict[str, Any] = {"model": ErrorRead}
router = api_router("/api/v1/admin/os-templates", tag="os-templates", operation_prefix="os_templates")

TemplateId = Annotated[int, Path(ge=1, le=MAX_ID)]
NodeId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.NODES_READ)]
Manager = Annotated[Principal, require(Permission.TEMPLATES_MANAGE)]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _ERROR}
_CONFLICT: dict[int | str, dict[str, Any]] = {404: _ERROR, 409: _ERROR}


@router.get("", response_model=list[OsTemplateRead])
async def list_templates(session: DbSession, principal: Reader) -> list[OsTemplateRead]:
    return [OsTemplateRead.model_validate(row.template) for row in await templates.list(session, principal)]


@router.post("", response_model=OsTemplateRead, status_code=201, responses={409: _ERROR})
async def create_template(session: DbSession, principal: Manager, data: OsTemplateCreate) -> OsTemplateRead:
    return OsTemplateRead.model_validate(await templates.create(session, principal, data))


@router.get("/{template_id}", response_model=OsTemplateDetailRead, responses=_NOT_FOUND)
async def get_template(
    session: DbSession, principal: Reader, template_id: TemplateId
) -> OsTemplateDetailRead:
    """The template and the nodes it is listed on, with whether its image was found there."""
    return (await templates.detail(session, principal, template_id)).read()


@router.patch("/{template_id}", response_model=OsTemplateRead, responses=_NOT_FOUND)
async def update_template(
    session: DbSession, principal: Manager, template_id: TemplateId, data: OsTemplateUpdate
) -> OsTemplateRead:
    return OsTemplateRead.model_validate(await templates.update(session, principal, template_id, data))


@router.delete("/{template_id}", status_code=204, responses=_CONFLICT)
async def delete_template(session: DbSession, principal: Manager, template_id: TemplateId) -> Response:
    """Delete a template no server was installed from (409 `template_in_use`: deactivate it)."""
    await templates.delete(session, principal, template_id)
    return Response(status_code=204)


@router.post("/{template_id}/nodes", response_model=TemplateNodeRead, status_code=201, responses=_CONFLICT)
async def add_to_node(
    session: DbSession, principal: Manager, template_id: TemplateId, data: NodeTemplateCreate
) -> TemplateNodeRead:
    """List the template's image (a volume in the node's storage pool) on a node and check the
    node for it at once; `present` says whether it was found."""
    link = await templates.add_to_node(session, principal, template_id, data)
    detail = await templates.detail(session, principal, template_id)
    return next(node for node in detail.read().nodes if node.node_id == link.node_id)


@router.delete("/{template_id}/nodes/{node_id}", status_code=204, responses=_NOT_FOUND)
async def remove_from_node(
    session: DbSession, principal: Manager, template_id: TemplateId, node_id: NodeId
) -> Response:
    await templates.remove_from_node(session, principal, template_id, node_id)
    return Response(status_code=204)
