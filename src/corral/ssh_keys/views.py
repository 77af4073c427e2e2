"""The account's SSH keys page: the list, the "add a key" form, and delete.

The add form posts normally (no script needed); a refused key comes back with what was typed and
the reason next to the field it concerns (422 or 409). After a change the browser is redirected
with a fixed ``done`` key, which the page turns into a toast. Delete is an htmx post
(``hx-confirm``) answered with ``HX-Redirect``; without JavaScript it is a plain form post.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.kit.text import MultiLine, SingleLine
from corral.rbac.permissions import Permission
from corral.ssh_keys.errors import InvalidSshKey, InvalidSshKeyName, SshKeyDuplicate, TooManySshKeys
from corral.ssh_keys.parsing import KEY_TYPES, MAX_INPUT_BYTES
from corral.ssh_keys.schemas import MAX_ID
from corral.ssh_keys.service import ssh_keys
from corral.web.deps import DbSession
from corral.web.forms import Done, FormPage
from corral.web.rendering import redirect

router = APIRouter(prefix="/account/ssh-keys", include_in_schema=False)

HERE = "/account/ssh-keys"
PAGE = "ssh_keys/list.html"
KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]
Manager = Annotated[Principal, require(Permission.SSH_KEYS_MANAGE)]
# Ceilings far above anything valid, so the parser (not a bare 422 page) explains a long paste.
NameText = Annotated[SingleLine, Form(max_length=1000)]
KeyText = Annotated[MultiLine, Form(max_length=MAX_INPUT_BYTES * 4)]

DONE: dict[str, str] = {"added": "SSH key added.", "deleted": "SSH key deleted."}
_REFUSALS = (InvalidSshKey, InvalidSshKeyName, SshKeyDuplicate, TooManySshKeys)


async def _page(
    request: Request, session: DbSession, principal: Principal, page: FormPage = FormPage()
) -> HTMLResponse:
    context = {
        "keys": await ssh_keys.list(session, principal),
        "form": page.values({"name": "", "public_key": ""}),
        "key_types": KEY_TYPES,
    }
    return page.render(request, PAGE, context)


@router.get("", response_class=HTMLResponse)
async def ssh_key_list(
    request: Request, session: DbSession, principal: Manager, done: Done = None
) -> HTMLResponse:
    return await _page(request, session, principal, FormPage.opened(done, DONE))


@router.post("", response_class=HTMLResponse)
async def add_ssh_key(
    request: Request, session: DbSession, principal: Manager, name: NameText = "", public_key: KeyText = ""
) -> Response:
    try:
        await ssh_keys.add(session, principal, name, public_key)
    except _REFUSALS as error:
        # Nothing was written: every refusal is raised before the insert (or undone with it).
        form = {"name": name, "public_key": public_key}
        return await _page(request, session, principal, FormPage.refused(form, error))
    return RedirectResponse(f"{HERE}?done=added", status_code=303)


@router.post("/{key_id}/delete")
async def delete_ssh_key(request: Request, session: DbSession, principal: Manager, key_id: KeyId) -> Response:
    await ssh_keys.delete(session, principal, key_id)
    return redirect(request, f"{HERE}?done=deleted")
