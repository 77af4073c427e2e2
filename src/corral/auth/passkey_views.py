"""Passkey pages and the JSON endpoints the passkeys script calls.

- ``/account/security/passkeys``: the list (name, added, last used) with rename and remove, and
  the "Add a passkey" button. Adding, renaming and removing need a fresh step-up.
- ``/login/passkey/options`` and ``/login/passkey``: signing in with a passkey alone
  (discoverable credentials: the browser offers the passkeys it holds for this site).

The ceremony endpoints answer JSON. A refused passkey is *returned* as an error, not raised, so
the request's transaction commits the failure's audit entry and the spent challenge.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Form, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from corral.auth.deps import PUBLIC, require
from corral.auth.passkey_errors import PasskeyRejected
from corral.auth.passkeys import MAX_NAME, passkeys
from corral.auth.principal import Principal
from corral.auth.security_views import ago, stamp
from corral.auth.service import auth
from corral.auth.views import MESSAGES, start_cookie_session
from corral.kit.clock import utcnow
from corral.kit.context import current_request
from corral.kit.errors import PanelError
from corral.kit.text import SingleLine
from corral.rbac.permissions import PASSKEY_ONLY_ROLES, Permission
from corral.web.deps import AppSettings, DbSession
from corral.web.forms import Done, done_toasts
from corral.web.redirects import safe_redirect
from corral.web.rendering import redirect, render

router = APIRouter(include_in_schema=False)

PAGE = "account/passkeys.html"
HERE = "/account/security/passkeys"
Reader = Annotated[Principal, require(Permission.ACCOUNT_READ)]
Changer = Annotated[Principal, require(Permission.ACCOUNT_UPDATE, step_up=True)]
PasskeyId = Annotated[int, Path(ge=1, le=2**63 - 1)]
DONE: dict[str, str] = {
    "added": "Passkey added. You can now sign in with it.",
    "renamed": "Passkey renamed.",
    "removed": "Passkey removed.",
    "enrolled": (
        "Passkey added. Staff tools need a session signed in with it: sign out, then sign in with "
        "your passkey."
    ),
}


def _error(error: PanelError) -> JSONResponse:
    return JSONResponse({"code": error.code, "message": error.message}, status_code=error.status_code)


@router.get(HERE, response_class=HTMLResponse)
async def passkeys_page(
    request: Request, session: DbSession, principal: Reader, done: Done = None
) -> HTMLResponse:
    keys = await passkeys.list(session, principal)
    now = utcnow()
    context: dict[str, Any] = {
        "passkeys": keys,
        "stamp": stamp,
        "ago": lambda moment: ago(moment, now),
        "max_name": MAX_NAME,
        "toasts": done_toasts(done, DONE),
        # An operator's or super-admin's first passkey comes only through an enrolment link.
        "needs_enrolment_link": principal.role in PASSKEY_ONLY_ROLES and not keys,
    }
    return render(request, PAGE, context)


@router.post(f"{HERE}/options")
async def registration_options(session: DbSession, principal: Changer) -> JSONResponse:
    try:
        options = await passkeys.registration_options(session, principal)
    except PanelError as error:
        return _error(error)  # answered, so the refusal's audit record is committed
    return JSONResponse(options)


@router.post(HERE)
async def register(
    session: DbSession,
    principal: Changer,
    credential: Annotated[dict[str, Any], Body()],
    name: Annotated[SingleLine, Body(max_length=MAX_NAME)] = "",
) -> JSONResponse:
    try:
        key = await passkeys.finish_registration(session, principal, credential, name=name)
    except PanelError as error:
        return _error(error)
    return JSONResponse({"id": key.id, "name": key.name, "redirect": f"{HERE}?done=added"}, status_code=201)


@router.post(f"{HERE}/{{passkey_id}}/rename")
async def rename(
    request: Request,
    session: DbSession,
    principal: Changer,
    passkey_id: PasskeyId,
    name: Annotated[SingleLine, Form(min_length=1, max_length=MAX_NAME)],
) -> Response:
    await passkeys.rename(session, principal, passkey_id, name)
    return redirect(request, f"{HERE}?done=renamed")


@router.post(f"{HERE}/{{passkey_id}}/delete")
async def remove(request: Request, session: DbSession, principal: Changer, passkey_id: PasskeyId) -> Response:
    await passkeys.delete(session, principal, passkey_id)
    return redirect(request, f"{HERE}?done=removed")


@router.post("/login/passkey/options", dependencies=[PUBLIC])
async def sign_in_options(session: DbSession) -> JSONResponse:
    return JSONResponse(await passkeys.authentication_options(session))


@router.post("/login/passkey", dependencies=[PUBLIC])
async def sign_in(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    credential: Annotated[dict[str, Any], Body()],
    next: Annotated[str, Body(max_length=2000)] = "",
) -> JSONResponse:
    context = current_request()
    ip = context.ip if context is not None else None
    try:
        user = await passkeys.finish_authentication(session, credential)
    except PasskeyRejected as error:
        return _error(error)
    outcome = await auth.sign_in_with_passkey(
        session, user, ip=ip, user_agent=request.headers.get("user-agent")
    )
    if outcome.status != "ok" or outcome.session_secret is None:
        message = MESSAGES.get(outcome.status, "This account cannot sign in right now.")
        return JSONResponse({"code": f"sign_in_{outcome.status}", "message": message}, status_code=403)
    start_cookie_session(request, settings, outcome.session_secret)
    return JSONResponse({"redirect": safe_redirect(next)})
