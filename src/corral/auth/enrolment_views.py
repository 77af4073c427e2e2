"""The enrolment link's page: where an operator or super-admin adds their first passkey.

``GET /account/security/passkeys/enrol?token=…`` needs a signed-in session (someone who is not
signed in is sent to sign in and brought back) and shows the "add your passkey" form only when the
link is theirs and still works; the passkeys script then posts to the two JSON endpoints below
with the token. Refusals are answered, not raised, so their audit records are committed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from corral.auth.deps import require
from corral.auth.enrolment import ENROL_PATH, MAX_TOKEN_LENGTH, passkey_enrolment
from corral.auth.passkeys import MAX_NAME
from corral.auth.principal import Principal
from corral.kit.errors import PanelError
from corral.kit.text import SingleLine
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.rendering import render

router = APIRouter(include_in_schema=False)

PAGE = "account/passkey_enrol.html"
# No step-up: the link is the second proof here, and a password step-up is exactly what must not
# be enough. A password session of a privileged account holds ACCOUNT_UPDATE (customer rights).
Enroller = Annotated[Principal, require(Permission.ACCOUNT_UPDATE)]
Token = Annotated[SingleLine, Body(max_length=MAX_TOKEN_LENGTH, embed=True)]
# The page carries a live link: no cache may keep it.
NO_STORE = {"Cache-Control": "no-store"}


def _error(error: PanelError) -> JSONResponse:
    return JSONResponse({"code": error.code, "message": error.message}, status_code=error.status_code)


@router.get(ENROL_PATH, response_class=HTMLResponse)
async def enrol_page(
    request: Request,
    session: DbSession,
    principal: Enroller,
    token: Annotated[SingleLine, Query(max_length=MAX_TOKEN_LENGTH)] = "",
) -> HTMLResponse:
    context: dict[str, Any] = {"token": token, "max_name": MAX_NAME, "refusal": None}
    status_code = 200
    try:
        await passkey_enrolment.check(session, principal, token)
    except PanelError as refusal:
        context.update(refusal=refusal, token="")
        status_code = refusal.status_code
    return render(request, PAGE, context, status_code=status_code, headers=NO_STORE)


@router.post(f"{ENROL_PATH}/options")
async def enrol_options(session: DbSession, principal: Enroller, token: Token = "") -> JSONResponse:
    try:
        options = await passkey_enrolment.registration_options(session, principal, token)
    except PanelError as error:
        return _error(error)
    return JSONResponse(options, headers=NO_STORE)


@router.post(ENROL_PATH)
async def enrol(
    session: DbSession,
    principal: Enroller,
    credential: Annotated[dict[str, Any], Body()],
    token: Token = "",
    name: Annotated[SingleLine, Body(max_length=MAX_NAME)] = "",
) -> JSONResponse:
    try:
        key = await passkey_enrolment.finish(session, principal, token, credential, name)
    except PanelError as error:
        return _error(error)
    body = {"id": key.id, "name": key.name, "redirect": "/account/security/passkeys?done=enrolled"}
    return JSONResponse(body, status_code=201)
