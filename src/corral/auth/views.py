"""Sign-in and sign-out pages."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from corral.auth.cookies import cookie_names, delete_cookie, set_cookie
from corral.auth.deps import PUBLIC, OptionalPrincipal, require
from corral.auth.principal import Principal
from corral.auth.service import SECOND_FACTOR_TTL, SignInOutcome, auth
from corral.config import Settings
from corral.kit.clock import utcnow
from corral.kit.context import current_request
from corral.kit.text import SingleLine
from corral.web.deps import AppSettings, DbSession
from corral.web.redirects import safe_redirect
from corral.web.rendering import render

router = APIRouter(include_in_schema=False)

MESSAGES = {
    "invalid": "That email and password do not match an account.",
    "unverified": "Verify your email address first: follow the link we emailed you.",
    "pending_approval": "Your account is waiting for approval by our team. We will email you.",
    "blocked": "This account is blocked. Contact support if you think this is a mistake.",
}
STATUS_CODES = {"invalid": 401, "throttled": 429, "unverified": 403, "pending_approval": 403, "blocked": 403}
WRONG_CODE = (
    "That code is not right, or was already used. Try the next code from your app, or a recovery code."
)
SIGN_IN_AGAIN = "That sign-in took too long or had too many wrong codes. Sign in again."
VERIFY_TEMPLATE = "auth/login_verify.html"


def _client_ip(request: Request) -> str | None:
    context = current_request()
    return context.ip if context is not None else None


@router.get("/login", response_class=HTMLResponse, dependencies=[PUBLIC])
async def login_page(request: Request, principal: OptionalPrincipal, next: str | None = None) -> Response:
    if principal is not None:
        return RedirectResponse(safe_redirect(next), status_code=303)
    return render(request, "auth/login.html", {"next": safe_redirect(next), "email": ""})


def _refusal_page(request: Request, outcome: SignInOutcome, email: str, next_url: str) -> HTMLResponse:
    if outcome.status == "throttled" and outcome.retry_after is not None:
        message = f"Too many attempts. Try again after {outcome.retry_after:%H:%M} UTC."
    else:
        message = MESSAGES.get(outcome.status, MESSAGES["invalid"])
    response = render(
        request,
        "auth/login.html",
        {"next": next_url, "email": email, "error": message, "status": outcome.status},
        status_code=STATUS_CODES.get(outcome.status, 401),
    )
    if outcome.retry_after is not None:
        seconds = int((outcome.retry_after - utcnow()).total_seconds())
        response.headers["Retry-After"] = str(max(1, seconds))
    return response


@router.post("/login", response_class=HTMLResponse, dependencies=[PUBLIC])
async def login(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    email: Annotated[SingleLine, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    next_url = safe_redirect(next)
    outcome = await auth.sign_in(
        session,
        email=email,
        password=password,
        ip=_client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    if outcome.status == "second_factor" and outcome.pending_secret is not None:
        names = cookie_names(settings)
        set_cookie(
            request, names.second_factor, outcome.pending_secret, int(SECOND_FACTOR_TTL.total_seconds())
        )
        return RedirectResponse(f"/login/verify?{urlencode({'next': next_url})}", status_code=303)
    if outcome.status != "ok" or outcome.session_secret is None:
        return _refusal_page(request, outcome, email, next_url)
    start_cookie_session(request, settings, outcome.session_secret)
    return RedirectResponse(next_url, status_code=303)


@router.get("/login/verify", response_class=HTMLResponse, dependencies=[PUBLIC])
async def verify_page(
    request: Request, session: DbSession, settings: AppSettings, next: str | None = None
) -> Response:
    secret = request.cookies.get(cookie_names(settings).second_factor)
    if not secret or not await auth.pending_second_factor(session, secret):
        return RedirectResponse(f"/login?{urlencode({'next': safe_redirect(next)})}", status_code=303)
    return render(request, VERIFY_TEMPLATE, {"next": safe_redirect(next)})


@router.post("/login/verify", response_class=HTMLResponse, dependencies=[PUBLIC])
async def verify(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    code: Annotated[SingleLine, Form(max_length=64)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    next_url = safe_redirect(next)
    names = cookie_names(settings)
    outcome = await auth.finish_second_factor(
        session,
        secret=request.cookies.get(names.second_factor, ""),
        code=code,
        ip=_client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    if outcome.status == "ok" and outcome.session_secret is not None:
        delete_cookie(request, names.second_factor)
        start_cookie_session(request, settings, outcome.session_secret)
        return RedirectResponse(next_url, status_code=303)
    if outcome.status == "invalid":
        context = {"next": next_url, "error": WRONG_CODE}
        return render(request, VERIFY_TEMPLATE, context, status_code=401)
    delete_cookie(request, names.second_factor)
    if outcome.status == "expired":
        context = {"next": next_url, "email": "", "error": SIGN_IN_AGAIN, "status": "expired"}
        return render(request, "auth/login.html", context, status_code=401)
    return _refusal_page(request, outcome, "", next_url)


def start_cookie_session(request: Request, settings: Settings, secret: str) -> None:
    names = cookie_names(settings)
    set_cookie(request, names.session, secret, settings.auth.session_lifetime_hours * 3600)
    # The anonymous id only protected the sign-in form; the session takes over from here.
    delete_cookie(request, names.anonymous)


@router.post("/logout")
async def logout(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    principal: Annotated[Principal, require()],
) -> Response:
    await auth.sign_out(session, principal)
    delete_cookie(request, cookie_names(settings).session)
    return RedirectResponse("/login?signed_out=1", status_code=303)
