"""The step-up prompt and the routes that complete it (passkey, app code, password).

The prompt reaches the browser in three ways: swapped into the page's dialog when an htmx action
is refused with ``step_up_required`` (corral/web/errors.py renders it), loaded into that dialog by
the passkeys script when one of its own requests is refused, or as a full page for a plain form.
A completed step-up answers htmx with the ``corral:stepped-up`` event, which makes the script
close the dialog and send the refused request again; a plain form is redirected to ``next``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.deps import require
from corral.auth.passkey_errors import PasskeyRejected
from corral.auth.principal import Principal
from corral.auth.step_up import StepUpMethod, accepted_methods, factors_of, step_up
from corral.kit.context import current_request
from corral.kit.text import SingleLine
from corral.web.deps import DbSession
from corral.web.redirects import safe_redirect
from corral.web.rendering import is_htmx, render

router = APIRouter(prefix="/step-up", include_in_schema=False)

SignedIn = Annotated[Principal, require()]
NextForm = Annotated[str, Form(max_length=2000)]
StaffForm = Annotated[bool, Form()]
PROMPT = "auth/_step_up.html"
PAGE = "auth/step_up.html"
STEPPED_UP_EVENT = "corral:stepped-up"
WRONG = {
    StepUpMethod.TOTP: "That code is not right, or was already used. Try the next code from your app.",
    StepUpMethod.PASSWORD: "That password is not right.",
}
LOCKED = "Too many wrong attempts: wait a few minutes and try again."


def _ip() -> str | None:
    context = current_request()
    return context.ip if context is not None else None


async def prompt_context(
    session: DbSession, principal: Principal, *, staff: bool, next_url: str, error: str | None = None
) -> dict[str, Any]:
    factors = await factors_of(session, principal.user_id)
    methods = accepted_methods(factors, staff_action=staff)
    return {
        "methods": [method.value for method in methods],
        "has_passkey": factors.passkeys > 0,
        "staff_action": staff,
        "next": next_url,
        "error": error,
        "inline": True,
    }


def _answer(request: Request, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    if is_htmx(request):
        return render(
            request, PROMPT, context, status_code=status_code, headers={"X-Corral-Step-Up": "prompt"}
        )
    return render(request, PAGE, {**context, "inline": False}, status_code=status_code)


def _done(request: Request, next_url: str) -> Response:
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Trigger": STEPPED_UP_EVENT, "HX-Reswap": "none"})
    return RedirectResponse(next_url, status_code=303)


@router.get("", response_class=HTMLResponse)
async def step_up_page(
    request: Request, session: DbSession, principal: SignedIn, next: str = "/dashboard", staff: bool = False
) -> HTMLResponse:
    context = await prompt_context(session, principal, staff=staff, next_url=safe_redirect(next))
    return render(request, PAGE, {**context, "inline": False})


@router.get("/prompt", response_class=HTMLResponse)
async def step_up_prompt(
    request: Request, session: DbSession, principal: SignedIn, staff: bool = False
) -> HTMLResponse:
    context = await prompt_context(session, principal, staff=staff, next_url="/dashboard")
    return render(request, PROMPT, context, headers={"X-Corral-Step-Up": "prompt"})


@router.post("/passkey/options")
async def passkey_options(session: DbSession, principal: SignedIn) -> JSONResponse:
    return JSONResponse(await step_up.passkey_options(session, principal))


@router.post("/passkey")
async def passkey_step_up(
    session: DbSession, principal: SignedIn, credential: Annotated[dict[str, Any], Body(embed=True)]
) -> JSONResponse:
    try:
        await step_up.with_passkey(session, principal, credential)
    except PasskeyRejected as rejected:
        # Returned, not raised: the request's transaction commits, keeping the failure's audit entry.
        return JSONResponse(
            {"code": rejected.code, "message": rejected.message}, status_code=rejected.status_code
        )
    return JSONResponse({"ok": True})


# ``step_up.with_code`` or ``step_up.with_password``: whether the typed secret proves the person.
Verify = Callable[[AsyncSession, Principal, str, str | None], Awaitable[bool]]


async def _with_secret(
    request: Request,
    session: DbSession,
    principal: Principal,
    verify: Verify,
    secret: str,
    *,
    wrong: str,
    next_url: str,
    staff: bool,
) -> Response:
    """Check a typed code or password; if it is wrong, the prompt again with ``wrong`` (401)."""
    if await verify(session, principal, secret, _ip()):
        return _done(request, next_url)
    context = await prompt_context(session, principal, staff=staff, next_url=next_url, error=wrong)
    return _answer(request, context, status_code=401)


@router.post("/code", response_class=HTMLResponse)
async def code_step_up(
    request: Request,
    session: DbSession,
    principal: SignedIn,
    code: Annotated[SingleLine, Form(max_length=64)],
    next: NextForm = "/dashboard",
    staff: StaffForm = False,
) -> Response:
    return await _with_secret(
        request,
        session,
        principal,
        step_up.with_code,
        code,
        wrong=WRONG[StepUpMethod.TOTP],
        next_url=safe_redirect(next),
        staff=staff,
    )


@router.post("/password", response_class=HTMLResponse)
async def password_step_up(
    request: Request,
    session: DbSession,
    principal: SignedIn,
    password: Annotated[str, Form(max_length=1024)],
    next: NextForm = "/dashboard",
    staff: StaffForm = False,
) -> Response:
    return await _with_secret(
        request,
        session,
        principal,
        step_up.with_password,
        password,
        wrong=WRONG[StepUpMethod.PASSWORD],
        next_url=safe_redirect(next),
        staff=staff,
    )
