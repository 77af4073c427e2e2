"""Admin pages for OS templates: the list (with "add"), a template's page (edit, the nodes it is
listed on, list it on another node), delete.

Forms post normally; an invalid form comes back with the errors next to the fields (422); after a
change the browser is redirected with a fixed ``done`` key shown as a toast. Deletes are htmx posts
with ``hx-confirm`` answered by ``HX-Redirect`` (a refusal arrives as an error toast).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.nodes.service import nodes
from corral.rbac.permissions import Permission
from corral.templates.errors import TemplateAlreadyOnNode, TemplateSlugTaken, UnknownNode
from corral.templates.schemas import MAX_ID, NodeTemplateCreate, OsTemplateCreate, OsTemplateUpdate
from corral.templates.service import templates
from corral.web.deps import DbSession
from corral.web.forms import Done, FormPage, done_toasts, field_errors
from corral.web.rendering import Toast, redirect, render

router = APIRouter(prefix="/admin/os-templates", include_in_schema=False)

TemplateId = Annotated[int, Path(ge=1, le=MAX_ID)]
NodeId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.NODES_READ)]
Manager = Annotated[Principal, require(Permission.TEMPLATES_MANAGE)]
FormText = Annotated[str, Form(max_length=300)]

LIST_TEMPLATE = "os_templates/list.html"
DETAIL_TEMPLATE = "os_templates/detail.html"
DONE: dict[str, str] = {
    "created": "OS template added.",
    "saved": "OS template saved.",
    "deleted": "OS template deleted.",
    "listed": "Template listed on the node and the node checked for its image.",
    "unlisted": "Template no longer offered on that node.",
}
FIELDS = ("slug", "name", "os_family", "os_version", "min_disk_gib", "default_user")
HINTS: dict[str, str] = {
    "slug": "2-60 lower-case letters, digits, dots or dashes, e.g. debian-12.",
    "name": "Give a name of 1-100 characters.",
    "os_family": "Lower-case, e.g. debian, ubuntu, almalinux.",
    "os_version": "Up to 40 letters, digits, spaces, dots or dashes, e.g. 12 or 24.04 LTS.",
    "min_disk_gib": "A whole number of GiB, 1 or more.",
    "default_user": "A Linux login name, e.g. root or debian.",
    "image_ref": "A volume name in the node's storage pool, e.g. debian-12.qcow2 (no slashes).",
    "node_id": "Choose a node.",
}
EMPTY_FORM: dict[str, Any] = {
    "slug": "",
    "name": "",
    "os_family": "",
    "os_version": "",
    "min_disk_gib": "10",
    "default_user": "root",
    "cloud_init": True,
    "active": True,
}


async def _list_page(
    request: Request, session: DbSession, principal: Principal, page: FormPage = FormPage()
) -> HTMLResponse:
    context = {"rows": await templates.list(session, principal), "form": page.values(EMPTY_FORM)}
    return page.render(request, LIST_TEMPLATE, context)


def _template_form(values: dict[str, str], cloud_init: str, active: str) -> dict[str, Any]:
    return {**values, "cloud_init": cloud_init == "on", "active": active == "on"}


@router.get("", response_class=HTMLResponse)
async def template_list(
    request: Request, session: DbSession, principal: Reader, done: Done = None
) -> HTMLResponse:
    return await _list_page(request, session, principal, FormPage.opened(done, DONE))


@router.post("", response_class=HTMLResponse)
async def create_template(
    request: Request,
    session: DbSession,
    principal: Manager,
    slug: FormText = "",
    name: FormText = "",
    os_family: FormText = "",
    os_version: FormText = "",
    min_disk_gib: FormText = "",
    default_user: FormText = "",
    cloud_init: FormText = "",
    active: FormText = "",
) -> Response:
    values = {
        "slug": slug,
        "name": name,
        "os_family": os_family,
        "os_version": os_version,
        "min_disk_gib": min_disk_gib,
        "default_user": default_user,
    }
    form = _template_form(values, cloud_init, active)
    try:
        await templates.create(session, principal, OsTemplateCreate.model_validate(form))
    except (ValidationError, TemplateSlugTaken) as error:
        page = FormPage.refused(form, error, hints=HINTS, fields={TemplateSlugTaken: "slug"})
        return await _list_page(request, session, principal, page)
    return RedirectResponse("/admin/os-templates?done=created", status_code=303)


async def _detail_page(
    request: Request,
    session: DbSession,
    principal: Principal,
    template_id: int,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    link_form: dict[str, str] | None = None,
    link_errors: dict[str, str] | None = None,
    toasts: list[Toast] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    detail = await templates.detail(session, principal, template_id)
    template = detail.template
    listed = {node.id for _, node in detail.links}
    node_rows = await nodes.list(session, principal) if principal.can(Permission.TEMPLATES_MANAGE) else []
    context = {
        "detail": detail,
        "template": template,
        "form": form or {name: getattr(template, name) for name in (*FIELDS, "cloud_init", "active")},
        "errors": errors or {},
        "link_form": link_form or {"node_id": "", "image_ref": ""},
        "link_errors": link_errors or {},
        "unlisted_nodes": [row.node for row in node_rows if row.node.id not in listed],
        "toasts": toasts or [],
    }
    return render(request, DETAIL_TEMPLATE, context, status_code=status_code)


@router.get("/{template_id}", response_class=HTMLResponse)
async def template_page(
    request: Request, session: DbSession, principal: Reader, template_id: TemplateId, done: Done = None
) -> HTMLResponse:
    return await _detail_page(request, session, principal, template_id, toasts=done_toasts(done, DONE))


@router.post("/{template_id}", response_class=HTMLResponse)
async def update_template(
    request: Request,
    session: DbSession,
    principal: Manager,
    template_id: TemplateId,
    name: FormText = "",
    os_family: FormText = "",
    os_version: FormText = "",
    min_disk_gib: FormText = "",
    default_user: FormText = "",
    cloud_init: FormText = "",
    active: FormText = "",
) -> Response:
    values = {
        "name": name,
        "os_family": os_family,
        "os_version": os_version,
        "min_disk_gib": min_disk_gib,
        "default_user": default_user,
    }
    form = _template_form(values, cloud_init, active)
    try:
        data = OsTemplateUpdate.model_validate(form)
    except ValidationError as error:
        return await _detail_page(
            request,
            session,
            principal,
            template_id,
            form=form,
            errors=field_errors(error, hints=HINTS),
            status_code=422,
        )
    await templates.update(session, principal, template_id, data)
    return RedirectResponse(f"/admin/os-templates/{template_id}?done=saved", status_code=303)


@router.post("/{template_id}/delete")
async def delete_template(
    request: Request, session: DbSession, principal: Manager, template_id: TemplateId
) -> Response:
    await templates.delete(session, principal, template_id)
    return redirect(request, "/admin/os-templates?done=deleted")


@router.post("/{template_id}/nodes", response_class=HTMLResponse)
async def add_to_node(
    request: Request,
    session: DbSession,
    principal: Manager,
    template_id: TemplateId,
    node_id: FormText = "",
    image_ref: FormText = "",
) -> Response:
    link_form = {"node_id": node_id, "image_ref": image_ref}
    try:
        data = NodeTemplateCreate.model_validate(
            {"node_id": node_id or None, "image_ref": image_ref.strip() or None}
        )
        await templates.add_to_node(session, principal, template_id, data)
    except ValidationError as error:
        return await _detail_page(
            request,
            session,
            principal,
            template_id,
            link_form=link_form,
            link_errors=field_errors(error, hints=HINTS),
            status_code=422,
        )
    except (UnknownNode, TemplateAlreadyOnNode) as error:
        return await _detail_page(
            request,
            session,
            principal,
            template_id,
            link_form=link_form,
            link_errors={"node_id": error.message},
            status_code=error.status_code,
        )
    return RedirectResponse(f"/admin/os-templates/{template_id}?done=listed", status_code=303)


@router.post("/{template_id}/nodes/{node_id}/delete")
async def remove_from_node(
    request: Request, session: DbSession, principal: Manager, template_id: TemplateId, node_id: NodeId
) -> Response:
    await templates.remove_from_node(session, principal, template_id, node_id)
    return redirect(request, f"/admin/os-templates/{template_id}?done=unlisted")
