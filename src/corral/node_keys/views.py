"""Admin page for node SSH keys: the list with each public key to copy, "make a key", delete.

The form posts normally; a refused name comes back beside the field. Delete is an htmx post
(``hx-confirm``) answered with ``HX-Redirect``; a key still in use is refused with a toast.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.node_keys.errors import NodeKeyNameTaken
from corral.node_keys.schemas import MAX_ID, NodeKeyCreate
from corral.node_keys.service import node_keys
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.forms import Done, FormPage
from corral.web.rendering import redirect

router = APIRouter(prefix="/admin/node-keys", include_in_schema=False)

KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.NODES_READ)]
Manager = Annotated[Principal, require(Permission.NODES_MANAGE)]

LIST_TEMPLATE = "node_keys/list.html"
DONE: dict[str, str] = {
    "created": "Key made. Add its public key to the node login's authorized_keys.",
    "deleted": "Key deleted.",
}
HINTS: dict[str, str] = {"name": "1-100 letters, digits, dots, dashes or underscores."}


async def _list_page(
    request: Request, session: DbSession, principal: Principal, page: FormPage = FormPage()
) -> HTMLResponse:
    context = {"keys": await node_keys.list(session, principal), "form": page.values({"name": ""})}
    return page.render(request, LIST_TEMPLATE, context)


@router.get("", response_class=HTMLResponse)
async def key_list(
    request: Request, session: DbSession, principal: Reader, done: Done = None
) -> HTMLResponse:
    return await _list_page(request, session, principal, FormPage.opened(done, DONE))


@router.post("", response_class=HTMLResponse)
async def create_key(
    request: Request, session: DbSession, principal: Manager, name: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    form = {"name": name}
    try:
        await node_keys.create(session, principal, NodeKeyCreate.model_validate(form))
    except ValidationError as error:
        return await _list_page(request, session, principal, FormPage.refused(form, error, hints=HINTS))
    except NodeKeyNameTaken as error:
        page = FormPage.refused(form, error, fields={NodeKeyNameTaken: "name"})
        return await _list_page(request, session, principal, page)
    return RedirectResponse("/admin/node-keys?done=created", status_code=303)


@router.post("/{key_id}/delete")
async def delete_key(request: Request, session: DbSession, principal: Manager, key_id: KeyId) -> Response:
    await node_keys.delete(session, principal, key_id)
    return redirect(request, "/admin/node-keys?done=deleted")
