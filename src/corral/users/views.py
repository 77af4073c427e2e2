"""Account pages: registration, email verification, password reset, and the signed-in profile page.

Forms are re-rendered with a message next to each bad field (422), never a bare error page. The
profile page's forms post with htmx and swap only their own panel; without JavaScript they post
normally and the whole page comes back.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from corral.auth.cookies import cookie_names, set_cookie
from corral.auth.deps import PUBLIC, OptionalPrincipal, require
from corral.auth.principal import Principal
from corral.kit.clock import utcnow
from corral.kit.context import current_request
from corral.kit.text import SingleLine
from corral.rbac.permissions import Permission
from corral.users.errors import EmailInUse, InvalidAccountInput, InvalidLink, TooManyRequests
from corral.users.profile import profile
from corral.users.schemas import (
    FORM_MAX_TEXT,
    AccountUpdate,
    EmailChangeForm,
    PasswordChangeForm,
    PasswordResetForm,
    RegistrationForm,
)
from corral.users.service import accounts
from corral.web.deps import AppSettings, DbSession
from corral.web.rendering import Toast, is_htmx, redirect, render, toast

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form(max_length=FORM_MAX_TEXT)]
AccountReader = Annotated[Principal, require(Permission.ACCOUNT_READ)]
AccountUpdater = Annotated[Principal, require(Permission.ACCOUNT_UPDATE)]
# Changing the email address or the password needs a fresh step-up.
CredentialChanger = Annotated[Principal, require(Permission.ACCOUNT_UPDATE, step_up=True)]

# Shown after a plain (non-htmx) form post redirected back to /account?done=…; fixed texts only,
# so the query string cannot put words on the page.
DONE_MESSAGES = {
    "name": "Your name is saved.",
    "email": "Check your new inbox: we sent a link to confirm the address.",
    "email_cancelled": "The email change is cancelled.",
    "password": "Your password is changed. Your other sessions were signed out.",
}


def _client_ip() -> str | None:
    context = current_request()
    if context is None or not context.ip:
        return None
    try:
        return str(ipaddress.ip_address(context.ip))
    except ValueError:
        return None  # a test client's "testclient", say: better no IP than a failed insert


def _too_many(request: Request, template: str, values: dict[str, Any], error: TooManyRequests) -> Response:
    response = render(request, template, {**values, "error": error.message}, status_code=429)
    seconds = int((error.retry_after - utcnow()).total_seconds())
    response.headers["Retry-After"] = str(max(1, seconds))
    return response


def _invalid_link(request: Request, error: InvalidLink | EmailInUse, kind: str) -> Response:
    return render(
        request,
        "users/link_invalid.html",
        {"message": error.message, "code": error.code, "kind": kind},
        status_code=error.status_code,
    )


# ---------------------------------------------------------------- registration


@router.get("/register", response_class=HTMLResponse)
async def register_page(request: Request, principal: OptionalPrincipal) -> Response:
    if principal is not None:
        return RedirectResponse("/dashboard", status_code=303)
    return render(request, "users/register.html", {"form": {}, "errors": {}})


@router.post("/register", response_class=HTMLResponse, dependencies=[PUBLIC])
async def register(
    request: Request,
    session: DbSession,
    email: FormText = "",
    name: FormText = "",
    password: FormText = "",
    password_confirm: FormText = "",
) -> Response:
    form = RegistrationForm(email=email, name=name, password=password, password_confirm=password_confirm)
    # Passwords are never sent back into the page.
    values: dict[str, Any] = {"form": {"email": email, "name": name}, "errors": {}}
    try:
        await accounts.register(session, form, ip=_client_ip())
    except InvalidAccountInput as error:
        return render(request, "users/register.html", {**values, "errors": error.fields}, status_code=422)
    except TooManyRequests as error:
        return _too_many(request, "users/register.html", values, error)
    return render(request, "users/check_email.html", {"kind": "register", "email": email.strip()})


# ---------------------------------------------------------------- verification


@router.get("/verify", response_class=HTMLResponse, dependencies=[PUBLIC])
async def verify(request: Request, session: DbSession, token: SingleLine | None = None) -> Response:
    try:
        outcome = await accounts.verify_email(session, token)
    except InvalidLink as error:
        return _invalid_link(request, error, "verify")
    return render(request, "users/verified.html", {"outcome": outcome})


@router.get("/verify/resend", response_class=HTMLResponse, dependencies=[PUBLIC])
async def resend_page(request: Request, email: SingleLine = "") -> Response:
    return render(request, "users/verify_resend.html", {"form": {"email": email[:320]}, "errors": {}})


@router.post("/verify/resend", response_class=HTMLResponse, dependencies=[PUBLIC])
async def resend(request: Request, session: DbSession, email: FormText = "") -> Response:
    values: dict[str, Any] = {"form": {"email": email}, "errors": {}}
    try:
        await accounts.resend_verification(session, email, ip=_client_ip())
    except InvalidAccountInput as error:
        return render(
            request, "users/verify_resend.html", {**values, "errors": error.fields}, status_code=422
        )
    except TooManyRequests as error:
        return _too_many(request, "users/verify_resend.html", values, error)
    return render(request, "users/check_email.html", {"kind": "resend", "email": email.strip()})


# ---------------------------------------------------------------- password reset


@router.get("/password/forgot", response_class=HTMLResponse, dependencies=[PUBLIC])
async def forgot_page(request: Request, email: SingleLine = "") -> Response:
    return render(request, "users/password_forgot.html", {"form": {"email": email[:320]}, "errors": {}})


@router.post("/password/forgot", response_class=HTMLResponse, dependencies=[PUBLIC])
async def forgot(request: Request, session: DbSession, email: FormText = "") -> Response:
    values: dict[str, Any] = {"form": {"email": email}, "errors": {}}
    try:
        await accounts.request_password_reset(session, email, ip=_client_ip())
    except InvalidAccountInput as error:
        return render(
            request, "users/password_forgot.html", {**values, "errors": error.fields}, status_code=422
        )
    except TooManyRequests as error:
        return _too_many(request, "users/password_forgot.html", values, error)
    return render(request, "users/check_email.html", {"kind": "forgot", "email": email.strip()})


@router.get("/password/reset", response_class=HTMLResponse, dependencies=[PUBLIC])
async def reset_page(request: Request, session: DbSession, token: SingleLine | None = None) -> Response:
    try:
        await accounts.check_reset_link(session, token)
    except InvalidLink as error:
        return _invalid_link(request, error, "reset")
    return render(request, "users/password_reset.html", {"token": token, "errors": {}})


@router.post("/password/reset", response_class=HTMLResponse, dependencies=[PUBLIC])
async def reset(
    request: Request,
    session: DbSession,
    token: FormText = "",
    password: FormText = "",
    password_confirm: FormText = "",
) -> Response:
    form = PasswordResetForm(token=token, password=password, password_confirm=password_confirm)
    try:
        await accounts.reset_password(session, form)
    except InvalidAccountInput as error:
        return render(
            request, "users/password_reset.html", {"token": token, "errors": error.fields}, status_code=422
        )
    except InvalidLink as error:
        return _invalid_link(request, error, "reset")
    return render(request, "users/password_reset_done.html")


# ---------------------------------------------------------------- the profile page


async def _account_page(
    request: Request,
    session: DbSession,
    principal: Principal,
    *,
    block: str | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
    toasts: list[Toast] | None = None,
) -> HTMLResponse:
    account = await profile.read(session, principal)
    context = {"account": account, "errors": errors or {}, "form": form or {}, "toasts": toasts or []}
    return render(request, "users/account.html", context, status_code=status_code, block=block)


async def _saved(
    request: Request, session: DbSession, principal: Principal, *, block: str, done: str
) -> Response:
    """After a successful change: htmx gets the refreshed panel and a toast; a plain post a redirect."""
    if not is_htmx(request):
        return RedirectResponse(f"/account?done={done}", status_code=303)
    response = await _account_page(request, session, principal, block=block)
    return toast(response, DONE_MESSAGES[done])


@router.get("/account", response_class=HTMLResponse)
async def account_page(
    request: Request, session: DbSession, principal: AccountReader, done: str | None = None
) -> Response:
    message = DONE_MESSAGES.get(done or "")
    toasts = [Toast(message)] if message else []
    return await _account_page(request, session, principal, toasts=toasts)


@router.post("/account/name", response_class=HTMLResponse)
async def update_name(
    request: Request, session: DbSession, principal: AccountUpdater, name: FormText = ""
) -> Response:
    try:
        await profile.update(session, principal, AccountUpdate.model_construct(name=name))
    except InvalidAccountInput as error:
        return await _account_page(
            request,
            session,
            principal,
            block="profile_panel",
            errors=error.fields,
            form={"name": name},
            status_code=422,
        )
    return await _saved(request, session, principal, block="profile_panel", done="name")


@router.post("/account/email", response_class=HTMLResponse)
async def change_email(
    request: Request,
    session: DbSession,
    principal: CredentialChanger,
    new_email: FormText = "",
    current_password: FormText = "",
) -> Response:
    form = EmailChangeForm(new_email=new_email, current_password=current_password)
    try:
        await profile.request_email_change(session, principal, form)
    except InvalidAccountInput as error:
        return await _account_page(
            request,
            session,
            principal,
            block="email_panel",
            errors=error.fields,
            form={"new_email": new_email},
            status_code=422,
        )
    return await _saved(request, session, principal, block="email_panel", done="email")


@router.post("/account/email/cancel", response_class=HTMLResponse)
async def cancel_email_change(request: Request, session: DbSession, principal: AccountUpdater) -> Response:
    await profile.cancel_email_change(session, principal)
    return await _saved(request, session, principal, block="email_panel", done="email_cancelled")


@router.get("/account/email/confirm", response_class=HTMLResponse, dependencies=[PUBLIC])
async def confirm_email_change(
    request: Request, session: DbSession, token: SingleLine | None = None
) -> Response:
    try:
        email = await profile.confirm_email_change(session, token)
    except (InvalidLink, EmailInUse) as error:
        return _invalid_link(request, error, "change_email")
    return render(request, "users/email_changed.html", {"email": email})


@router.post("/account/password", response_class=HTMLResponse)
async def change_password(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    principal: CredentialChanger,
    current_password: FormText = "",
    password: FormText = "",
    password_confirm: FormText = "",
) -> Response:
    form = PasswordChangeForm(
        current_password=current_password, password=password, password_confirm=password_confirm
    )
    try:
        changed = await profile.change_password(
            session,
            principal,
            form,
            ip=_client_ip(),
            user_agent=request.headers.get("user-agent"),
        )
    except InvalidAccountInput as error:
        return await _account_page(
            request, session, principal, block="password_panel", errors=error.fields, status_code=422
        )
    if changed is not None:
        max_age = settings.auth.session_lifetime_hours * 3600
        set_cookie(request, cookie_names(settings).session, changed.session_secret, max_age)
    # The page's CSRF token belonged to the session that just ended: load the page afresh.
    return redirect(request, "/account?done=password")
