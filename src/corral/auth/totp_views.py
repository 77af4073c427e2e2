"""Pages for the authenticator app (TOTP): set up, confirm, recovery codes, turn off.

Plain form POSTs, so the pages work without JavaScript. Starting a setup is a POST (a GET never
writes). The secret and the recovery codes appear only in responses marked ``no-store``; the
recovery codes only in the one response that created them.

Starting a setup, regenerating codes and turning the app off need a fresh step-up; confirming a
setup does not (the first code proves the app, and the setup was started behind a step-up).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.totp import Enrolment, TotpCodeRejected, totp
from corral.kit.text import SingleLine
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.rendering import Toast, render

router = APIRouter(prefix="/account/security/totp", include_in_schema=False)

PAGE = "account/totp.html"
HERE = "/account/security/totp"
AccountUpdater = Annotated[Principal, require(Permission.ACCOUNT_UPDATE)]
# Changing a second factor needs a fresh step-up (issue 4): enrol, confirm, new codes, turn off.
FactorChanger = Annotated[Principal, require(Permission.ACCOUNT_UPDATE, step_up=True)]
# Secrets and one-time codes must not be kept by the browser's or a proxy's cache.
NO_STORE = {"Cache-Control": "no-store"}


def _grouped(secret: str) -> str:
    """The manual-entry key in groups of four, easier to type from the screen."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _enrolment_context(enrolment: Enrolment | None) -> dict[str, Any]:
    if enrolment is None:
        return {"enrolment": None}
    return {
        "enrolment": {
            "secret": _grouped(enrolment.secret),
            "uri": enrolment.uri,
            # Made by segno from our own otpauth URI, with style attributes stripped (CSP).
            "qr_svg": Markup(enrolment.qr_svg),  # noqa: S704
        }
    }


async def _page(
    request: Request,
    session: DbSession,
    principal: Principal,
    *,
    enrolment: Enrolment | None = None,
    codes: list[str] | None = None,
    error: str | None = None,
    toasts: list[Toast] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    status = await totp.status(session, principal.user_id)
    if enrolment is None and status.enrolling and codes is None:
        enrolment = await totp.current_enrolment(session, principal)
    context: dict[str, Any] = {
        "status": status,
        "codes": codes,
        "error": error,
        "toasts": toasts or [],
        **_enrolment_context(enrolment),
    }
    return render(request, PAGE, context, status_code=status_code, headers=NO_STORE)


@router.get("", response_class=HTMLResponse)
async def totp_page(request: Request, session: DbSession, principal: AccountUpdater) -> HTMLResponse:
    return await _page(request, session, principal)


@router.post("/enrol", response_class=HTMLResponse)
async def totp_enrol(request: Request, session: DbSession, principal: FactorChanger) -> HTMLResponse:
    enrolment = await totp.begin_enrolment(session, principal)
    return await _page(request, session, principal, enrolment=enrolment)


@router.post("/confirm", response_class=HTMLResponse)
async def totp_confirm(
    request: Request,
    session: DbSession,
    principal: AccountUpdater,
    code: Annotated[SingleLine, Form(max_length=20)] = "",
) -> HTMLResponse:
    try:
        codes = await totp.confirm(session, principal, code)
    except TotpCodeRejected as error:
        return await _page(request, session, principal, error=error.message, status_code=422)
    toast = Toast("Authenticator app turned on.")
    return await _page(request, session, principal, codes=codes, toasts=[toast])


@router.post("/recovery-codes", response_class=HTMLResponse)
async def totp_regenerate(request: Request, session: DbSession, principal: FactorChanger) -> HTMLResponse:
    codes = await totp.regenerate_recovery_codes(session, principal)
    toast = Toast("New recovery codes made. The old ones no longer work.")
    return await _page(request, session, principal, codes=codes, toasts=[toast])


@router.post("/disable")
async def totp_disable(session: DbSession, principal: FactorChanger) -> RedirectResponse:
    await totp.disable(session, principal)
    return RedirectResponse(HERE, status_code=303)
