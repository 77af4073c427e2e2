"""The account security page: sign-in sessions and personal access tokens.

Every action is a plain form POST, so the page works without JavaScript; with HTMX each action
swaps just its panel (the ``sessions`` or ``tokens`` block of the same template) and shows a
toast. The new token's secret is rendered into the response that created it and nowhere else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from corral.auth.cookies import cookie_names, delete_cookie
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import API_TOKEN_DEFAULT_DAYS, ApiTokenCreate
from corral.auth.service import auth
from corral.auth.tokens import (
    ApiTokenNameTaken,
    NewApiToken,
    ScopeNotAllowed,
    TooManyApiTokens,
    account_security,
    api_tokens,
)
from corral.kit.clock import utcnow
from corral.models.auth import AuthMethod
from corral.rbac.permissions import Permission
from corral.web.deps import AppSettings, DbSession
from corral.web.rendering import is_htmx, redirect, render, toast, wants_fragment

router = APIRouter(prefix="/account/security", include_in_schema=False)

PAGE = "account/security.html"
HERE = "/account/security"
SessionsManager = Annotated[Principal, require(Permission.SESSIONS_MANAGE)]
TokensManager = Annotated[Principal, require(Permission.TOKENS_MANAGE)]
# Creating a token hands out a credential: it needs a fresh step-up, and a browser session.
TokenCreator = Annotated[Principal, require(Permission.TOKENS_MANAGE, step_up=True)]
# Ids are bigint; anything outside that range can name no row and must not reach the database.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]

SCOPE_DESCRIPTIONS: dict[Permission, str] = {
    Permission.ACCOUNT_READ: "See your profile",
    Permission.ACCOUNT_UPDATE: "Change your profile",
    Permission.SESSIONS_MANAGE: "List and end your sign-in sessions",
    # A token holding it can list and revoke tokens; making one needs a browser session with a
    # fresh step-up (require(..., step_up=True)), which no token has.
    Permission.TOKENS_MANAGE: "List and revoke your API tokens (new ones are made only when signed in)",
    Permission.USERS_READ: "See customer and staff accounts",
    Permission.USERS_BLOCK: "Block and unblock accounts",
    Permission.USERS_APPROVE: "Approve new accounts",
    Permission.USERS_ROLES: "Change people's roles",
    Permission.AUDIT_READ: "Read the audit log",
}
_VERBS = {"read": "See", "manage": "Manage", "update": "Change"}


def describe_scope(permission: Permission) -> str:
    """The form's line under each scope; permissions added later get a generic one."""
    if permission in SCOPE_DESCRIPTIONS:
        return SCOPE_DESCRIPTIONS[permission]
    resource, _, action = permission.value.partition(":")
    return f"{_VERBS.get(action, action.capitalize())} {resource}"


EXPIRY_CHOICES: list[tuple[str, str]] = [
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "1 year"),
    ("never", "Never"),
]


METHOD_LABELS: dict[str, str] = {
    AuthMethod.PASSWORD: "Password",
    AuthMethod.PASSWORD_TOTP: "Password and code",
    AuthMethod.PASSKEY: "Passkey",
}


def stamp(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment is not None else ""


# (unit, its length in seconds, the count at which the next unit takes over)
_UNITS: tuple[tuple[str, int, int | None], ...] = (
    ("minute", 60, 60),
    ("hour", 3600, 24),
    ("day", 86400, None),
)


def ago(moment: datetime | None, now: datetime) -> str:
    """ "just now", "5 minutes ago", "in 30 days"; the page shows the exact time alongside.

    Counts are rounded to the nearest unit, not cut down: a token made a few seconds ago to last
    30 days has 29.9999 days left, which is "in 30 days", not "in 29 days". A count that rounds up
    to the next unit is said in that unit ("1 hour", never "60 minutes").
    """
    if moment is None:
        return "Never"
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size, next_at in _UNITS:
        count = int(seconds / size + 0.5)  # half up (round() would make 2.5 days "2 days")
        if count == 0:
            return "in under a minute" if future else "just now"
        if next_at is None or count < next_at:
            words = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {words}" if future else f"{words} ago"
    raise AssertionError("unreachable: the last unit has no limit")


async def _page(
    request: Request,
    principal: Principal,
    session: DbSession,
    *,
    block: str | None = None,
    status_code: int = 200,
    extra: dict[str, Any] | None = None,
) -> HTMLResponse:
    overview = await account_security.overview(session, principal)
    now = utcnow()
    context: dict[str, Any] = {
        "sessions": overview.sessions,
        "tokens": overview.tokens,
        "grantable_scopes": overview.grantable_scopes,
        "describe_scope": describe_scope,
        "expiry_choices": EXPIRY_CHOICES,
        "can_manage_tokens": principal.can(Permission.TOKENS_MANAGE),
        "form": {"name": "", "scopes": [], "expires_in_days": str(API_TOKEN_DEFAULT_DAYS)},
        "errors": {},
        "created": None,
        "now": now,
        "ago": lambda moment: ago(moment, now),
        "stamp": stamp,
        "method_labels": METHOD_LABELS,
    }
    context.update(extra or {})
    return render(request, PAGE, context, block=block, status_code=status_code)


def _back_to_page(request: Request, response: HTMLResponse) -> Response:
    """Without HTMX a form POST answers with a redirect (so a reload does not repeat it)."""
    return response if is_htmx(request) else RedirectResponse(HERE, status_code=303)


@router.get("", response_class=HTMLResponse)
async def security_page(request: Request, session: DbSession, principal: SessionsManager) -> HTMLResponse:
    return await _page(request, principal, session)


@router.post("/sessions/{session_id}/revoke")
async def revoke_session(
    request: Request, session: DbSession, settings: AppSettings, principal: SessionsManager, session_id: RowId
) -> Response:
    await auth.revoke_session(session, principal, session_id)
    if principal.session is not None and principal.session.id == session_id:
        # The browser just ended its own session: forget the cookie and go to the sign-in page.
        delete_cookie(request, cookie_names(settings).session)
        return redirect(request, "/login?signed_out=1")
    response = await _page(request, principal, session, block="sessions")
    return _back_to_page(request, toast(response, "Session ended. That device is signed out."))


@router.post("/sessions/revoke-others")
async def sign_out_others(request: Request, session: DbSession, principal: SessionsManager) -> Response:
    count = await auth.sign_out_others(session, principal)
    message = "No other sessions to end." if count == 0 else f"Signed out {count} other session(s)."
    response = await _page(request, principal, session, block="sessions")
    return _back_to_page(request, toast(response, message, "success" if count else "info"))


@router.post("/tokens", response_class=HTMLResponse)
async def create_token(
    request: Request,
    session: DbSession,
    principal: TokenCreator,
    name: Annotated[str, Form(max_length=500)] = "",
    scopes: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
    expires_in_days: Annotated[str, Form(max_length=10)] = str(API_TOKEN_DEFAULT_DAYS),
) -> HTMLResponse:
    form = {"name": name, "scopes": scopes, "expires_in_days": expires_in_days}
    errors: dict[str, str] = {}
    created: NewApiToken | None = None
    try:
        data = ApiTokenCreate.model_validate(
            {
                "name": name,
                "scopes": scopes,
                "expires_in_days": None if expires_in_days == "never" else expires_in_days,
            }
        )
        created = await api_tokens.create(session, principal, data)
    except ValidationError as invalid:
        errors = _field_errors(invalid)
    except (ScopeNotAllowed, ApiTokenNameTaken, TooManyApiTokens) as refused:
        errors = {str(refused.details.get("field", "form")): refused.message}
    if created is None:
        # HTMX swaps only 2xx answers, so the re-rendered form is a 200 there; a full page says 422.
        status_code = 200 if wants_fragment(request) else 422
        return await _page(
            request,
            principal,
            session,
            block="tokens",
            status_code=status_code,
            extra={"form": form, "errors": errors},
        )
    response = await _page(
        request,
        principal,
        session,
        block="tokens",
        extra={"created": created},
    )
    # The page now carries a live secret: no cache, proxy or back button may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return toast(response, "Token created. Copy it now: it will not be shown again.")


def _field_errors(invalid: ValidationError) -> dict[str, str]:
    messages = {
        "name": "Give the token a name of 1 to 100 characters.",
        "scopes": "Choose at least one permission from the list.",
        "expires_in_days": "Choose when the token expires.",
    }
    fields = {str(error["loc"][0]) for error in invalid.errors() if error["loc"]}
    return {field: messages.get(field, "Check this field.") for field in fields}


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(
    request: Request, session: DbSession, principal: TokensManager, token_id: RowId
) -> Response:
    await api_tokens.revoke(session, principal, token_id)
    response = await _page(request, principal, session, block="tokens")
    return _back_to_page(request, toast(response, "Token revoked. It no longer works."))
